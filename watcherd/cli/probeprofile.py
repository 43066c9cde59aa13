"""Which profile ``watcherd probe`` checks a file against, and the table saying so.

``--model`` pins one (source "override"); ``--index ID`` asks Twelve Labs for
that index's models with the configured key and base URL (source "index"),
or, when the API cannot be reached, uses the models the daemon cached in its
state database (source "cache"); neither: the newest profile ("default").
Read-only: probe never writes the cache.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime

from rich.table import Table

import watcherd.media.profiles as profiles
from watcherd.cli.render import table
from watcherd.config import Config, load_config
from watcherd.errors import ApiError, QuotaError, TransientError
from watcherd.media.profiles import FROM_CACHE, FROM_INDEX, FolderProfile, NoVideoModel
from watcherd.service.preflight import CHECK_TIMEOUTS
from watcherd.state.store import Store
from watcherd.twelvelabs.apikey import resolve_api_key
from watcherd.twelvelabs.client import TwelveLabsClient


def choose_profile(args: argparse.Namespace) -> FolderProfile:
    """The profile the command line asks for; SystemExit (status 1) saying why not."""
    if args.model and args.index:
        raise SystemExit("watcherd probe: give --model or --index, not both")
    if args.model:
        warning = profiles.deprecation(args.model)
        if warning:
            print(f"watcherd: warning: {warning}", file=sys.stderr)
        return profiles.pinned(args.model)
    if args.index:
        return _from_index(load_config(args.config), args.index)
    return profiles.default()


def profile_table(profile: FolderProfile) -> Table:
    checked = (datetime.fromtimestamp(profile.checked_at).isoformat(timespec="seconds")
               if profile.checked_at is not None else "")
    return table(("profile", "source", "index models", "asked at", "figures as of"), [(
        profile.name, profile.source, ", ".join(profile.models), checked, profile.as_of())])


def _from_index(config: Config, index_id: str) -> FolderProfile:
    key = resolve_api_key(config.api.key_file)
    client = TwelveLabsClient(config.api.base_url, lambda: key.value,
                              connect_timeout=CHECK_TIMEOUTS[0], io_timeout=CHECK_TIMEOUTS[1])
    try:
        index = client.get_index(index_id)
    except (TransientError, QuotaError) as exc:
        models, checked_at = _cached(config, index_id, exc.describe())
        source = FROM_CACHE
    except ApiError as exc:  # refused key, unknown index: nothing to fall back on
        raise SystemExit(f"watcherd probe: index {index_id}: {exc.describe()}") from exc
    else:
        models, checked_at, source = profiles.index_models(index), time.time(), FROM_INDEX
    finally:
        client.close()
    try:
        profiles.check_takes_videos(index_id, models)
    except NoVideoModel as exc:
        raise SystemExit(f"watcherd probe: {exc.reason}") from exc
    return profiles.from_models(models, source=source, checked_at=checked_at)


def _cached(config: Config, index_id: str, why: str) -> tuple[tuple[str, ...], float]:
    cached = None
    if config.state_db.exists():
        store = Store(config.state_db, readonly=True)
        try:
            cached = store.index_models(index_id)
        finally:
            store.close()
    if cached is None:
        raise SystemExit(f"watcherd probe: cannot ask Twelve Labs about index {index_id} "
                         f"({why}) and {config.state_db} has no cached answer for it")
    print(f"watcherd: warning: cannot ask Twelve Labs about index {index_id} ({why}); using "
          "its models as the daemon last saw them", file=sys.stderr)
    return cached
