"""The sidecar is written and read back by one module: what a rebuild reads is what was written."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from watcherd.ingest.sidecar import (
    from_json,
    read_sidecar,
    sidecar_document,
    to_json,
    write_sidecar,
)
from watcherd.state.states import State
from watcherd.state.store import Store


@pytest.fixture
def finished(tmp_path):
    store = Store(tmp_path / "state.db", clock=lambda: 1_700_000_000.0).open()
    record = store.add(path="/in/clip.mp4", folder="/in", index_id="idx", state=State.FINALIZING,
                       outcome="ready", task_id="t1", video_id="v1", size=11, sha256="a" * 64,
                       attempts=2, facts={"width": 640}, task_json={"status": "ready"},
                       dest_path="/in/done/clip.mp4")
    yield record
    store.close()


def test_the_sidecar_read_back_is_the_one_written(tmp_path, finished):
    document = sidecar_document(finished, None, finished=1_700_000_060.0)
    moved = tmp_path / "clip.mp4"
    moved.write_bytes(b"video bytes")
    path = write_sidecar(moved, document)
    assert path.name == "clip.mp4.json" and path.read_text(encoding="utf-8") == to_json(document)
    assert read_sidecar(path) == document
    assert document["timestamps"]["finished_at"] == "2023-11-14T22:14:20.000+00:00"
    assert (document["status"], document["media"], document["task"]) == \
        ("ready", {"width": 640}, {"status": "ready"})


def test_an_older_sidecar_reads_with_its_missing_keys_as_none_and_foreign_json_as_none():
    older = from_json(json.dumps({"status": "failed", "source_path": "/in/a.mp4"}))
    assert older is not None and older["status"] == "failed" and older["attempts"] == 0
    assert older["task_id"] is None and older["media"] is None
    assert from_json(json.dumps({"name": "not ours"})) is None
    assert from_json("[1, 2]") is None
    with pytest.raises(ValueError):
        from_json("{")
    with pytest.raises(ValueError):
        from_json(json.dumps({"source_path": "/in/a.mp4", "attempts": [1]}))


def test_the_multipart_path_names_its_asset_and_indexed_asset(tmp_path):
    store = Store(tmp_path / "state.db", clock=lambda: 1_700_000_000.0).open()
    try:
        record = store.add(path="/in/big.mp4", folder="/in", index_id="idx",
                           state=State.FINALIZING, outcome="ready", upload_method="multipart",
                           asset_id="as1", indexed_asset_id="ia1", task_id="ia1",
                           video_id="ia1", task_json={"_id": "ia1", "status": "ready"})
        document = sidecar_document(record, None, finished=1_700_000_060.0)
    finally:
        store.close()
    assert {k: document[k] for k in ("upload_method", "asset_id", "indexed_asset_id",
                                     "task_id", "video_id")} == {
        "upload_method": "multipart", "asset_id": "as1", "indexed_asset_id": "ia1",
        "task_id": "ia1", "video_id": "ia1"}
    assert from_json(to_json(document)) == document


def test_a_row_indexed_from_a_reused_asset_records_the_metadata_its_indexing_call_sent(
        tmp_path):
    store = Store(tmp_path / "state.db", clock=lambda: 1_700_000_000.0).open()
    try:
        record = store.add(path="/in2/same.mp4", folder="/in2", index_id="idx2",
                           state=State.FINALIZING, outcome="ready", upload_method="multipart",
                           sha256="b" * 64, asset_id="as1", indexed_asset_id="ia2",
                           task_id="ia2", video_id="ia2")
        assert record.attempts == 0  # nothing was uploaded for this row
        document = sidecar_document(record, None, finished=1_700_000_060.0)
    finally:
        store.close()
    assert document["user_metadata"] is not None
    assert document["user_metadata"]["sha256"] == "b" * 64
    assert document["user_metadata"]["watcherd_file_id"] == record.id


OLDER_KEYS = {"status", "reason", "error_code", "rule", "task_id", "video_id", "index_id",
              "model", "source_path", "original_name", "moved_to", "size", "sha256",
              "attempts", "duplicate_of", "media", "task", "timestamps", "watcherd_version",
              "after", "mtime_ns", "user_metadata", "user_metadata_sources", "metadata_file"}


def test_the_tasks_path_only_gains_the_new_keys(finished):
    document = sidecar_document(finished, None, finished=1_700_000_060.0)
    assert set(document) == OLDER_KEYS | {"upload_method", "asset_id", "indexed_asset_id"}
    assert (document["upload_method"], document["asset_id"], document["indexed_asset_id"]) == \
        ("tasks", None, None)
    assert (document["task_id"], document["video_id"]) == ("t1", "v1")
    refused = sidecar_document(replace(finished, task_id=None, outcome="failed"), None, 0.0)
    assert refused["upload_method"] is None  # never reached the API


def test_a_rebuild_reads_the_upload_path_and_the_asset_ids_back(tmp_path):
    from watcherd.config import parse_config
    from watcherd.service.rebuild import rebuild

    inbox = tmp_path / "inbox"
    (inbox / "done").mkdir(parents=True)
    config = parse_config({"folders": [{"path": str(inbox), "index_id": "idx"}]},
                          base_dir=tmp_path, env={})
    store = Store(tmp_path / "state.db").open()
    try:
        record = store.add(path=str(inbox / "big.mp4"), folder=str(inbox), index_id="idx",
                           state=State.FINALIZING, outcome="ready", upload_method="multipart",
                           asset_id="as1", indexed_asset_id="ia1", task_id="ia1",
                           video_id="ia1", dest_path=str(inbox / "done" / "big.mp4"))
        moved = inbox / "done" / "big.mp4"
        moved.write_bytes(b"video")
        write_sidecar(moved, sidecar_document(record, None, finished=1_700_000_060.0))
    finally:
        store.close()
    fresh = Store(tmp_path / "rebuilt.db").open()
    try:
        assert rebuild(config, fresh) == (1, 0)
        (row,) = fresh.all()
        assert (row.state, row.upload_method, row.asset_id, row.indexed_asset_id,
                row.task_id, row.video_id) == (State.DONE, "multipart", "as1", "ia1", "ia1",
                                               "ia1")
    finally:
        fresh.close()
