"""SIGHUP: re-read the config; refuse a bad one; turn a good one into what to apply.

A reload never disturbs work in flight. Added folders are checked like at
start (done/failed writable, index usable with the key) before anything
changes; removed folders stop being watched, but files already tracked there
finish with the settings they had (``Config.retired``). Settings that the
running process cannot change safely are kept and named in the log.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from watcherd.config import Config, load_config
from watcherd.errors import ConfigError
from watcherd.service.preflight import CHECK_TIMEOUTS, check_folder, probe_api
from watcherd.state.states import ACTIVE_STATES
from watcherd.state.store import Store
from watcherd.twelvelabs.apikey import resolve_api_key
from watcherd.twelvelabs.client import TwelveLabsClient

logger = logging.getLogger(__name__)

# Fields whose change needs a restart: another database means another daemon's
# state, and the worker count sizes threads that may be mid-upload.
RESTART_ONLY = ("state_db", "upload_workers")


def prepare_reload(current: Config, store: Store) -> tuple[Config, list[str]]:
    """The config to apply and what changed; ConfigError if it must be refused."""
    if current.source is None:
        raise ConfigError(["the running config was not read from a file"])
    new = load_config(current.source)
    key = resolve_api_key(new.api.key_file)
    changes = describe_changes(current, new)
    kept = {name: getattr(current, name) for name in RESTART_ONLY
            if getattr(new, name) != getattr(current, name)}
    for name, value in kept.items():
        changes.append(f"{name} changes only on restart (keeping {value})")
    new = dataclasses.replace(new, retired=_retired(current, new, store), **kept)
    _check_new_folders(current, new, key.value, key.source)
    changes.append(f"API key from {key.source}")
    return new, changes


def describe_changes(old: Config, new: Config) -> list[str]:
    """Human descriptions of what differs, folder by folder and setting by setting."""
    before = {f.path: f for f in old.folders}
    after = {f.path: f for f in new.folders}
    changes = [f"added folder {p}" for p in after if p not in before]
    changes += [f"removed folder {p}" for p in before if p not in after]
    changes += [f"changed folder {p}" for p in after if p in before and after[p] != before[p]]
    skip = {"source", "folders", "retired", *RESTART_ONLY}
    for field in dataclasses.fields(Config):
        if field.name not in skip and getattr(old, field.name) != getattr(new, field.name):
            changes.append(f"{field.name} changed")
    return changes


def _retired(current: Config, new: Config, store: Store) -> tuple:
    """Folders gone from the config that still have files in flight."""
    kept = {f.path for f in new.folders}
    busy = {Path(record.folder) for record in store.in_states(*ACTIVE_STATES)}
    return tuple(f for f in (*current.folders, *current.retired)
                 if f.path not in kept and f.path in busy)


def _check_new_folders(current: Config, new: Config, key: str, key_source: str) -> None:
    before = set(current.folders)
    fresh = [(i, f) for i, f in enumerate(new.folders) if f not in before]
    problems = [p for i, f in fresh for p in check_folder(f"folders[{i}]", f)]
    known = {f.index_id for f in current.folders}
    to_check = {f.index_id for _, f in fresh} - known
    if to_check:
        client = TwelveLabsClient(new.api.base_url, lambda: key,
                                  connect_timeout=CHECK_TIMEOUTS[0], io_timeout=CHECK_TIMEOUTS[1])
        try:
            found = probe_api(new, client, key_source, only=to_check)
        finally:
            client.close()
        problems += found.problems
        if found.refused is not None:  # a pause, not a reason to refuse the reload
            logger.warning("cannot check index(es) %s of the new folders: %s", ", ".join(
                sorted(to_check)), found.refusal())
    if problems:
        raise ConfigError(problems, str(new.source))
