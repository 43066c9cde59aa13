"""Checks at start, before any upload: stop early on what only a person can fix.

A wrong index must be a clear error at start, not something a 2 GB upload
discovers; so must an index that can no longer take videos (Pegasus 1.2
only). Each index's answer also names its models, which decide the folders'
validation profile (``folderprofiles``). Unwritable done/failed folders are
caught here too. A refused key is not a reason to stop: a key that expired
over a weekend plus a reboot would otherwise leave systemd giving up while
files pile up, so ``run`` starts with uploads paused and the pause check
resumes them once the key works (``check_api`` still reports it as a problem, for ``check-config``).
What may fix itself (a share not mounted yet, the API unreachable) is logged
and the daemon starts anyway: it keeps retrying both.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from watcherd.config import Config, FolderConfig
from watcherd.errors import (
    ApiError,
    ApiRedirected,
    AuthError,
    ConfigError,
    QuotaError,
    TransientError,
)
from watcherd.ingest.mover import TEMP_PREFIX
from watcherd.media.profiles import NoVideoModel, check_takes_videos, index_models

if TYPE_CHECKING:  # check-config without --online never loads the HTTP client
    from watcherd.twelvelabs.client import TwelveLabsClient

logger = logging.getLogger(__name__)

# Checks must not hold up start (READY=1, TimeoutStartSec=) or a reload (the
# watchdog): an API slower than this is warned about and retried later anyway.
CHECK_TIMEOUTS = (3.0, 10.0)


@dataclass
class ApiCheck:
    """What the start-up requests found: configuration errors, and a refused key apart."""

    problems: list[str] = field(default_factory=list)
    refused: AuthError | None = None
    key_source: str = ""
    models: dict[str, tuple[str, ...]] = field(default_factory=dict)  # of indexes that answered

    def refusal(self) -> str | None:
        """The refused key as one line naming its source and the fix, if it was refused."""
        if self.refused is None:
            return None
        return (f"api: Twelve Labs refused the API key from {self.key_source} "
                f"({self.refused.describe()}). Fix: {self.refused.fix}")


def preflight(config: Config, api: TwelveLabsClient, key_source: str) -> ApiCheck:
    """Raise ConfigError listing every problem that would make uploads fail.

    What the API said comes back: a refused key (``refused``: the caller pauses
    uploads with it) and each index's models.
    """
    problems: list[str] = []
    for i, folder in enumerate(config.folders):
        problems += check_folder(f"folders[{i}]", folder)
    found = probe_api(config, api, key_source)
    problems += found.problems
    if problems:
        raise ConfigError(problems, str(config.source) if config.source else None)
    return found


def check_folder(key: str, folder: FolderConfig) -> list[str]:
    if not folder.path.is_dir():
        return []  # the watcher reports it and keeps trying: a share may mount later
    if folder.after == "leave":  # nothing is moved: only records_dir is written
        assert folder.records_dir is not None
        problem = _writable(folder.records_dir)
        return [f"{key}.records_dir: {folder.records_dir}: {problem}"] if problem else []
    problems = []
    if not os.access(folder.path, os.W_OK | os.X_OK):
        problems.append(f"{key}.path: {folder.path} is not writable, so finished files "
                        "cannot be moved out of it")
    for name in ("done_dir", "failed_dir"):
        target: Path = getattr(folder, name)
        problem = _writable(target)
        if problem:
            problems.append(f"{key}.{name}: {target}: {problem}")
        elif target.stat().st_dev != folder.path.stat().st_dev:
            logger.warning("%s.%s: %s is on another filesystem than %s: every move is a "
                           "full copy (slower, and needs the space twice while it runs)",
                           key, name, target, folder.path)
    return problems


def _writable(directory: Path) -> str | None:
    """None if files can be created in ``directory`` (made if missing), else why not."""
    probe = directory / f"{TEMP_PREFIX}check"  # fixed name: a killed check leaves no litter
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.touch()
        probe.unlink()
    except OSError as exc:
        return f"cannot create files there ({exc.strerror or exc})"
    return None


def check_api(config: Config, api: TwelveLabsClient, key_source: str,
              only: set[str] | None = None) -> list[str]:
    """Every problem the start-up requests find, a refused key included (check-config)."""
    found = probe_api(config, api, key_source, only)
    refusal = found.refusal()
    return found.problems + ([refusal] if refusal else [])


def probe_api(config: Config, api: TwelveLabsClient, key_source: str,
              only: set[str] | None = None) -> ApiCheck:
    """One cheap ``GET /indexes/{id}`` per index (or those in ``only``): proves the key."""
    found = ApiCheck(key_source=key_source)
    for index_id, keys in config.folder_keys_by_index().items():
        if only is not None and index_id not in only:
            continue
        try:
            index = api.get_index(index_id)
        except AuthError as exc:
            found.refused = exc  # no index can be checked with a refused key
            return found
        except QuotaError as exc:
            logger.warning("Twelve Labs says the account is out of quota (%s); uploads will "
                           "pause until it has credit", exc.describe())
            continue
        except TransientError as exc:
            logger.warning("cannot check index %s at start (%s); starting anyway, uploads "
                           "retry with backoff", index_id, exc.describe())
            continue
        except ApiRedirected as exc:
            # Every index would answer the same: the address, not the index, is wrong.
            found.problems.append(f"api.base_url: {config.api.base_url} {exc.describe()}. "
                                  f"Fix: {exc.fix}")
            return found
        except ApiError as exc:
            found.problems.append(f"{keys[0]}.index_id: index {index_id} cannot be used with "
                                  f"this API key ({exc.describe()})")
            continue
        models = index_models(index)
        try:
            check_takes_videos(index_id, models)
        except NoVideoModel as exc:
            found.problems.append(f"{keys[0]}.index_id: {exc.reason}")
            continue
        found.models[index_id] = models
        logger.info("index %s (%s): reachable with the API key from %s; models: %s", index_id,
                    index.get("index_name") or "unnamed", key_source,
                    ", ".join(models) or "none named")
    return found
