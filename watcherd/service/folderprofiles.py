"""Give every folder of a config its validation profile, at start and on reload.

The index's models, as Twelve Labs just named them, decide; each answer is
cached in the state database, so a start without network validates with the
index's last known models rather than guessing. Never asked and nothing
cached: the newest profile, with a warning (a false local reject is worse than
an upload Twelve Labs refuses). ``folders[].model`` pins a profile whatever
the index says; ``folders[].limits`` apply on top either way.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime

import watcherd.media.profiles as profiles
from watcherd.config import Config, FolderConfig
from watcherd.errors import ConfigError
from watcherd.media.profiles import AUTO, FROM_CACHE, FROM_INDEX, FolderProfile, NoVideoModel
from watcherd.state.store import Store

logger = logging.getLogger(__name__)


def resolve_profiles(config: Config, fresh: dict[str, tuple[str, ...]],
                     store: Store | None) -> Config:
    """``config`` with each folder's profile; ConfigError if an index takes no videos.

    ``fresh``: the models of the indexes that answered just now (saved to the
    cache unless ``store`` is read-only or None).
    """
    if store is not None and not store.readonly:
        for index_id, models in fresh.items():
            store.save_index_models(index_id, models)
    problems: list[str] = []
    folders = []
    for i, folder in enumerate(config.folders):
        try:
            folder = dataclasses.replace(folder, profile=_profile(folder, fresh, store))
        except NoVideoModel as exc:
            problems.append(f"folders[{i}].index_id: {exc.reason}")
        folders.append(folder)
    if problems:
        raise ConfigError(problems, str(config.source) if config.source else None)
    return dataclasses.replace(config, folders=tuple(folders))


def cached_profiles(config: Config, store: Store | None) -> Config:
    """For the operator commands: the profiles the daemon validates with, from the cache
    alone (no request; a read-only store)."""
    try:
        return resolve_profiles(config, {}, store)
    except ConfigError:  # the daemon refuses to start with it; say what the config says
        return config


def _profile(folder: FolderConfig, fresh: dict[str, tuple[str, ...]],
             store: Store | None) -> FolderProfile:
    known = _models(folder.index_id, fresh, store)
    if known is not None:
        profiles.check_takes_videos(folder.index_id, known[0])
    if folder.model != AUTO:
        return profiles.pinned(folder.model, folder.limits)
    if known is None:
        return profiles.default(folder.limits)
    models, source, checked_at = known
    return profiles.from_models(models, folder.limits, source=source, checked_at=checked_at)


def _models(index_id: str, fresh: dict[str, tuple[str, ...]],
            store: Store | None) -> tuple[tuple[str, ...], str, float | None] | None:
    if index_id in fresh:
        return fresh[index_id], FROM_INDEX, store.clock() if store is not None else None
    cached = store.index_models(index_id) if store is not None else None
    if cached is None:
        return None
    return cached[0], FROM_CACHE, cached[1]


def log_profiles(config: Config) -> None:
    """One line per folder: what it validates with; a warning where that is only a guess."""
    for i, folder in enumerate(config.folders):
        profile = folder.profile
        if profile.source == profiles.FROM_DEFAULT:
            logger.warning("folders[%d] (%s): index %s has not named its models yet and none "
                           "are cached: validating with %s, the newest profile, until it "
                           "answers (at the next start or reload)", i, folder.path,
                           folder.index_id, profile.name)
        elif profile.source == FROM_CACHE:
            asked = datetime.fromtimestamp(profile.checked_at or 0).isoformat(timespec="seconds")
            logger.warning("folders[%d] (%s): index %s did not answer; validating with %s, the "
                           "models it named at %s", i, folder.path, folder.index_id,
                           profile.describe(), asked)
        else:
            logger.info("folders[%d] (%s): validating with %s", i, folder.path,
                        profile.describe())
