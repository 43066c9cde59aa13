"""``watcherd explain PATH``: why this file is where it is, and everything that happened to it.

Works for a file the daemon tracks (its inbox path, or where it was moved
to), and for one it has never seen: then it says which rule would apply, as
the daemon would decide it, with the daemon's own functions (naming rules
and symlinks, settling, readability, the media checks). Reads the database
read-only and never calls the API. Paths are shown escaped (``names.display``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

import watcherd.state.queries as queries
from watcherd.cli.access import operator_config, readonly_store
from watcherd.cli.render import (
    ago,
    duration,
    emit,
    iso,
    remote_ids,
    session_json,
    session_text,
    shown,
    styled_state,
    table,
)
from watcherd.config import Config, FolderConfig
from watcherd.errors import MediaRejected
from watcherd.exitcodes import EXIT_OK
from watcherd.ingest.dedupe import sha256_file
from watcherd.ingest.jobs import on_multipart
from watcherd.ingest.usermetadata import user_metadata_for, user_metadata_sources
from watcherd.intake.filters import skip_reason
from watcherd.intake.metadata import gather
from watcherd.intake.settle import READ_FIX, seconds_unchanged, unreadable_reason
from watcherd.names import display
from watcherd.service.folderprofiles import cached_profiles
from watcherd.service.runtime import daemon_state
from watcherd.state.schema import FileRecord
from watcherd.state.states import CLAIMED_ELSEWHERE, UNREADABLE, State
from watcherd.state.store import Store


def cmd_explain(args: argparse.Namespace) -> int:
    config = operator_config(args)
    with readonly_store(config) as store:
        result = explain(cached_profiles(config, store), store, args.path)
    if config.coordination is not None:
        _with_claim(config, result)
    emit(result, args.json, render_explain)
    return EXIT_OK


def explain(config: Config, store: Store | None, path: str, now: float | None = None
            ) -> dict[str, Any]:
    now = time.time() if now is None else now
    target = str(Path(path).expanduser().absolute())
    records = []
    if store is not None:
        records = queries.records_for_path(store, target) or queries.records_at(store, target)
    folder = config.folder_for(target) if not records else config.folder_for(records[-1].path)
    result: dict[str, Any] = {"path": target, "folder": str(folder.path) if folder else None}
    if store is not None and records:
        latest = records[-1]
        result.update(_tracked(config, store, latest, now))
        result["metadata"] = tracked_metadata(folder, latest)
        result["record"] = {k: getattr(latest, k) for k in (
            "id", "path", "state", "attempts", "task_id", "video_id", "remote_status", "sha256",
            "dest_path", "reason", "rule", "error_code", "duplicate_of")}
        result["record"].update(remote_ids(latest))
        result["history"] = [{"file_id": r.id, "at": iso(h["at"]), "from": h["from_state"],
                              "to": h["to_state"], "detail": h["detail"]}
                             for r in records for h in store.history(r.id)]
    else:
        result.update(_untracked(config, store, target, now))
        result.setdefault("metadata", None)
        result["record"], result["history"] = None, []
    return shown(result)


def _with_claim(config: Config, result: dict[str, Any]) -> None:
    """Several hosts: which host owns the file (its claim in PostgreSQL)."""
    from watcherd.cluster.view import claim_at

    claim = result["claim"] = claim_at(config, result["path"])
    if claim is None:
        result["summary"] += "; no host has claimed it"
    elif "error" in claim:
        result["summary"] += f"; its claim cannot be read ({claim['error']})"
    else:
        host = claim["owner"]
        this = config.coordination.host_name if config.coordination else None
        result["summary"] += (f"; claimed by host {host}" + (" (this one)" if host == this
                                                              else "")
                              + f", {claim['phase']}")


def _tracked(config: Config, store: Store, record: FileRecord, now: float) -> dict[str, Any]:
    state = record.state
    if state == State.SETTLING and record.error_code == UNREADABLE:
        return _say("unreadable", f"{record.reason}; it stays in the inbox and is taken by "
                    f"itself once readable. Fix: {READ_FIX}", reason=record.reason)
    if state == State.SETTLING and record.error_code == CLAIMED_ELSEWHERE:
        return _say("elsewhere", f"another host handles it: {record.reason}",
                    reason=record.reason)
    if state == State.SETTLING:
        quiet = seconds_unchanged(record.path, now)
        wait = config.settle_seconds
        return _say("settling", f"waiting for the file to stop changing: unchanged for "
                    f"{duration(quiet or 0)} of {wait:g}s", quiet_seconds=quiet,
                    settle_seconds=wait)
    if state == State.QUEUED:
        position = queries.queue_position(store, record)
        session = session_json(queries.upload_session(store, record))
        resumes = f"; its upload resumes at {session_text(session)}" if session else ""
        return _say("queued", f"settled and waiting to upload: number {position} in the queue"
                    f"{resumes}{_last_detail(store, record)}", position=position,
                    session=session)
    if state == State.VALIDATING:
        return _say("validating", "being checked against Twelve Labs' requirements now")
    if state == State.UPLOADING:
        session = queries.upload_session(store, record, _live(store, record).get("chunks"))
        summary = _upload_progress(store, record)
        return _say("uploading", ", ".join(p for p in (summary, session_text(
            session_json(session))) if p), session=session_json(session))
    if state == State.INDEXING and on_multipart(record):
        return _say("indexing", _indexing_multipart(record, now), asset_id=record.asset_id,
                    indexed_asset_id=record.indexed_asset_id,
                    remote_status=record.remote_status)
    if state == State.INDEXING:
        since = ago(record.uploaded_at, now)
        return _say("indexing", f"uploaded {since}; Twelve Labs task {record.task_id} is "
                    f"{record.remote_status or 'not polled yet'}", task_id=record.task_id,
                    remote_status=record.remote_status)
    if state == State.FINALIZING:
        return _say("finalizing", f"{record.outcome}; being moved to {record.dest_path}")
    if record.duplicate_of is not None:
        original = store.get(record.duplicate_of)
        return _say("duplicate", f"same content as {original.path}: shares its task "
                    f"{record.task_id} (no second upload); {state}, now at {record.dest_path}",
                    duplicate_of=original.path)
    if state == State.DONE:
        return _say("done", f"indexed {ago(record.finished_at, now)} as video "
                    f"{record.video_id}; {_where(record)}", video_id=record.video_id)
    if state == State.FAILED:
        rule = f" by rule '{record.rule}'" if record.rule else ""
        return _say("failed", f"rejected{rule}: {record.reason}; {_where(record)}",
                    rule=record.rule, reason=record.reason)
    return _say("vanished", f"disappeared from the folder before upload ({record.reason})")


def _indexing_multipart(record: FileRecord, now: float) -> str:
    uploaded = f"uploaded {ago(record.uploaded_at, now)} as asset {record.asset_id} (multipart)"
    if record.indexed_asset_id is None:
        return (f"{uploaded}; the asset is {record.remote_status or 'not polled yet'}, "
                "indexed once it is ready")
    return (f"{uploaded}; indexed asset {record.indexed_asset_id} is "
            f"{record.remote_status or 'not polled yet'}")


def _untracked(config: Config, store: Store | None, path: str, now: float
               ) -> dict[str, Any]:
    folder = config.folder_for(path)
    if folder is None:
        return _say("outside", "not in any configured folder: it will never be picked up")
    reason = skip_reason(path, folder)
    if reason is not None:
        return _say("ignored", f"never picked up: {reason}", rule=reason)
    quiet = seconds_unchanged(path, now)
    if quiet is None:
        return _say("missing", "no such file, and the daemon has no record of it")
    if quiet < config.settle_seconds:
        return _say("settling", f"still changing: unchanged for {duration(quiet)} of "
                    f"{config.settle_seconds:g}s", quiet_seconds=quiet)
    problem = unreadable_reason(path)
    if problem is not None:
        return _say("unreadable", f"{problem}: it will wait in the inbox until it is "
                    f"readable. Fix: {READ_FIX}", reason=problem)
    from watcherd.media.validate import check_for_folder  # PyAV: only when a file must be read

    try:
        gathered = gather(path, folder)
    except MediaRejected as exc:
        return _say("would_reject", f"would be rejected by rule '{exc.rule}': {exc.reason}",
                    rule=exc.rule)
    report = check_for_folder(path, folder)
    failure = report.first_failure
    if failure is not None:
        return _say("would_reject", f"would be rejected by rule '{failure.rule}': "
                    f"{failure.reason} (measured {failure.measured})", rule=failure.rule)
    found = {"metadata": {"user_metadata": gathered.values, "sources": gathered.origins,
                          "notes": list(gathered.notes)}}
    holder = store.holder_for_new(sha256_file(path), folder.index_id) \
        if folder.dedupe and store is not None else None
    if holder is not None:
        return {**found, **_say(
            "would_join", f"not seen by the daemon yet; same content as {holder.path} "
            f"({holder.state}): it will share that task, no second upload",
            duplicate_of=holder.path)}
    return {**found, **_say(
        "would_upload", "not seen by the daemon yet; it passes every rule and will be "
        f"uploaded to index {folder.index_id} after the next event or scan (every "
        f"{config.rescan_interval_seconds:g}s), with the user_metadata below besides "
        "watcherd's own keys")}


def tracked_metadata(folder: FolderConfig | None, record: FileRecord) -> dict[str, Any] | None:
    """The user_metadata sent (or to be sent) for ``record``, each key with its source."""
    if record.metadata_json is None:
        return None  # not gathered yet (it is, just before validation)
    notes = []
    template = folder.metadata.path_metadata if folder else None
    if folder is not None and template is not None:
        parts = tuple(display(p) for p in Path(record.path).relative_to(folder.path).parts)
        if template.match(parts) is None:
            notes.append(f"no path keys: {template.why_not(parts)}")
    return {"user_metadata": user_metadata_for(record),
            "sources": user_metadata_sources(record), "notes": notes}


def _where(record: FileRecord) -> str:
    if record.dest_path == record.path:
        return "left in place (after: leave)"
    if record.dest_path is None:
        return "deleted once ready (after: delete)"
    return f"moved to {record.dest_path}"


def _say(status: str, summary: str, **details: Any) -> dict[str, Any]:
    return {"status": status, "summary": summary, "details": details}


def _live(store: Store, record: FileRecord) -> dict[str, Any]:
    """The running daemon's progress entry for this upload, if any."""
    daemon = daemon_state(store)
    for upload in daemon["uploads"] if daemon else []:
        if upload["file_id"] == record.id and upload["total"]:
            return dict(upload)
    return {}


def _upload_progress(store: Store, record: FileRecord) -> str:
    upload = _live(store, record)
    if upload:
        percent = int(100 * upload["sent"] / upload["total"])
        return f"uploading now (attempt {record.attempts}): {percent}% sent"
    return f"uploading (attempt {record.attempts}); progress unknown (daemon not running?)"


def _last_detail(store: Store, record: FileRecord) -> str:
    rows = store.history(record.id)
    return f"; last: {rows[-1]['detail']}" if rows and rows[-1]["detail"] else ""


def render_explain(result: dict[str, Any], console: Console) -> None:
    console.print(Text(result["path"], style="bold"))
    console.print(Text.assemble("  ", styled_state(result["status"]), ": ", result["summary"]))
    if result["folder"]:
        console.print(Text(f"  folder: {result['folder']}"))
    metadata = result.get("metadata")
    if metadata:
        for key, value in metadata["user_metadata"].items():
            console.print(Text(f"  user_metadata.{key} = {value!r} "
                               f"(from {metadata['sources'].get(key, '?')})"))
        for note in metadata["notes"]:
            console.print(Text(f"  metadata: {note}"))
    if result["history"]:
        console.print()
        console.print(table(("when", "from", "to", "detail"),
                            ((h["at"], h["from"] or "", h["to"], h["detail"] or "")
                             for h in result["history"]), title="History"))
