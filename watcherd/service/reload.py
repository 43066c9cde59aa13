"""SIGHUP: re-read the config; refuse a bad one; turn a good one into what to apply.

A reload never disturbs work in flight. Added folders are checked like at
start (done/failed writable, index usable with the key) before anything
changes; every index is asked for its models again, so each folder's
validation profile follows its index (``folderprofiles``); removed folders
stop being watched, but files already tracked there finish with the settings
they had (``Config.retired``). Settings that the running process cannot
change safely are kept and named in the log.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from watcherd.config import Config, load_config
from watcherd.errors import ApiError, ConfigError, TransientError, UploadsPaused
from watcherd.media.profiles import index_models
from watcherd.service.folderprofiles import log_profiles, resolve_profiles
from watcherd.service.preflight import CHECK_TIMEOUTS, ApiCheck, check_folder, probe_api
from watcherd.state.states import ACTIVE_STATES
from watcherd.state.store import Store
from watcherd.twelvelabs.apikey import resolve_api_key
from watcherd.twelvelabs.client import TwelveLabsClient
from watcherd.webhookconfig import secret_problems

logger = logging.getLogger(__name__)

# Fields whose change needs a restart: another database means another daemon's
# state, the worker count sizes threads that may be mid-upload, and the metrics
# listener is bound once, before any file is taken.
RESTART_ONLY = ("state_db", "upload_workers", "metrics")


def prepare_reload(current: Config, store: Store) -> tuple[Config, list[str]]:
    """The config to apply and what changed; ConfigError if it must be refused."""
    if current.source is None:
        raise ConfigError(["the running config was not read from a file"])
    new = load_config(current.source)
    key = resolve_api_key(new.api.key_file)
    unreadable = secret_problems(new.webhooks)
    if unreadable:
        raise ConfigError(unreadable, str(new.source))
    changes = describe_changes(current, new)
    kept = {name: getattr(current, name) for name in RESTART_ONLY
            if getattr(new, name) != getattr(current, name)}
    for name, value in kept.items():
        changes.append(f"{name} changes only on restart (keeping {value})")
    new = dataclasses.replace(new, retired=_retired(current, new, store), **kept)
    models = _check_indexes(current, new, key.value, key.source)
    new = resolve_profiles(new, models, store)
    log_profiles(new)
    changes += describe_profile_changes(current, new)
    for warning in new.warnings:
        logger.warning("%s: %s", new.source, warning)
    changes.append(f"API key from {key.source}")
    return new, changes


def describe_changes(old: Config, new: Config) -> list[str]:
    """Human descriptions of what differs, folder by folder and setting by setting."""
    before = {f.path: f for f in old.folders}
    after = {f.path: f for f in new.folders}
    changes = [f"added folder {p}" for p in after if p not in before]
    changes += [f"removed folder {p}" for p in before if p not in after]
    changes += [f"changed folder {p}" for p in after if p in before and after[p] != before[p]]
    skip = {"source", "folders", "retired", "warnings", *RESTART_ONLY}
    for field in dataclasses.fields(Config):
        if field.name not in skip and getattr(old, field.name) != getattr(new, field.name):
            changes.append(f"{field.name} changed")
    return changes


def describe_profile_changes(old: Config, new: Config) -> list[str]:
    """Folders whose validation profile changed (profiles take no part in equality)."""
    before = {f.path: f.profile for f in old.folders}
    return [f"folder {f.path} now validates with {f.profile.describe()} (was "
            f"{before[f.path].describe()})" for f in new.folders
            if f.path in before and (before[f.path].name, before[f.path].limits) !=
            (f.profile.name, f.profile.limits)]


def _retired(current: Config, new: Config, store: Store) -> tuple:
    """Folders gone from the config that still have files in flight."""
    kept = {f.path for f in new.folders}
    busy = {Path(record.folder) for record in store.in_states(*ACTIVE_STATES)}
    return tuple(f for f in (*current.folders, *current.retired)
                 if f.path not in kept and f.path in busy)


def _check_indexes(current: Config, new: Config, key: str,
                   key_source: str) -> dict[str, tuple[str, ...]]:
    """The models of every index that answered; ConfigError for a new folder's problem.

    An index the running config already uses is asked only for its models: if
    it is gone, its folders pause (``indexpause``) rather than refuse the reload.
    """
    before = set(current.folders)
    fresh = [(i, f) for i, f in enumerate(new.folders) if f not in before]
    problems = [p for i, f in fresh for p in check_folder(f"folders[{i}]", f)]
    known = {f.index_id for f in current.folders}
    to_check = {f.index_id for _, f in fresh} - known
    client = TwelveLabsClient(new.api.base_url, lambda: key,
                              connect_timeout=CHECK_TIMEOUTS[0], io_timeout=CHECK_TIMEOUTS[1])
    try:
        found = probe_api(new, client, key_source, only=to_check) if to_check else ApiCheck()
        again = _models_of(client, {f.index_id for f in new.folders} - to_check)
    finally:
        client.close()
    problems += found.problems
    if found.refused is not None:  # a pause, not a reason to refuse the reload
        logger.warning("cannot check index(es) %s of the new folders: %s", ", ".join(
            sorted(to_check)), found.refusal())
    if problems:
        raise ConfigError(problems, str(new.source))
    return {**again, **found.models}


def _models_of(client: TwelveLabsClient, index_ids: set[str]) -> dict[str, tuple[str, ...]]:
    """The models of indexes already in use; one that does not answer keeps its cached
    profile. The first that cannot be reached ends the round: the main thread must not
    wait out a timeout per index while the watchdog counts."""
    models: dict[str, tuple[str, ...]] = {}
    for index_id in sorted(index_ids):
        try:
            models[index_id] = index_models(client.get_index(index_id))
        except (TransientError, UploadsPaused) as exc:
            logger.warning("reload: cannot ask Twelve Labs for the models of index(es) %s "
                           "(%s); their folders keep the profile they had", ", ".join(
                               sorted(i for i in index_ids if i not in models)), exc.describe())
            break
        except ApiError as exc:  # gone: its folders pause (indexpause), not the reload
            logger.warning("reload: index %s: %s", index_id, exc.describe())
    return models
