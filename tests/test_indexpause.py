"""An index that disappears pauses its folders; nothing is failed for it (issue 12 item 4).

Step by step with a scripted API: the upload worker parks the file, the
poller leaves the task alone, the pause check lifts the pause and hands the
parked files back. The real daemon is in test_pauses_e2e.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from tests.test_pipeline import ScriptedApi, rig  # noqa: F401 (a fixture)
from watcherd.config import parse_config
from watcherd.errors import ApiRejected, AuthError
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.indexpause import IndexPauses
from watcherd.ingest.pausecheck import PauseCheck
from watcherd.ingest.poller import Poller
from watcherd.state.states import State

GONE = ApiRejected(400, "resource_not_exist",
                   "POST /tasks: Resource with id `idx` does not exist in `indexes`.")


class IndexedApi(ScriptedApi):
    """ScriptedApi that also answers ``get_index``, from its own script."""

    def __init__(self, indexes=(), **scripts):
        super().__init__(**scripts)
        self.indexes = list(indexes)

    def get_index(self, index_id):
        self.calls.append(("get_index", {"index_id": index_id}))
        return self._next(self.indexes)


def not_found(index_id="idx"):
    return ApiRejected(404, "resource_not_exist",
                       f"GET /indexes/{index_id}: Resource with id `{index_id}` does not exist")


def test_an_upload_into_a_deleted_index_parks_the_file_instead_of_failing_it(
        rig, caplog):  # noqa: F811
    queued, worker, store, finalized, _ = rig
    record = queued("ok.mp4")
    api = IndexedApi(creates=[GONE], indexes=[not_found()])
    w = worker(api)
    with caplog.at_level(logging.ERROR):
        w.process(record.id)
    record = store.get(record.id)
    assert (record.state, record.outcome, finalized) == (State.QUEUED, None, [])
    assert w.index_pauses.why("idx") and w.index_pauses.parked() == {record.id}
    assert "folders[0].index_id, folders[1].index_id: index idx no longer exists" in caplog.text
    assert w.work.empty()  # parked, not cycling through the queue
    w.process(record.id)  # taken again while the index is still gone: parked, no request
    assert api.names() == ["create_task", "get_index"]


def test_a_not_found_that_is_not_about_the_index_still_fails_the_file(rig):  # noqa: F811
    queued, worker, store, finalized, _ = rig
    record = queued("ok.mp4")
    api = IndexedApi(creates=[GONE], indexes=[{"_id": "idx"}])  # the index answers
    w = worker(api)
    w.process(record.id)
    record = store.get(record.id)
    assert (record.state, record.error_code) == (State.FINALIZING, "resource_not_exist")
    assert finalized == [record.id] and not w.index_pauses.paused()


def test_the_poller_leaves_tasks_of_a_deleted_index_alone(tmp_path):
    from watcherd.state.store import Store

    store = Store(tmp_path / "state.db").open()
    try:
        record = store.add(path=str(tmp_path / "a.mp4"), folder=str(tmp_path), index_id="idx",
                           state=State.INDEXING, task_id="t1", uploaded_at=store.clock())
        finalized: list[int] = []
        api = IndexedApi(tasks=[not_found("t1")], indexes=[not_found()])
        pauses = IndexPauses(lambda: parse_config(
            {"folders": [{"path": str(tmp_path), "index_id": "idx"}]}, base_dir=tmp_path,
            env={}))
        poller = Poller(store=store, api=api, gate=UploadGate(), finalize=finalized.append,
                        interval=0.1, clock=FakeClock(), index_pauses=pauses)
        poller.poll_due()
        assert store.get(record.id).state == State.INDEXING and finalized == []
        assert pauses.why("idx")
        poller.poll_due()
        assert api.names() == ["get_task", "get_index"]  # not polled while the index is gone
    finally:
        store.close()


@pytest.fixture
def check(tmp_path):
    config = parse_config({"pause_check_seconds": 60, "folders": [
        {"path": str(tmp_path / "a"), "index_id": "idx"},
        {"path": str(tmp_path / "b"), "index_id": "other"}]}, base_dir=tmp_path, env={})
    released: list[int] = []
    clock = FakeClock()
    api = IndexedApi()
    pauses = IndexPauses(lambda: config)
    pc = PauseCheck(config=config, api=api, gate=UploadGate(), index_pauses=pauses,
                    release=released.append, clock=clock)
    return pc, api, clock, released


def test_the_pause_check_resumes_an_index_once_it_answers_and_releases_its_files(check,
                                                                                  caplog):
    pc, api, clock, released = check
    pc.index_pauses.pause("idx", GONE)
    assert pc.index_pauses.park_if_paused("idx", 7)
    assert not pc.index_pauses.park_if_paused("other", 8)  # other folders go on
    pc.check()  # the pause began: first look in 60 s
    clock.now += 61
    api.indexes = [not_found()]
    with caplog.at_level(logging.ERROR):
        pc.check()
    assert "still paused: folders[0].index_id" in caplog.text and released == []
    clock.now += 61
    api.indexes = [{"_id": "idx"}]
    pc.check()
    assert released == [7] and not pc.index_pauses.paused()
    assert pc.index_pauses.parked() == set()


def test_a_sighup_check_runs_at_once_and_a_refused_key_is_checked_first(check):
    pc, api, _clock, released = check
    pc.index_pauses.pause("idx", GONE)
    pc.index_pauses.park_if_paused("idx", 7)
    pc.gate.pause(AuthError(401, "api_key_invalid", "expired"))
    pc.check()  # both pauses just began
    api.indexes = [{"_id": "idx"}, {"_id": "other"}, {"_id": "idx"}]
    pc.check(now=True)  # no clock advance: a SIGHUP asks at once
    assert pc.gate.paused is None  # the key works: every index answered
    assert released == [7]


def test_an_index_no_longer_in_the_config_releases_its_files_without_asking(check, tmp_path):
    pc, api, _clock, released = check
    pc.index_pauses.pause("retired", GONE)
    pc.index_pauses.park_if_paused("retired", 9)
    pc.check()  # the pause began; then a reload pointed the folder elsewhere
    pc.check(now=True)
    assert released == [9] and api.calls == []


def test_a_key_check_that_finds_an_index_gone_resumes_the_rest_and_pauses_that_folder(check):
    pc, api, _clock, _released = check
    pc.gate.pause(AuthError(401, "api_key_invalid", "expired"))
    pc.check()
    api.indexes = [not_found(), {"_id": "other"}]
    pc.check(now=True)
    assert pc.gate.paused is None and set(pc.index_pauses.paused()) == {"idx"}


def test_parking_and_resuming_never_lose_a_file():
    pauses = IndexPauses(lambda: parse_config({"folders": [
        {"path": "/a", "index_id": "idx"}]}, base_dir=Path("/"), env={}))
    pauses.pause("idx", GONE)
    assert pauses.park_if_paused("idx", 1) and pauses.park_if_paused("idx", 2)
    assert pauses.resume("idx") == [1, 2]
    assert not pauses.park_if_paused("idx", 3)  # resumed: the worker takes it
    assert pauses.parked() == set()


def test_status_names_the_paused_folder_its_index_and_the_fix():
    from rich.console import Console

    from watcherd.cli.status import render_status

    status = {
        "daemon": {"running": True, "pid": 1, "version": "test",
                   "started_at": "2026-01-01T00:00:00+00:00", "problems": []},
        "uploads": {"state": "running"},
        "folders": [{"path": "/srv/a", "index_id": "idx", "paused": GONE.describe(),
                     "unreadable": [],
                     "watch": None, "counts": dict.fromkeys(
                         ("settling", "queued", "validating", "uploading", "indexing",
                          "done", "failed", "vanished"), 0)}],
        "active": [], "recent": {"done": [], "failed": []}}
    console = Console(record=True, width=300)
    render_status(status, console)
    text = console.export_text()
    assert "uploads paused for /srv/a: index idx is gone (HTTP 400 resource_not_exist" in text
    assert "fix: recreate it" in text
