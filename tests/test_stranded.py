"""No file is ever stranded between two states (issue 12 item 5).

An exception nobody planned for, injected into each step of a file's way in
the real daemon (tests/sabotaged_daemon.py), puts the file back with the
error in its history; once the fault clears the file reaches done/. Five in
a row send it to failed/ as ``internal_error``. The supervisor's sweep puts
back a row whose thread died holding it. Unit tests pin the rules.
"""

from __future__ import annotations

import queue
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.conftest import DaemonRunner, wait_for
from watcherd.config import parse_config
from watcherd.ingest.finalizer import Finalizer
from watcherd.ingest.putback import INTERNAL_ERROR_LIMIT, InternalErrors, Sweep, put_back
from watcherd.state.states import State
from watcherd.state.store import Store

HERE = Path(__file__).parent


def sabotaged(daemon: DaemonRunner, spec: str) -> DaemonRunner:
    daemon.command = [sys.executable, str(HERE / "sabotaged_daemon.py"), spec]
    return daemon


def history_of(daemon: DaemonRunner, name: str) -> list[str]:
    db = sqlite3.connect(f"file:{daemon.settings['state_db']}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT h.from_state, h.to_state, h.detail FROM history h "
                          "JOIN files f ON f.id = h.file_id WHERE f.path LIKE ? ORDER BY h.id",
                          (f"%/{name}",)).fetchall()
    finally:
        db.close()
    return [f"{a} -> {b}: {detail}" for a, b, detail in rows]


@pytest.mark.parametrize("step", ["validate", "hash", "upload", "poll", "finalize"])
def test_an_unplanned_error_in_any_step_puts_the_file_back_until_the_fault_clears(
        daemon, fake_api, valid_clip, step):
    sabotaged(daemon, f"flaky:{step}:2").start()
    shutil.copy(valid_clip, daemon.inbox / f"{step}.mp4")
    side = daemon.sidecar(daemon.wait_done(f"{step}.mp4", timeout=60))
    assert side["status"] == "ready"
    assert len(fake_api.tasks) == 1  # put back, never uploaded twice
    errors = [line for line in history_of(daemon, f"{step}.mp4") if "internal error" in line]
    assert len(errors) == 2, history_of(daemon, f"{step}.mp4")
    assert "IndexError: " + f"{step} sabotaged by the test" in errors[0]
    assert "Traceback" in daemon.log()  # the traceback is in the log...
    assert "Traceback" not in str(side)  # ...and not in the sidecar


def test_five_internal_errors_in_a_row_send_the_file_to_failed(daemon, fake_api, valid_clip):
    sabotaged(daemon, f"flaky:validate:{INTERNAL_ERROR_LIMIT}").start()
    shutil.copy(valid_clip, daemon.inbox / "cursed.mp4")
    side = daemon.sidecar(daemon.wait_done("cursed.mp4", "failed", timeout=60))
    assert side["error_code"] == "internal_error"
    assert f"{INTERNAL_ERROR_LIMIT} internal errors in a row" in side["reason"]
    assert "IndexError" in side["reason"] and "Traceback" not in str(side)
    assert fake_api.count("POST", "/tasks") == 0
    # The fault is gone now: the next file goes through.
    shutil.copy(valid_clip, daemon.inbox / "fine.mp4")
    daemon.wait_done("fine.mp4", timeout=30)


def test_a_file_whose_thread_died_holding_it_is_swept_back(daemon, fake_api, valid_clip):
    # SystemExit is not caught by any guard: the upload thread ends mid-validation
    # and its file would sit in `validating` until the next restart.
    sabotaged(daemon, "die:validate:1").start()
    shutil.copy(valid_clip, daemon.inbox / "orphan.mp4")
    wait_for(lambda: "thread upload-1 died" in daemon.log(), 30, daemon.log)
    daemon.wait_done("orphan.mp4", timeout=40)
    assert any("found stranded in validating by the supervisor" in line
               for line in history_of(daemon, "orphan.mp4"))
    assert len(fake_api.tasks) == 1


# -- units -------------------------------------------------------------------


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "state.db").open()
    yield store
    store.close()


def row(store: Store, tmp_path: Path, name: str, state: str, **fields) -> int:
    path = tmp_path / name
    path.write_bytes(b"x")
    return store.add(path=str(path), folder=str(tmp_path), index_id="idx", state=state,
                     size=1, mtime_ns=path.stat().st_mtime_ns, **fields).id


def test_put_back_returns_each_state_to_the_step_that_retries_it(store, tmp_path):
    settle, finalize = [], []
    ids = {state: row(store, tmp_path, f"{state}.mp4", state) for state in (
        State.QUEUED, State.VALIDATING, State.UPLOADING, State.FINALIZING, State.INDEXING)}
    with_task = row(store, tmp_path, "sent.mp4", State.UPLOADING, task_id="t1")
    for file_id in [*ids.values(), with_task]:
        put_back(store, store.get(file_id), "oops", settle_again=settle.append,
                 finalize=finalize.append)
    states = {state: store.get(file_id).state for state, file_id in ids.items()}
    assert states == {State.QUEUED: State.SETTLING, State.VALIDATING: State.SETTLING,
                      State.UPLOADING: State.SETTLING, State.FINALIZING: State.FINALIZING,
                      State.INDEXING: State.INDEXING}
    assert store.get(with_task).state == State.INDEXING
    assert sorted(Path(p).name for p in settle) == ["queued.mp4", "uploading.mp4",
                                                   "validating.mp4"]
    assert finalize == [ids[State.FINALIZING]]
    assert all(any("oops" in (h["detail"] or "") for h in store.history(i))
               for i in [*ids.values(), with_task])


def test_internal_errors_count_per_file_and_a_clean_run_resets_the_count():
    errors, backs, gave_up = InternalErrors(limit=3), [], []

    def boom():
        raise KeyError("bad")

    def run(file_id, action):
        return errors.run(file_id, action, put_back=backs.append, give_up=gave_up.append)

    assert not run(1, boom) and not run(1, boom)
    assert run(1, lambda: None) and errors.count(1) == 0  # a clean step: not "in a row"
    for _ in range(3):
        run(1, boom)
    run(2, boom)
    assert len(gave_up) == 1 and "internal error 3 of 3" in gave_up[0]
    assert "KeyError" in gave_up[0] and len(backs) == 5


def test_the_sweep_takes_only_rows_unheld_and_unchanged_for_two_looks(store, tmp_path):
    stranded = row(store, tmp_path, "stranded.mp4", State.VALIDATING)
    held = row(store, tmp_path, "held.mp4", State.UPLOADING)
    moving = row(store, tmp_path, "moving.mp4", State.QUEUED)
    put: list[tuple[int, str]] = []
    sweep = Sweep(store, lambda: {held}, lambda record, why: put.append((record.id, why)))
    assert sweep.run() == [] and put == []  # first look: only suspects
    store.update(moving, size=2)  # it changed in between: someone is working on it
    orphans = sweep.run()
    assert [r.id for r in orphans] == [stranded]
    assert put == [(stranded, "found stranded in validating by the supervisor")]


def test_a_finalizer_crash_keeps_the_file_and_retries_it(store, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = parse_config({"folders": [{"path": str(inbox), "index_id": "idx"}]},
                          base_dir=tmp_path, env={})
    clip = inbox / "a.mp4"
    clip.write_bytes(b"video")
    file_id = store.add(path=str(clip), folder=str(inbox), index_id="idx",
                        state=State.FINALIZING, outcome="ready", size=5).id
    work: queue.Queue[int] = queue.Queue()
    finalizer = Finalizer(config=config, store=store, work=work, retry_seconds=0.0)
    real, calls = finalizer.finalize, []

    def crash_once(fid):
        calls.append(fid)
        if len(calls) == 1:
            raise RuntimeError("surprise")
        real(fid)

    finalizer.finalize = crash_once
    work.put(file_id)
    finalizer.step()
    assert store.get(file_id).state == State.FINALIZING and clip.exists()
    finalizer.step()  # the retry is due at once (retry_seconds=0)
    assert store.get(file_id).state == State.DONE
    assert any("internal error 1 of 5" in (h["detail"] or "") for h in store.history(file_id))
