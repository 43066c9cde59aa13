"""The PostgreSQL schema: created and migrated by watcherd itself, one version at a time.

Several hosts may start at the same moment on an empty database: every
migration runs inside one transaction that first takes a transaction-level
advisory lock (keyed by the schema's name), so exactly one host creates the
tables and the others wait, then find the version already there.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any

logger = logging.getLogger(__name__)

# Appended to, never edited: a host finds its database's version and runs the rest.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE hosts (
            name text PRIMARY KEY,
            instance text NOT NULL,          -- one run of one daemon
            place text,                      -- machine and state database: the same daemon
            pid integer,
            state text NOT NULL,             -- running | paused | stopped
            detail text,
            started_at timestamptz NOT NULL DEFAULT now(),
            heartbeat_at timestamptz NOT NULL DEFAULT now()
        )""",
        """CREATE TABLE claims (
            id bigserial PRIMARY KEY,
            share text NOT NULL,             -- the drop folder's id (its marker file)
            relpath bytea NOT NULL,          -- the file's path below the folder, exact bytes
            size bigint NOT NULL,
            mtime_ns bigint NOT NULL,
            index_id text NOT NULL,
            sha256 text,
            phase text NOT NULL,             -- claimed | uploading | indexing | finalizing
                                             -- | done | failed
            owner text NOT NULL,
            epoch integer NOT NULL DEFAULT 1, -- raised by every takeover: the fencing token
            lease_until timestamptz NOT NULL,
            takeovers integer NOT NULL DEFAULT 0,
            upload_started_at double precision,
            upload_method text,              -- "tasks" or "multipart": how it was sent
            task_id text,
            video_id text,
            upload_id text,
            asset_id text,
            indexed_asset_id text,
            outcome text,
            reason text,
            error_code text,
            rule text,
            dest_path text,                  -- the move's target, recorded before the move,
                                             -- relative to the drop folder (mounts differ)
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            UNIQUE (share, relpath, size, mtime_ns)
        )""",
        "CREATE INDEX claims_open ON claims (lease_until) WHERE phase NOT IN ('done', 'failed')",
        "CREATE INDEX claims_owner ON claims (owner) WHERE phase NOT IN ('done', 'failed')",
        "CREATE INDEX claims_content ON claims (sha256, index_id)",
        "CREATE INDEX claims_dest ON claims (dest_path)",
    ),
)
VERSION = len(MIGRATIONS)


def lock_key(schema: str) -> int:
    """A stable 32-bit advisory lock key for ``schema`` (same on every host)."""
    return zlib.crc32(f"watcherd:{schema}".encode())


def migrate(conn: Any, schema: str) -> int:
    """Bring ``schema`` to ``VERSION``; returns the version found before."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(schema),))
        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        cur.execute(f'SET LOCAL search_path TO "{schema}"')
        cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        cur.execute("SELECT coalesce(max(version), 0) AS found FROM schema_version")
        found = int(cur.fetchone()["found"])  # connections give rows as dicts
        if found > VERSION:
            raise RuntimeError(f"PostgreSQL schema {schema} is at version {found}, newer than "
                               f"this watcherd ({VERSION}); upgrade watcherd on this host")
        for version in range(found + 1, VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                cur.execute(statement)
            cur.execute("INSERT INTO schema_version (version) VALUES (%s)", (version,))
            logger.info("PostgreSQL schema %s: migrated to version %d", schema, version)
    return found
