"""The claim table's SQL: every question and write the hosts share, one round trip each.

A claim is one row per file identity (the drop folder's id, the path below
it, size and mtime), inserted by exactly one host (``INSERT … ON CONFLICT DO
NOTHING``, committed at once: no row lock outlives a statement). The owner
renews a lease; a claim whose lease ran out is taken over by another host
with ``FOR UPDATE SKIP LOCKED`` (two hosts never take the same one, and
neither waits for the other), which raises its ``epoch``. Every write of an
owner names the epoch it holds: a write with an older one changes nothing,
which is how a stale owner learns it must stand down (fencing).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

FINAL_PHASES = ("done", "failed")
OPEN = "phase NOT IN ('done', 'failed')"
LEASE = "now() + %(lease)s * interval '1 second'"
# What an owner may write besides the lease (``record``).
RECORDED = frozenset({"phase", "sha256", "index_id", "upload_started_at", "upload_method",
                      "task_id",
                      "video_id", "upload_id", "asset_id", "indexed_asset_id", "outcome",
                      "reason", "error_code", "rule", "dest_path"})


@dataclass(frozen=True)
class Identity:
    share: str
    relpath: bytes
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Claim:
    id: int
    share: str
    relpath: bytes
    size: int
    mtime_ns: int
    index_id: str
    sha256: str | None
    phase: str
    owner: str
    epoch: int
    lease_until: datetime
    takeovers: int
    upload_started_at: float | None
    task_id: str | None
    video_id: str | None
    upload_id: str | None
    asset_id: str | None
    indexed_asset_id: str | None
    outcome: str | None
    reason: str | None
    error_code: str | None
    rule: str | None
    dest_path: str | None
    created_at: datetime
    updated_at: datetime
    previous: str | None = None  # after a takeover: whose it was
    expired: bool = False        # read by ``get``: the lease ran out (PostgreSQL's clock)
    upload_method: str | None = None

    @classmethod
    def of(cls, row: dict[str, Any]) -> Claim:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in row.items() if k in names}
        values["relpath"] = bytes(values["relpath"])
        return cls(**values)

    @property
    def final(self) -> bool:
        return self.phase in FINAL_PHASES


TAKE = f"""
WITH old AS (
    SELECT id, owner FROM claims
    WHERE {{where}} AND {OPEN} AND lease_until < now() AND owner <> %(owner)s
    ORDER BY lease_until LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
UPDATE claims c SET owner = %(owner)s, epoch = c.epoch + 1, takeovers = c.takeovers + 1,
    lease_until = {LEASE}, updated_at = now()
FROM old WHERE c.id = old.id
RETURNING c.*, old.owner AS previous
"""


class ClaimBook:
    """The claims and hosts tables through one psycopg connection (autocommit)."""

    def __init__(self, conn: Any, owner: str, lease_seconds: float) -> None:
        self.conn = conn
        self.owner = owner
        self.lease = lease_seconds
        self.round_trips = 0  # for the bench: statements sent

    def _rows(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        self.round_trips += 1
        with self.conn.cursor() as cur:
            cur.execute(sql, {"owner": self.owner, "lease": self.lease, **params})
            return list(cur.fetchall()) if cur.description else []

    def _claims(self, sql: str, params: dict[str, Any]) -> list[Claim]:
        return [Claim.of(row) for row in self._rows(sql, params)]

    def ping(self) -> None:
        self._rows("SELECT 1", {})

    # -- taking files --------------------------------------------------------

    def insert(self, key: Identity, index_id: str) -> Claim | None:
        """A new claim for ``key``, ours; None if any host claimed it before."""
        found = self._claims(
            f"""INSERT INTO claims (share, relpath, size, mtime_ns, index_id, phase, owner,
                                    lease_until)
                VALUES (%(share)s, %(relpath)s, %(size)s, %(mtime_ns)s, %(index_id)s,
                        'claimed', %(owner)s, {LEASE})
                ON CONFLICT (share, relpath, size, mtime_ns) DO NOTHING RETURNING *""",
            {**vars(key), "index_id": index_id})
        return found[0] if found else None

    def get(self, key: Identity) -> Claim | None:
        found = self._claims("""SELECT *, lease_until < now() AS expired FROM claims
                                WHERE share = %(share)s AND relpath = %(relpath)s
                                AND size = %(size)s AND mtime_ns = %(mtime_ns)s""", vars(key))
        return found[0] if found else None

    def take(self, claim_id: int) -> Claim | None:
        """Take over ``claim_id`` if its lease ran out and no other host is taking it."""
        found = self._claims(TAKE.format(where="id = %(id)s"), {"id": claim_id, "limit": 1})
        return found[0] if found else None

    def take_expired(self, shares: list[str], limit: int) -> list[Claim]:
        """Open claims of ``shares`` whose owner stopped renewing, now ours."""
        return self._claims(TAKE.format(where="share = ANY(%(shares)s)"),
                            {"shares": shares, "limit": limit})

    # -- an owner's writes (fenced by epoch) ---------------------------------

    def record(self, claim: Claim, **values: Any) -> Claim | None:
        """Renew ``claim``'s lease and write ``values``; None when it is no longer ours."""
        unknown = set(values) - RECORDED
        if unknown:
            raise ValueError(f"not a claim column an owner writes: {sorted(unknown)}")
        sets = "".join(f", {name} = %({name})s" for name in values)
        found = self._claims(
            f"""UPDATE claims SET lease_until = {LEASE}, updated_at = now(){sets}
                WHERE id = %(id)s AND owner = %(owner)s AND epoch = %(epoch)s RETURNING *""",
            {**values, "id": claim.id, "epoch": claim.epoch})
        return found[0] if found else None

    def content_holder(self, claim: Claim, sha256: str, index_id: str) -> Claim | None:
        """Another claim with this content in this index, uploaded or being uploaded.

        Run inside ``content_lock``: two hosts with one content then take turns.
        """
        found = self._claims(
            """SELECT * FROM claims WHERE sha256 = %(sha256)s AND index_id = %(index_id)s
               AND id <> %(id)s AND (phase IN ('uploading', 'indexing')
                                     OR (phase IN ('finalizing', 'done') AND outcome = 'ready'))
               ORDER BY task_id IS NULL, id LIMIT 1""",
            {"sha256": sha256, "index_id": index_id, "id": claim.id})
        return found[0] if found else None

    def content_lock(self, sha256: str, index_id: str) -> None:
        """Serialise, until the transaction ends, the hosts deciding about one content."""
        self._rows("SELECT pg_advisory_xact_lock(hashtext(%(key)s))",
                   {"key": f"{index_id}/{sha256}"})

    def drop(self, claim: Claim) -> bool:
        """Forget a claim that never reached the API (the file changed before its upload)."""
        return bool(self._rows(
            """DELETE FROM claims WHERE id = %(id)s AND owner = %(owner)s AND epoch = %(epoch)s
               AND phase = 'claimed' RETURNING id""", {"id": claim.id, "epoch": claim.epoch}))

    def hand_over(self, key: Identity, task_id: str, video_id: str | None) -> str | None:
        """Give a task to a claim that has none and has not uploaded; its owner, or None."""
        rows = self._rows(
            """UPDATE claims SET task_id = %(task_id)s, video_id = %(video_id)s,
                   phase = 'indexing', updated_at = now()
               WHERE share = %(share)s AND relpath = %(relpath)s AND size = %(size)s
                 AND mtime_ns = %(mtime_ns)s AND task_id IS NULL
                 AND phase IN ('claimed', 'uploading') RETURNING owner""",
            {**vars(key), "task_id": task_id, "video_id": video_id})
        return rows[0]["owner"] if rows else None

    def renew_all(self) -> dict[int, int]:
        """Renew every open claim of ours: {claim id: epoch}."""
        rows = self._rows(f"""UPDATE claims SET lease_until = {LEASE}
                              WHERE owner = %(owner)s AND {OPEN} RETURNING id, epoch""", {})
        return {row["id"]: row["epoch"] for row in rows}

    def let_go(self) -> int:
        """A clean stop: our open claims may be taken over at once."""
        return len(self._rows(f"""UPDATE claims SET lease_until = now()
                                  WHERE owner = %(owner)s AND {OPEN} RETURNING id""", {}))

    # -- hosts ---------------------------------------------------------------

    def register(self, instance: str, pid: int, place: str = "") -> bool:
        """Enter this daemon under its host name; False while another live one has it.

        ``place`` (machine and state database) says a row is this very daemon's from
        before a crash: the state database's lock proves that one is gone.
        """
        return bool(self._rows(
            """INSERT INTO hosts (name, instance, place, pid, state, heartbeat_at)
                VALUES (%(owner)s, %(instance)s, %(place)s, %(pid)s, 'running', now())
                ON CONFLICT (name) DO UPDATE SET instance = excluded.instance,
                    place = excluded.place, pid = excluded.pid, state = 'running',
                    detail = NULL, started_at = now(), heartbeat_at = now()
                WHERE hosts.state = 'stopped' OR hosts.place = excluded.place
                   OR hosts.heartbeat_at < now() - %(lease)s * interval '1 second'
                RETURNING name""", {"instance": instance, "pid": pid, "place": place}))

    def host_beat(self, instance: str, state: str, detail: str | None) -> None:
        self._rows("""UPDATE hosts SET heartbeat_at = now(), state = %(state)s,
                      detail = %(detail)s WHERE name = %(owner)s AND instance = %(instance)s""",
                   {"instance": instance, "state": state, "detail": detail})

    # -- what operators see ----------------------------------------------------

    def hosts(self) -> list[dict[str, Any]]:
        return self._rows(
            f"""SELECT h.name, h.state, h.detail, h.pid, h.started_at,
                       extract(epoch FROM now() - h.heartbeat_at)::float AS heartbeat_age,
                       (SELECT count(*) FROM claims c WHERE c.owner = h.name AND {OPEN})
                           AS files_owned
                FROM hosts h ORDER BY h.name""", {})

    def phase_counts(self) -> dict[str, int]:
        rows = self._rows("SELECT phase, count(*) AS n FROM claims GROUP BY phase", {})
        return {row["phase"]: row["n"] for row in rows}

    def expired_count(self) -> int:
        rows = self._rows(f"SELECT count(*) AS n FROM claims WHERE {OPEN} "
                          "AND lease_until < now()", {})
        return int(rows[0]["n"])

    def latest_for(self, share: str, relpath: bytes) -> Claim | None:
        """The newest claim of a path (any size/mtime), for ``explain``."""
        found = self._claims("""SELECT * FROM claims WHERE share = %(share)s
                                AND relpath = %(relpath)s ORDER BY updated_at DESC LIMIT 1""",
                             {"share": share, "relpath": relpath})
        return found[0] if found else None

    def by_dest(self, dest_paths: list[str]) -> Claim | None:
        """The newest claim whose file was moved to one of ``dest_paths``."""
        found = self._claims("""SELECT * FROM claims WHERE dest_path = ANY(%(dests)s)
                                ORDER BY updated_at DESC LIMIT 1""", {"dests": dest_paths})
        return found[0] if found else None

    def failed(self) -> list[Claim]:
        return self._claims("SELECT * FROM claims WHERE phase = 'failed' ORDER BY id", {})

    def reopen(self, claim_id: int) -> bool:
        """Forget a finished claim whose file is back in the inbox (dropped again, or an
        operator's retry), so it is claimed afresh. Not in the first lease after it
        finished: a host that saw the file just before its owner moved it must not
        take that for a new drop."""
        return bool(self._rows("""DELETE FROM claims WHERE id = %(id)s
                                  AND phase IN ('done', 'failed')
                                  AND updated_at < now() - %(lease)s * interval '1 second'
                                  RETURNING id""", {"id": claim_id}))
