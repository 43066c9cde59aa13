"""``coordination:``: several watcherd hosts on one drop share, coordinated through PostgreSQL.

Read by ``config.py`` like every other section (errors with their key path);
imports nothing beyond the top level, so a single-host install never loads
the PostgreSQL driver. The DSN itself is read only when the daemon or a
command connects (``read_dsn``), from ``dsn_file`` or the service's
credential directory, and is never logged: it may hold a password.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watcherd.errors import ConfigError
from watcherd.yamlreader import Reader, Section

BACKENDS = ("postgres",)
COORDINATION_KEYS = {"backend", "dsn_file", "host_name", "lease_seconds", "heartbeat_seconds",
                     "schema"}
# The credential's name under $CREDENTIALS_DIRECTORY (LoadCredential=postgres-dsn:...).
DSN_CREDENTIAL = "postgres-dsn"
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class CoordinationConfig:
    backend: str = "postgres"
    dsn_file: Path | None = None
    # How this daemon is named in claims and ``watcherd status``: unique in the cluster.
    host_name: str = ""
    # A claim whose owner has not renewed it for this long may be taken over.
    lease_seconds: float = 60.0
    # Renewal period; unset: a third of the lease, so two renewals may fail in a row.
    heartbeat_seconds: float = 0.0
    # The PostgreSQL schema holding watcherd's tables (one per cluster).
    schema: str = "watcherd"

    @property
    def heartbeat(self) -> float:
        return self.heartbeat_seconds or self.lease_seconds / 3


def parse_coordination(reader: Reader, raw: Any) -> CoordinationConfig | None:
    """The ``coordination`` section, or None when the daemon runs alone."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        reader.errors.add("coordination", "must be a mapping (backend: postgres, dsn_file: ...)")
        return None
    reader.unknown_keys(raw, COORDINATION_KEYS, "coordination")
    section = Section(reader, raw, CoordinationConfig, "coordination")
    backend = section.choice("backend", BACKENDS)
    lease = section.number("lease_seconds", minimum=1)
    heartbeat = section.number("heartbeat_seconds", minimum=0)
    if heartbeat and heartbeat > lease / 2:
        reader.errors.add("coordination.heartbeat_seconds",
                          f"must be at most half of lease_seconds ({lease:g}), so one late "
                          "renewal does not lose every claim")
    schema = section.string("schema") or CoordinationConfig.schema
    if not SCHEMA_NAME.fullmatch(schema):
        reader.errors.add("coordination.schema",
                          f"must be a lower-case SQL name like watcherd (got {schema!r})")
    return CoordinationConfig(
        backend=backend, dsn_file=section.path("dsn_file"),
        host_name=section.string("host_name") or socket.gethostname(),
        lease_seconds=lease, heartbeat_seconds=heartbeat, schema=schema)


def read_dsn(settings: CoordinationConfig, env: dict[str, str] | None = None) -> str:
    """The connection string: ``dsn_file``, else ``$CREDENTIALS_DIRECTORY/postgres-dsn``."""
    env = dict(os.environ) if env is None else env
    path = settings.dsn_file
    if path is None and env.get("CREDENTIALS_DIRECTORY"):
        path = Path(env["CREDENTIALS_DIRECTORY"]) / DSN_CREDENTIAL
    if path is None:
        raise ConfigError(["coordination.dsn_file: required (or run as a service with "
                           f"LoadCredential={DSN_CREDENTIAL}:FILE)"])
    try:
        dsn = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError([f"coordination.dsn_file: cannot read {path}: "
                           f"{exc.strerror or exc}"]) from exc
    if not dsn:
        raise ConfigError([f"coordination.dsn_file: {path} is empty"])
    return dsn
