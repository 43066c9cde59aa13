"""How the operator commands open the daemon's config and database.

All of them are safe while the daemon runs: they read the database
read-only; only ``retry`` writes (a history note per file it moves back), and
``webhooks --replay`` (an outbox row set pending again).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from watcherd.config import Config, load_config
from watcherd.state.instance import other_databases
from watcherd.state.store import Store


def operator_config(args: argparse.Namespace) -> Config:
    """The config, with a note when a daemon runs its folders on another database."""
    config = load_config(args.config)
    for holder in other_databases(config):
        print(f"watcherd: note: {holder.folder} is run by {holder.describe()}, not with "
              f"{config.state_db}: to see what it does, give -c the config it runs with",
              file=sys.stderr)
    return config


def configured_folder(config: Config, value: str | None) -> Path | None:
    """``--folder``: None, or one of the configured folders (else exit 1 naming them)."""
    if value is None:
        return None
    path = Path(value).expanduser().absolute()
    if not any(f.path == path for f in config.folders):
        raise SystemExit(f"watcherd: {path} is not a configured folder "
                         f"({', '.join(str(f.path) for f in config.folders)})")
    return path


@contextmanager
def readonly_store(config: Config) -> Iterator[Store | None]:
    """The daemon's database opened read-only, or None before its first run."""
    store = Store(config.state_db, readonly=True) if Path(config.state_db).exists() else None
    try:
        yield store
    finally:
        if store is not None:
            store.close()
