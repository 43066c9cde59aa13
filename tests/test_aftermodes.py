"""``after: leave`` and ``delete`` in the finalizer and retention, and the metadata file's move,
checked without a daemon (crash points the end-to-end tests cannot hit on purpose)."""

from __future__ import annotations

import json
import queue
from pathlib import Path

from tests.conftest import FakeClock
from watcherd.config import parse_config
from watcherd.ingest.finalizer import Finalizer
from watcherd.state.states import State
from watcherd.state.store import Store

DAY = 86400.0


def rig(tmp_path: Path, **keys):
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    config = parse_config({"folders": [{"path": str(inbox), "index_id": "idx", **keys}]},
                          base_dir=tmp_path, env={})
    store = Store(tmp_path / "state.db").open()
    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    return Finalizer(config=config, store=store, work=work, clock=FakeClock()), store, inbox


def finishing(store: Store, inbox: Path, name: str, outcome: str = "ready") -> tuple[Path, int]:
    source = inbox / name
    source.write_bytes(b"video bytes")
    Path(f"{source}.meta.json").write_text('{"reel": "7"}')
    record = store.add(path=str(source), folder=str(inbox), index_id="idx",
                       state=State.FINALIZING, outcome=outcome, task_id="t1", attempts=1,
                       size=11, mtime_ns=5)
    return source, record.id


def test_delete_cut_after_the_record_and_before_the_removal_is_completed(tmp_path):
    finalizer, store, inbox = rig(tmp_path, after="delete")
    source, file_id = finishing(store, inbox, "a.mp4")
    source.unlink()  # a crash after the sidecar and the video's removal, before the row
    finalizer.finalize(file_id)
    assert store.get(file_id).state == State.DONE
    assert not Path(f"{source}.meta.json").exists()
    record = json.loads((inbox / "done" / "a.mp4.json").read_text())
    assert record["after"] == "delete" and record["moved_to"] is None
    store.close()


def test_delete_moves_a_failure_and_its_metadata_file_to_failed(tmp_path):
    finalizer, store, inbox = rig(tmp_path, after="delete")
    source, file_id = finishing(store, inbox, "bad.mp4", outcome="failed")
    finalizer.finalize(file_id)
    moved = inbox / "failed" / "bad.mp4"
    assert moved.exists() and Path(f"{moved}.meta.json").exists() and not source.exists()
    store.close()


def test_a_metadata_file_takes_the_name_of_its_renamed_video(tmp_path):
    finalizer, store, inbox = rig(tmp_path)
    (inbox / "done").mkdir()
    (inbox / "done" / "c.mp4.meta.json").write_text("{}")  # taken: the video must dodge it
    _, file_id = finishing(store, inbox, "c.mp4")
    finalizer.finalize(file_id)
    record = store.get(file_id)
    assert record.dest_path == str(inbox / "done" / "c-1.mp4")
    assert json.loads(Path(f"{record.dest_path}.meta.json").read_text()) == {"reel": "7"}
    store.close()


def test_leave_writes_only_the_record_and_retention_keeps_a_failed_version(tmp_path):
    clock = FakeClock()
    finalizer, store, inbox = rig(tmp_path, after="leave", records_dir="records")
    store.clock = clock
    source, file_id = finishing(store, inbox, "d.mp4", outcome="failed")
    finalizer.finalize(file_id)
    assert source.exists() and Path(f"{source}.meta.json").exists()
    assert store.get(file_id).dest_path == str(source)
    assert json.loads((tmp_path / "records" / "d.mp4.json").read_text())["status"] == "failed"
    clock.now += 100 * DAY
    while store.prune(clock.now - 90 * DAY, batch=10):
        pass
    assert store.last_finished(str(source)).id == file_id  # still remembered
    store.close()


def test_retry_brings_the_metadata_file_back_and_skips_a_file_left_in_place(tmp_path, capsys):
    import yaml

    import watcherd.cli.main as cli

    finalizer, store, inbox = rig(tmp_path)
    source, file_id = finishing(store, inbox, "e.mp4", outcome="failed")
    finalizer.finalize(file_id)
    left = tmp_path / "left"
    left.mkdir()
    kept = store.add(path=str(left / "f.mp4"), folder=str(left), index_id="idx",
                     state=State.FAILED, dest_path=str(left / "f.mp4"), reason="bad")
    (left / "f.mp4").write_bytes(b"x")
    store.close()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"state_db": str(tmp_path / "state.db"), "folders": [
        {"path": str(inbox), "index_id": "idx"},
        {"path": str(left), "index_id": "idx", "after": "leave", "records_dir": "records"}]}))
    assert cli.main(["retry", "--failed", "-c", str(config), "--json"]) == 1  # one skipped
    results = {r["file_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert results[file_id]["moved"] and source.exists()
    assert json.loads(Path(f"{source}.meta.json").read_text()) == {"reel": "7"}
    assert not (inbox / "failed" / "e.mp4.meta.json").exists()
    assert "left in place (after: leave)" in results[kept.id]["skipped"]
    assert (left / "f.mp4").exists()

