"""What the operator commands show of the cluster, from any host.

``status`` lists every host (name, state, heartbeat age, files owned) and the
claims by phase; ``explain`` names the host that owns a file; ``retry`` finds
a failed file another host finalized. Each opens its own short connection;
PostgreSQL away is reported in the output, never a crash of the command.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from watcherd.cluster.claims import Claim, ClaimBook
from watcherd.cluster.settings import read_dsn
from watcherd.cluster.share import read_share_id
from watcherd.config import Config
from watcherd.errors import ConfigError


@contextmanager
def cluster_book(config: Config) -> Iterator[ClaimBook]:
    from watcherd.cluster.connection import open_connection

    settings = config.coordination
    assert settings is not None
    conn = open_connection(read_dsn(settings), settings.schema, settings.lease_seconds)
    try:
        yield ClaimBook(conn, settings.host_name, settings.lease_seconds)
    finally:
        conn.close()


def _unavailable(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"PostgreSQL does not answer: {text[0] if text else type(exc).__name__}"


def cluster_status(config: Config) -> dict[str, Any]:
    """Every host and the cluster's claims by phase, or why they cannot be read."""
    try:
        with cluster_book(config) as book:
            hosts = book.hosts()
            counts = book.phase_counts()
            expired = book.expired_count()
    except ConfigError as exc:
        return {"error": "; ".join(exc.errors)}
    except Exception as exc:  # noqa: BLE001 (any driver error: said in the output)
        return {"error": _unavailable(exc)}
    return {
        "this_host": config.coordination.host_name if config.coordination else None,
        "hosts": [{"name": h["name"], "state": h["state"], "detail": h["detail"],
                   "pid": h["pid"], "heartbeat_age_seconds": round(h["heartbeat_age"], 1),
                   "files_owned": h["files_owned"],
                   "alive": h["state"] != "stopped" and h["heartbeat_age"] <
                   (config.coordination.lease_seconds if config.coordination else 60)}
                  for h in hosts],
        "claims": counts,
        "expired_leases": expired,
    }


def claim_at(config: Config, path: str) -> dict[str, Any] | None:
    """The claim of the file at ``path`` (in the inbox, or where it was moved to)."""
    shares = _shares(config)
    folder = config.folder_for(path)
    share = read_share_id(folder.path) if folder is not None else None
    try:
        with cluster_book(config) as book:
            # Moved: its target is recorded relative to its drop folder, whichever it was.
            found = book.by_dest([os.path.relpath(path, f) for f in shares.values()])
            if found is None and folder is not None and share is not None:
                found = book.latest_for(share, os.fsencode(os.path.relpath(path, folder.path)))
    except ConfigError as exc:
        return {"error": "; ".join(exc.errors)}
    except Exception as exc:  # noqa: BLE001 (any driver error: said in the output)
        return {"error": _unavailable(exc)}
    return None if found is None else describe(found, shares.get(found.share))


def describe(claim: Claim, folder: Path | None) -> dict[str, Any]:
    return {"owner": claim.owner, "phase": claim.phase, "epoch": claim.epoch,
            "takeovers": claim.takeovers, "task_id": claim.task_id,
            "lease_until": claim.lease_until.isoformat(),
            "dest_path": local_dest(claim, folder) if folder else claim.dest_path,
            "relpath": os.fsdecode(claim.relpath), "outcome": claim.outcome,
            "reason": claim.reason}


def local_dest(claim: Claim, folder: Path) -> str | None:
    """Where the claim's file was moved, on this host's mount of its drop folder."""
    if claim.dest_path is None:
        return None
    return os.path.normpath(os.path.join(folder, claim.dest_path))


def failed_elsewhere(config: Config, target: str | None) -> list[tuple[Claim, Path, Path]]:
    """Failed files (at ``target``, or all) finalized by any host: (claim, where it is in
    failed/, where it goes back to)."""
    shares = _shares(config)
    with cluster_book(config) as book:
        claims = [c for c in book.failed() if c.share in shares and c.dest_path]
    found = [(c, Path(local_dest(c, shares[c.share]) or ""),
              shares[c.share] / os.fsdecode(c.relpath)) for c in claims]
    return [entry for entry in found if target in (None, str(entry[1]), str(entry[2]))]


def _shares(config: Config) -> dict[str, Path]:
    """Each configured folder by its id (folders not coordinated yet have none)."""
    found = {read_share_id(f.path): f.path for f in config.folders}
    return {share: path for share, path in found.items() if share is not None}
