"""``watcherd status``: what the daemon is doing, from the database.

Reads the database read-only (safe while the daemon runs) with one indexed
query per section, plus the runtime row the daemon publishes every 2 s
(observer health, upload progress, pauses). The JSON shape is documented in
the README and kept stable; the human view is the same data in tables.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import watcherd.state.queries as queries
from watcherd.cli.access import configured_folder, operator_config, readonly_store
from watcherd.cli.render import (
    ago,
    duration,
    emit,
    iso,
    job_shown,
    remote_ids,
    session_json,
    session_text,
    shown,
    styled_state,
    table,
)
from watcherd.config import Config
from watcherd.exitcodes import EXIT_FAIL, EXIT_OK
from watcherd.names import display
from watcherd.service.runtime import daemon_state
from watcherd.state.outbox import DEAD, PENDING, Outbox
from watcherd.state.runtime import FolderWatch, LiveDaemon, UploadProgress
from watcherd.state.schema import FileRecord
from watcherd.state.states import ACTIVE_STATES, FINAL_STATES
from watcherd.state.store import Store
from watcherd.units import human_bytes

if TYPE_CHECKING:  # --json draws nothing: rich is imported by the human view alone
    from rich.console import Console
    from rich.text import Text

RECENT = 5
COUNTED_STATES = (*ACTIVE_STATES, *FINAL_STATES)


def cmd_status(args: argparse.Namespace) -> int:
    config = operator_config(args)
    with readonly_store(config) as store:
        if store is None:
            print(f"watcherd: no state database at {config.state_db} (has the daemon run "
                  "yet?)", file=sys.stderr)
            return EXIT_FAIL
        status = build_status(config, store, configured_folder(config, args.folder))
    if config.coordination is not None:  # several hosts: every host, from PostgreSQL
        from watcherd.cluster.view import cluster_status

        status["cluster"] = cluster_status(config)
    emit(status, args.json, render_status)
    return EXIT_OK


def build_status(config: Config, store: Store, folder: Path | None = None,
                 now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    daemon = daemon_state(store, now)
    counts = queries.counts_by_folder(store)
    watched = {f["path"]: f for f in daemon["folders"]} if daemon else {}
    uploads = {u["file_id"]: u for u in daemon["uploads"]} if daemon else {}
    gone = daemon["paused_indexes"] if daemon else {}
    wanted = [f for f in config.folders if folder is None or f.path == folder]
    only = str(folder) if folder else None
    active = [r for r in queries.active(store) if only in (None, r.folder)]
    return {
        "daemon": _daemon(daemon),
        "uploads": daemon["gate"] if daemon else None,
        "upload_paths": daemon.get("upload_paths") if daemon else None,
        "folders": [{
            "path": str(f.path), "index_id": f.index_id, "upload_method": f.upload_method,
            "counts": {s: counts.get(str(f.path), {}).get(s, 0) for s in COUNTED_STATES},
            "watch": _watch(watched.get(str(f.path))),
            "unreadable": [{"path": display(r.path), "reason": r.reason}
                           for r in queries.unreadable(store, str(f.path))],
            "paused": gone.get(f.index_id),
            "elsewhere": queries.claimed_elsewhere(store, str(f.path)),
        } for f in wanted],
        "active": [_active(store, r, uploads.get(r.id), now) for r in active],
        "recent": {state: [_finished(r) for r in queries.recent(store, state, RECENT, only)]
                   for state in ("done", "failed")},
        "webhooks": _webhooks(store),
    }


def _webhooks(store: Store) -> dict[str, int]:
    counts = Outbox(store).counts()
    return {"pending": counts.get(PENDING, 0), "dead": counts.get(DEAD, 0)}


def _daemon(daemon: LiveDaemon | None) -> dict[str, Any]:
    if daemon is None:
        return {"running": False}
    return {"running": True, "pid": daemon["pid"], "version": daemon["version"],
            "started_at": iso(daemon["started_at"]), "seen_at": iso(daemon["seen_at"]),
            "problems": daemon["problems"]}


def _watch(watch: FolderWatch | None) -> dict[str, Any] | None:
    if watch is None:
        return None
    return {"mode": watch["mode"], "healthy": watch["healthy"], "problem": watch["problem"],
            "last_scan": iso(watch["last_scan"])}


def _active(store: Store, record: FileRecord, upload: UploadProgress | None, now: float
            ) -> dict[str, Any]:
    since = record.uploaded_at if record.state == "indexing" else record.updated_at
    entry: dict[str, Any] = {
        "path": display(record.path), "state": record.state, "task_id": record.task_id,
        "remote_status": record.remote_status, "age_seconds": round(now - (since or now)),
        "percent": None, "rate_bytes_per_second": None, "size": record.size,
        "session": session_json(queries.upload_session(
            store, record, upload.get("chunks") if upload else None)),
        **remote_ids(record)}
    if upload and upload["total"]:
        entry["percent"] = int(100 * upload["sent"] / upload["total"])
        entry["rate_bytes_per_second"] = upload["rate"]
    return entry


def _finished(record: FileRecord) -> dict[str, Any]:
    return {"path": display(record.path), "dest_path": shown(record.dest_path),
            "video_id": record.video_id,
            "task_id": record.task_id, "reason": record.reason, "error_code": record.error_code,
            "finished_at": iso(record.finished_at or record.updated_at), **remote_ids(record)}


def render_status(status: dict[str, Any], console: Console) -> None:
    console.print(_headline(status))
    if "cluster" in status:
        _render_cluster(status["cluster"], console)
    webhooks = _webhooks_line(status.get("webhooks") or {})
    if webhooks is not None:
        console.print(webhooks)
    rows: list[tuple[Any, ...]] = []
    for f in status["folders"]:
        c = f["counts"]
        watch = f["watch"]
        health = "?" if watch is None else \
            f"{watch['mode']} {'ok' if watch['healthy'] else 'DOWN: ' + str(watch['problem'])}"
        last = "?" if watch is None else _ago_iso(watch["last_scan"])
        # Files another host claimed sit in this host's settler: not waiting for us.
        waiting = c["settling"] + c["queued"] + c["validating"] - f["elsewhere"]
        rows.append((f["path"], health, last, waiting, c["uploading"], c["indexing"],
                     c["done"], c["failed"], c["vanished"], f["elsewhere"]))
    headers: tuple[str, ...] = ("folder", "watch", "last scan", "waiting", "uploading",
                                "indexing", "done", "failed", "vanished", "other hosts")
    if not any(f["elsewhere"] for f in status["folders"]):  # one host: no such column
        headers, rows = headers[:-1], [row[:-1] for row in rows]
    console.print(table(headers, rows))
    unreadable = [u for f in status["folders"] for u in f["unreadable"]]
    if unreadable:
        console.print()
        console.print(table(("file", "why"), ((u["path"], u["reason"]) for u in unreadable),
                            title="Unreadable (waiting in the inbox: let the service user "
                                  "read them)"))
    if status["active"]:
        console.print()
        console.print(table(("state", "file", "progress", "task", "remote", "for"),
                            (_active_row(a) for a in status["active"]), title="Active"))
    for state in ("done", "failed"):
        recent = status["recent"][state]
        if recent:
            console.print()
            console.print(table(("when", "file", "video" if state == "done" else "reason"),
                                ((_ago_iso(r["finished_at"]), Path(r["path"]).name,
                                  r["video_id"] if state == "done" else r["reason"])
                                 for r in recent), title=f"Recently {state}"))


def _render_cluster(cluster: dict[str, Any], console: Console) -> None:
    from rich.text import Text

    console.print()
    if "error" in cluster:
        console.print(Text.assemble(("cluster unknown", "red"), f": {cluster['error']}"))
        return
    console.print(table(("host", "state", "heartbeat", "files owned", "note"), (
        (h["name"] + (" (this one)" if h["name"] == cluster["this_host"] else ""),
         h["state"] if h["alive"] or h["state"] == "stopped" else "silent",
         f"{duration(h['heartbeat_age_seconds'])} ago", h["files_owned"], h["detail"] or "")
        for h in cluster["hosts"]), title="Hosts"))
    counts = ", ".join(f"{n} {phase}" for phase, n in sorted(cluster["claims"].items()))
    expired = cluster["expired_leases"]
    console.print(f"cluster claims: {counts or 'none'}"
                  + (f"; {expired} lease(s) ran out, being taken over" if expired else ""))


def _headline(status: dict[str, Any]) -> Text:
    from rich.text import Text

    daemon = status["daemon"]
    if not daemon["running"]:
        return Text.assemble(("daemon not running", "yellow"),
                             " (no fresh heartbeat in the database)")
    line = Text.assemble(("daemon running", "green"), f" (pid {daemon['pid']}, watcherd "
                         f"{daemon['version']}, started {_ago_iso(daemon['started_at'])})")
    uploads = status["uploads"] or {}
    if uploads.get("state") == "paused":
        line.append_text(Text.assemble("\n", ("uploads paused", "red"),
                                       f": {uploads['reason']}\n  fix: {uploads['fix']}"))
    elif uploads.get("state") == "backing_off":
        line.append_text(Text.assemble("\n", ("uploads backing off", "yellow"),
                                       f" until {iso(uploads['until'])} after "
                                       f"{uploads['reason']}"))
    else:
        line.append("\nuploads running")
    for folder in status["folders"]:
        if folder.get("paused"):
            line.append_text(Text.assemble(
                "\n", ("uploads paused", "red"), f" for {folder['path']}: index "
                f"{folder['index_id']} is gone ({folder['paused']})\n  fix: recreate it or "
                "point the folder's index_id at an existing index, then reload"))
    line.append_text(_upload_paths(status))
    for problem in daemon.get("problems", []):
        line.append_text(Text.assemble("\n", ("unhealthy", "red"), f": {problem}"))
    return line


def _upload_paths(status: dict[str, Any]) -> Text:
    """What the account said about the upload paths, and which folders wait for it."""
    from rich.text import Text

    paths = status.get("upload_paths") or {}
    text = Text()
    methods = {f["path"]: f.get("upload_method") for f in status["folders"]}
    if paths.get("multipart_refused"):
        fallback = ("folders on auto upload through POST /tasks (files up to 2.0 GiB; larger "
                    "ones wait)" if paths.get("fallback") else "no fallback left")
        text.append_text(Text.assemble("\n", ("multipart refused", "yellow"),
                                       f" for this account ({paths['multipart_refused']}): "
                                       f"{fallback}"))
    if paths.get("tasks_removed"):
        text.append_text(Text.assemble("\n", ("POST /tasks gone", "yellow"),
                                       f" ({paths['tasks_removed']})"))
    for path, method in methods.items():
        if (method == "tasks" and paths.get("tasks_removed")) or \
                (method == "multipart" and paths.get("multipart_refused")):
            fix = ("set its upload_method to auto and reload" if method == "tasks" else
                   "ask Twelve Labs to enable multipart uploads, or set its upload_method to "
                   "auto and reload")
            text.append_text(Text.assemble("\n", ("uploads paused", "red"), f" for {path}: "
                                           f"upload_method {method}\n  fix: {fix}"))
    if paths.get("waiting"):
        text.append(f"\n{paths['waiting']} file(s) wait in the inbox for an upload path")
    return text


def _webhooks_line(webhooks: dict[str, int]) -> Text | None:
    from rich.text import Text

    if webhooks.get("dead"):
        return Text.assemble(
            ("webhooks dead-lettered", "red"), f": {webhooks['dead']} event(s) no receiver "
            f"took within webhook_retry_hours ({webhooks.get('pending', 0)} pending)\n"
            "  see: watcherd webhooks; send one again: watcherd webhooks --replay EVENT_ID")
    if webhooks.get("pending"):
        return Text(f"webhooks: {webhooks['pending']} event(s) waiting to be delivered")
    return None


def _active_row(entry: dict[str, Any]) -> tuple:
    progress = ""
    if entry["percent"] is not None:
        rate = entry["rate_bytes_per_second"]
        progress = f"{entry['percent']}%" + (f" {human_bytes(rate, short=True)}/s" if rate else "")
    progress = " ".join(p for p in (progress, session_text(entry["session"])) if p)
    return (styled_state(entry["state"]), Path(entry["path"]).name, progress,
            job_shown(entry), entry["remote_status"] or "", duration(entry["age_seconds"]))


def _ago_iso(value: str | None) -> str:
    if value is None:
        return "never"
    return ago(datetime.fromisoformat(value).timestamp())

