"""The sidecar is written and read back by one module: what a rebuild reads is what was written."""

from __future__ import annotations

import json

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
