"""Finalize after a crash at any point of the move, and under storage faults."""

from __future__ import annotations

import errno
import json
import os
import queue
from pathlib import Path

import pytest

import watcherd.ingest.finalizer as finalizer_module
from tests.conftest import FakeClock
from watcherd.config import parse_config
from watcherd.ingest.finalizer import Finalizer
from watcherd.state.states import State
from watcherd.state.store import Store


@pytest.fixture
def rig(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = parse_config({"folders": [{"path": str(inbox), "index_id": "idx"}]},
                          base_dir=tmp_path, env={})
    store = Store(tmp_path / "state.db").open()
    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    clock = FakeClock()
    finalizer = Finalizer(config=config, store=store, work=work, clock=clock)

    def ready(name: str, **fields) -> tuple[Path, int]:
        source = inbox / name
        source.write_bytes(b"video bytes")
        record = store.add(path=str(source), folder=str(inbox), index_id="idx",
                           state=State.FINALIZING, outcome="ready", task_id="t1",
                           video_id="v1", **fields)
        return source, record.id

    yield finalizer, store, inbox, ready, work, clock
    store.close()


def test_a_move_that_happened_before_the_crash_is_recognised(rig):
    finalizer, store, inbox, ready, _, _ = rig
    source, file_id = ready("a.mp4", dest_path=str(inbox / "done" / "a.mp4"))
    (inbox / "done").mkdir()
    os.rename(source, inbox / "done" / "a.mp4")  # moved; the row never heard of it
    finalizer.finalize(file_id)
    record = store.get(file_id)
    assert record.state == State.DONE and record.dest_path == str(inbox / "done" / "a.mp4")
    assert json.loads((inbox / "done" / "a.mp4.json").read_text())["task_id"] == "t1"


def test_a_move_cut_between_link_and_unlink_is_completed(rig):
    finalizer, store, inbox, ready, _, _ = rig
    target = inbox / "done" / "b.mp4"
    source, file_id = ready("b.mp4", dest_path=str(target))
    target.parent.mkdir()
    os.link(source, target)
    finalizer.finalize(file_id)
    assert not source.exists() and target.read_bytes() == b"video bytes"
    assert store.get(file_id).state == State.DONE


def test_a_file_gone_from_a_reachable_folder_is_vanished(rig):
    finalizer, store, inbox, ready, _, _ = rig
    (inbox / "other.mp4").write_bytes(b"x")
    source, file_id = ready("c.mp4")
    source.unlink()
    finalizer.finalize(file_id)
    assert store.get(file_id).state == State.VANISHED


def test_an_unreachable_folder_is_retried_not_vanished(rig):
    finalizer, store, inbox, ready, work, clock = rig
    source, file_id = ready("d.mp4")
    aside = inbox.with_name("unmounted")
    inbox.rename(aside)
    work.put(file_id)
    finalizer.step()
    assert store.get(file_id).state == State.FINALIZING
    aside.rename(inbox)
    clock.now += 5.1
    finalizer.step()  # the retry is due: moved now
    assert store.get(file_id).state == State.DONE and not source.exists()


def test_disk_full_while_writing_the_sidecar_loses_nothing_and_backs_off(rig, monkeypatch,
                                                                        caplog):
    finalizer, store, inbox, ready, work, clock = rig
    source, file_id = ready("e.mp4")
    real_write = finalizer_module.write_sidecar
    calls = []

    def full_disk_twice(moved, document):
        calls.append(moved)
        if len(calls) <= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(moved, document)

    monkeypatch.setattr(finalizer_module, "write_sidecar", full_disk_twice)
    work.put(file_id)
    finalizer.step()
    moved = inbox / "done" / "e.mp4"
    assert moved.exists() and not source.exists()  # the video is safe in done/
    assert store.get(file_id).state == State.FINALIZING
    clock.now += 5.1
    finalizer.step()  # second failure: the next wait doubles to 10 s
    assert "retrying in 10s" in caplog.text
    clock.now += 9
    finalizer.step()
    assert len(calls) == 2
    clock.now += 1.1
    finalizer.step()
    assert store.get(file_id).state == State.DONE
    assert json.loads(moved.with_name("e.mp4.json").read_text())["status"] == "ready"
