"""A PostgreSQL schema of its own for each test that needs the real server.

The server is the machine's (CI's ``.ci/run`` starts it): 127.0.0.1:5432, trust
authentication, database ``test``; ``WATCHERD_TEST_PG_DSN`` names another. In
CI (``CI=true``) a server that does not answer fails the test; elsewhere the
test is skipped and says why.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class PgSchema:
    dsn: str
    schema: str

    def connect(self):
        import psycopg
        from psycopg.rows import dict_row

        conn = psycopg.connect(self.dsn, autocommit=True, row_factory=dict_row,
                               connect_timeout=5)
        conn.execute(f'SET search_path TO "{self.schema}"')
        return conn

    def dsn_file(self, folder: Path) -> Path:
        path = folder / "postgres-dsn"
        path.write_text(self.dsn + "\n")
        return path

    def coordination(self, folder: Path, host: str, lease: float = 3.0) -> dict:
        """The ``coordination:`` section of a daemon's config."""
        return {"backend": "postgres", "dsn_file": str(self.dsn_file(folder)),
                "host_name": host, "lease_seconds": lease, "schema": self.schema}


def server_dsn() -> str:
    return os.environ.get("WATCHERD_TEST_PG_DSN", DEFAULT_DSN)


def require_server() -> str:
    """The DSN, once the server answers; skip (or in CI fail) when it does not."""
    dsn = server_dsn()
    try:
        import psycopg

        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001 (any reason is reported the same way)
        reason = f"PostgreSQL at {dsn} does not answer ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run these tests against the server")
        pytest.skip(reason)
    return dsn


@pytest.fixture(name="pg")
def pg_fixture() -> Iterator[PgSchema]:
    """A fresh, empty schema name (watcherd creates it); dropped afterwards."""
    import psycopg

    dsn = require_server()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield PgSchema(dsn, schema)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
