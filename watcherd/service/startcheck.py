"""What ``run`` and ``check-config`` both refuse at start: one list, so they agree.

Beyond what the YAML itself says (``config``), a config is unusable at start
when a folder ``path`` is missing or not a directory, when the API key has no
source or its configured file cannot be read, or when an ``index_id`` is still
the example's placeholder. Each is a configuration error (exit 78) naming its
key. A folder that disappears *after* start is not checked here: the daemon
tolerates that (a share unmounting) and watches it again when it returns.

``check-config --online`` adds the start-up preflight's API checks, with the
same requests (``preflight.check_api``): a refused key, an unknown index or one
that can no longer take videos (Pegasus 1.2 only) is exit 78 there too, and
each folder's validation profile follows from its index's models.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import watcherd.service.preflight as preflight
from watcherd.config import Config
from watcherd.errors import ConfigError, QuotaError, TransientError
from watcherd.media.profiles import index_models
from watcherd.service.folderprofiles import resolve_profiles
from watcherd.service.preflight import CHECK_TIMEOUTS, check_api
from watcherd.twelvelabs.apikey import ApiKey, resolve_api_key
from watcherd.webhookconfig import secret_problems


def check_at_start(config: Config, env: dict[str, str] | None = None) -> ApiKey:
    """The API key to start with; ConfigError listing every problem otherwise."""
    problems = (folder_problems(config) + placeholder_problems(config)
                + secret_problems(config.webhooks, env))
    key = None
    try:
        key = resolve_api_key(config.api.key_file, env)
    except ConfigError as exc:
        problems += exc.errors
    if problems or key is None:
        raise ConfigError(problems, str(config.source) if config.source else None)
    return key


def folder_problems(config: Config) -> list[str]:
    problems = []
    for i, folder in enumerate(config.folders):
        try:
            mode = os.stat(folder.path).st_mode
        except FileNotFoundError:
            problems.append(f"folders[{i}].path: {folder.path} does not exist (create it, or "
                            "mount the share, before starting watcherd)")
            continue
        except OSError as exc:
            problems.append(f"folders[{i}].path: cannot reach {folder.path} "
                            f"({exc.strerror or exc})")
            continue
        if not stat.S_ISDIR(mode):
            problems.append(f"folders[{i}].path: {folder.path} is not a directory")
        elif folder.after == "delete" and read_only(folder.path):
            problems.append(f"folders[{i}].after: delete, but {folder.path} is read-only, so "
                            "nothing could be deleted; use after: leave for a read-only source")
    return problems


def read_only(path: Path) -> bool:
    """A read-only mount, or a folder this user may not change (``after: delete``)."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return True
    except OSError:
        return False
    return not os.access(path, os.W_OK | os.X_OK)


def placeholder_problems(config: Config) -> list[str]:
    # config.example.yaml says index_id: "<index id>"; no real index id has brackets.
    return [f"folders[{i}].index_id: {folder.index_id!r} is the example's placeholder: put "
            "the id of your Twelve Labs index here"
            for i, folder in enumerate(config.folders)
            if folder.index_id.startswith("<") and folder.index_id.endswith(">")]


@dataclass
class OnlineReport:
    """What ``check-config --online`` learnt from Twelve Labs."""

    problems: list[str] = field(default_factory=list)  # refused key, unknown index: exit 78
    reachable: dict[str, str] = field(default_factory=dict)  # index id -> its name
    unchecked: dict[str, str] = field(default_factory=dict)  # index id -> why not
    models: dict[str, tuple[str, ...]] = field(default_factory=dict)  # index id -> its models
    config: Config | None = None  # with each folder's profile, once every index is usable


def _witness_client_class() -> type:
    # Imported here: check-config without --online needs no HTTP client.
    from watcherd.twelvelabs.client import TwelveLabsClient

    class _WitnessClient(TwelveLabsClient):
        """The real client, noting what each index check answered for the report."""

        def __init__(self, report: OnlineReport, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.report = report

        def get_index(self, index_id: str) -> dict[str, Any]:
            try:
                index = super().get_index(index_id)
            except (TransientError, QuotaError) as exc:
                self.report.unchecked[index_id] = exc.describe()
                raise
            self.report.reachable[index_id] = str(index.get("index_name") or "unnamed")
            self.report.models[index_id] = index_models(index)
            return index

    return _WitnessClient


def check_online(config: Config, key: ApiKey) -> OnlineReport:
    """The key and every index, checked with the start-up preflight's requests."""
    report = OnlineReport()
    client = _witness_client_class()(report, config.api.base_url, lambda: key.value,
                                     connect_timeout=config.api.connect_timeout_seconds,
                                     io_timeout=config.api.io_timeout_seconds)
    # Its warnings speak of starting anyway; the report says what was not checked.
    quiet = logging.getLogger(preflight.__name__)
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with client.short_timeouts(*CHECK_TIMEOUTS) as quick:
            report.problems = check_api(config, quick, key.source)
    finally:
        quiet.setLevel(level)
        client.close()
    if not report.problems:
        report.config = resolve_profiles(config, report.models, None)
    return report
