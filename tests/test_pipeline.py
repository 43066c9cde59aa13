"""One step at a time: the upload worker and the poller with a scripted API and a real store."""

from __future__ import annotations

import hashlib
import os
import queue
import shutil
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from watcherd.config import parse_config
from watcherd.errors import ApiRejected, AuthError, TransientError
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.poller import Poller
from watcherd.ingest.upload import UploadWorker
from watcherd.simulator.clips import write_text_as_video
from watcherd.state.states import State
from watcherd.state.store import Store
from watcherd.twelvelabs.client import UploadAborted


class ScriptedApi:
    """Answers from a script; records every call. Stands in for TwelveLabsClient."""

    def __init__(self, creates=(), tasks=(), listed=(), videos=(), video=()):
        self.creates = list(creates)
        self.tasks = list(tasks)
        self.listed = list(listed)
        self.videos = list(videos)
        self.video = list(video)
        self.calls: list[tuple[str, dict]] = []

    def _next(self, script):
        answer = script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def create_task(self, path, **kwargs):
        self.calls.append(("create_task", kwargs))
        return self._next(self.creates)

    def get_task(self, task_id):
        self.calls.append(("get_task", {"task_id": task_id}))
        return self._next(self.tasks)

    def list_tasks(self, **kwargs):
        self.calls.append(("list_tasks", kwargs))
        return self._next(self.listed)

    def list_videos(self, **kwargs):
        self.calls.append(("list_videos", kwargs))
        return self._next(self.videos)

    def get_video(self, index_id, video_id):
        self.calls.append(("get_video", {"index_id": index_id, "video_id": video_id}))
        return self._next(self.video)

    def names(self):
        return [name for name, _ in self.calls]


@pytest.fixture
def rig(tmp_path, valid_clip):
    inbox = tmp_path / "inbox"
    (inbox / "done").mkdir(parents=True)  # as preflight leaves it: a folder in reach
    config = parse_config({"upload_method": "tasks",
                           "folders": [{"path": str(inbox), "index_id": "idx"},
                                       {"path": str(tmp_path / "nodedupe"), "index_id": "idx",
                                        "dedupe": False}]},
                          base_dir=tmp_path, env={})
    store = Store(tmp_path / "state.db").open()
    finalized: list[int] = []
    resettled: list[str] = []

    def queued(name, source=valid_clip, folder=inbox, index_id="idx", **fields):
        path = folder / name
        path.parent.mkdir(exist_ok=True)
        shutil.copy(source, path)
        st = path.stat()
        return store.add(path=str(path), folder=str(folder), index_id=index_id,
                         state=State.QUEUED, size=st.st_size, mtime_ns=st.st_mtime_ns,
                         **fields)

    def worker(api, work=None, clock=None, gate=None):
        return UploadWorker("upload-1", config=config, store=store, api=api,
                            gate=gate or UploadGate(rng=lambda: 0.0), work=work or queue.Queue(),
                            finalize=finalized.append, settle_again=resettled.append,
                            **({"clock": clock} if clock else {}))

    yield queued, worker, store, finalized, resettled
    store.close()


def test_a_rejected_file_is_finalized_as_failed_without_any_api_call(rig, clip_dir):
    queued, worker, store, finalized, _ = rig
    record = queued("text.mp4", write_text_as_video(clip_dir / "t.mp4"))
    api = ScriptedApi()
    worker(api).process(record.id)
    record = store.get(record.id)
    assert api.calls == []
    assert (record.state, record.outcome, record.rule) == (State.FINALIZING, "failed",
                                                            "decodable")
    assert record.sha256 and finalized == [record.id]


def test_a_valid_file_is_uploaded_and_its_task_recorded(rig):
    queued, worker, store, _, _ = rig
    record = queued("ok.mp4")
    api = ScriptedApi(creates=[{"_id": "t1", "video_id": "v1"}])
    worker(api).process(record.id)
    record = store.get(record.id)
    assert (record.state, record.task_id, record.video_id, record.attempts) == \
        (State.INDEXING, "t1", "v1", 1)
    kwargs = api.calls[0][1]
    assert kwargs["index_id"] == "idx" and kwargs["user_metadata"]["sha256"] == record.sha256
    states = [h["to_state"] for h in store.history(record.id)]
    assert states == ["queued", "validating", "uploading", "indexing"]


def test_after_a_transient_failure_an_existing_task_is_adopted_not_reuploaded(rig):
    queued, worker, store, _, _ = rig
    record = queued("ok.mp4")
    sha = hashlib.sha256(Path(record.path).read_bytes()).hexdigest()
    lost = TransientError(None, None, "reset", maybe_created=True)
    api = ScriptedApi(creates=[lost], listed=[[{"_id": "t9", "video_id": "v9",
                                                "system_metadata": {"filename": "ok.mp4"}}]],
                      videos=[[{"_id": "v9", "user_metadata": {"sha256": sha}}]])
    w = worker(api, gate=UploadGate(rng=lambda: 0.0, cap=0.01))
    w.process(record.id)
    record = store.get(record.id)
    assert api.names() == ["create_task", "list_tasks", "list_videos"]
    assert (record.state, record.task_id, record.attempts) == (State.INDEXING, "t9", 1)
    assert record.task_may_exist == 0


def test_after_a_refused_attempt_the_upload_is_retried_without_looking_for_a_task(rig):
    """A 429 answered the request: no task can exist, so nothing is looked up."""
    queued, worker, store, _, _ = rig
    record = queued("ok.mp4")
    refused = TransientError(429, None, "slow down", retry_after=0.01, maybe_created=False)
    api = ScriptedApi(creates=[refused, {"_id": "t2", "video_id": "v2"}])
    worker(api).process(record.id)
    record = store.get(record.id)
    assert api.names() == ["create_task", "create_task"]
    assert (record.task_id, record.attempts, record.task_may_exist) == ("t2", 2, 0)


def sha_of(record) -> str:
    return hashlib.sha256(Path(record.path).read_bytes()).hexdigest()


def candidate(status: str, name: str = "ok.mp4") -> dict:
    return {"_id": "t9", "video_id": "v9", "status": status,
            "system_metadata": {"filename": name}}


def test_a_candidate_still_indexing_is_waited_for_then_adopted_once_its_video_proves_it(rig):
    queued, worker, store, _, _ = rig
    record = queued("ok.mp4", attempts=1, upload_started_at=1000.0, task_may_exist=1)
    clock = FakeClock(50.0)
    work: queue.Queue[int] = queue.Queue()
    api = ScriptedApi(listed=[[candidate("indexing")], [candidate("ready")]],
                      videos=[[], [{"_id": "v9", "user_metadata": {"sha256": sha_of(record)}}]])
    w = worker(api, work, clock)
    w.process(record.id)
    assert work.get_nowait() == record.id and store.get(record.id).state == State.QUEUED
    assert "to finish indexing" in store.history(record.id)[-1]["detail"]
    w.process(record.id)  # not due yet: straight back to the queue, no request
    assert work.get_nowait() == record.id and api.names() == ["list_tasks", "list_videos"]
    clock.now += w.config.poll_interval_seconds + 0.5  # looked at again at the poll pace
    w.process(record.id)
    record = store.get(record.id)
    assert (record.state, record.task_id, record.task_may_exist) == (State.INDEXING, "t9", 0)
    assert "create_task" not in api.names()


def test_a_candidate_that_never_finishes_is_given_up_and_the_duplicate_named(rig, caplog):
    queued, worker, store, _, _ = rig
    record = queued("ok.mp4", attempts=1, upload_started_at=1000.0, task_may_exist=1)
    clock = FakeClock(50.0)
    api = ScriptedApi(listed=[[candidate("indexing")]] * 2, videos=[[]] * 2,
                      creates=[{"_id": "t2", "video_id": "v2"}])
    w = worker(api, clock=clock)
    w.process(record.id)
    clock.now += w.config.task_timeout_seconds + 1
    w.process(record.id)
    record = store.get(record.id)
    assert (record.state, record.task_id, record.attempts) == (State.INDEXING, "t2", 2)
    (warning,) = [r for r in caplog.records if "possible duplicate" in r.getMessage()]
    assert warning.levelname == "WARNING"
    assert "task t9" in warning.getMessage() and "task t2" in warning.getMessage()
    assert any("possible duplicate" in (h["detail"] or "") for h in store.history(record.id))


@pytest.mark.parametrize("status", ["failed", "ready"])
def test_a_candidate_without_readable_content_is_not_adopted(rig, caplog, status):
    """Failed tasks have no video; a ready one may have lost its metadata: upload again."""
    queued, worker, store, _, _ = rig
    record = queued("ok.mp4", attempts=1, upload_started_at=1000.0, task_may_exist=1)
    api = ScriptedApi(listed=[[candidate(status)]], videos=[[]],
                      video=[ApiRejected(404, "resource_not_exist", "no such video")],
                      creates=[{"_id": "t2", "video_id": "v2"}])
    worker(api).process(record.id)
    assert store.get(record.id).task_id == "t2"
    assert any("possible duplicate: task t9" in r.getMessage() for r in caplog.records)


def test_a_file_not_yet_sent_goes_to_the_index_a_reload_gave_its_folder(rig):
    queued, worker, store, _, _ = rig
    record = queued("ok.mp4", index_id="idx_before_reload")
    api = ScriptedApi(creates=[{"_id": "t1", "video_id": "v1"}])
    worker(api).process(record.id)
    record = store.get(record.id)
    assert api.calls[0][1]["index_id"] == record.index_id == "idx"
    assert any("index changed from idx_before_reload to idx" in (h["detail"] or "")
               for h in store.history(record.id))


@pytest.mark.parametrize("ours", [True, False])
def test_an_unanswered_attempt_is_looked_for_in_the_index_it_was_sent_to(rig, ours):
    queued, worker, store, _, _ = rig
    record = queued("ok.mp4", index_id="idx_before_reload", attempts=1,
                    upload_started_at=1000.0, task_may_exist=1)
    sha = sha_of(record) if ours else "other content"
    api = ScriptedApi(listed=[[candidate("ready")]],
                      videos=[[{"_id": "v9", "user_metadata": {"sha256": sha}}]],
                      creates=[{"_id": "t2", "video_id": "v2"}])
    worker(api).process(record.id)
    record = store.get(record.id)
    assert api.calls[0] == ("list_tasks", {"index_id": "idx_before_reload",
                                           "filename": "ok.mp4",
                                           "created_at": "1969-12-31T00:16:40Z"})
    # Adopted: the task is in the old index. Not ours: sent to the folder's index now.
    assert (record.task_id, record.index_id) == (("t9", "idx_before_reload") if ours else
                                                 ("t2", "idx"))


def test_an_auth_error_pauses_uploads_and_keeps_the_file_queued(rig):
    queued, worker, store, finalized, _ = rig
    record = queued("ok.mp4")
    api = ScriptedApi(creates=[AuthError(401, "api_key_invalid", "expired")])
    w = worker(api)
    real_pause = w.gate.pause

    def pause_then_stop(error):  # stop as shutdown would, once the pause is in place
        w.stop_event.set()
        return real_pause(error)

    w.gate.pause = pause_then_stop
    w.process(record.id)
    record = store.get(record.id)
    assert w.gate.paused is not None and finalized == []
    assert record.state == State.QUEUED and record.outcome is None


def test_an_api_rejection_fails_the_file_with_the_code(rig):
    queued, worker, store, _, _ = rig
    record = queued("ok.mp4")
    api = ScriptedApi(creates=[ApiRejected(400, "video_file_broken", "Cannot read video")])
    worker(api).process(record.id)
    record = store.get(record.id)
    assert (record.state, record.error_code) == (State.FINALIZING, "video_file_broken")
    assert "Cannot read video" in record.reason


def test_a_file_changed_after_settling_goes_back_to_settle(rig):
    queued, worker, store, _, resettled = rig
    record = queued("ok.mp4")
    with open(record.path, "ab") as fh:
        fh.write(b"more")
    api = ScriptedApi()
    worker(api).process(record.id)
    assert store.get(record.id).state == State.SETTLING and resettled == [record.path]
    assert api.calls == []


def test_a_file_deleted_before_upload_ends_as_vanished(rig):
    queued, worker, store, _, _ = rig
    record = queued("ok.mp4")
    os.unlink(record.path)
    worker(ScriptedApi()).process(record.id)
    assert store.get(record.id).state == State.VANISHED


@pytest.fixture
def indexing(tmp_path):
    store = Store(tmp_path / "state.db").open()
    record = store.add(path="/in/a.mp4", folder="/in", index_id="idx", state=State.INDEXING,
                       task_id="t1", video_id="v1")
    finalized: list[int] = []

    def poller(api):
        return Poller(store=store, api=api, gate=UploadGate(), finalize=finalized.append,
                      interval=0.0, rng=lambda: 0.5)

    yield store, record, poller, finalized
    store.close()


def test_poller_follows_a_task_to_ready_in_either_api_shape(indexing):
    store, record, poller, finalized = indexing
    api = ScriptedApi(tasks=[
        {"_id": "t1", "status": "pending", "system_metadata": {"filename": "a.mp4"}},
        {"_id": "t1", "status": "indexing", "process": {"percentage": 40}, "metadata": {}},
        {"_id": "t1", "status": "ready", "video_id": "v1"},
    ])
    p = poller(api)
    p.poll_due()
    assert store.get(record.id).remote_status == "pending"
    p.poll_due()
    assert store.get(record.id).remote_status == "indexing"
    p.poll_due()
    done = store.get(record.id)
    assert (done.state, done.outcome, done.reason) == (State.FINALIZING, "ready", None)
    assert done.task()["status"] == "ready" and finalized == [record.id]


def test_poller_keeps_unknown_statuses_and_transient_errors_non_terminal(indexing, caplog):
    store, record, poller, _ = indexing
    api = ScriptedApi(tasks=[{"status": "thinking"}, TransientError(502, None, "bad gateway"),
                             {"status": "failed", "error_reason": "corrupt stream"}])
    p = poller(api)
    p.poll_due()
    assert store.get(record.id).state == State.INDEXING and "unknown status" in caplog.text
    p.poll_due()
    p.next_poll.clear()
    p.poll_due()
    failed = store.get(record.id)
    assert failed.outcome == "failed" and "corrupt stream" in failed.reason


def test_poller_fails_a_task_that_no_longer_exists(indexing):
    store, record, poller, _ = indexing
    p = poller(ScriptedApi(tasks=[ApiRejected(404, "resource_not_exist", "gone")]))
    p.poll_due()
    assert "resource_not_exist" in store.get(record.id).reason


def test_poller_lists_an_index_once_for_all_its_running_tasks(indexing):
    store, first, poller, finalized = indexing
    second = store.add(path="/in/b.mp4", folder="/in", index_id="idx", state=State.INDEXING,
                       task_id="t2")
    third = store.add(path="/in/c.mp4", folder="/in", index_id="idx", state=State.INDEXING,
                      task_id="t3")
    api = ScriptedApi(
        listed=[[{"_id": "t1", "status": "indexing"}, {"_id": "t2", "status": "pending"}]],
        tasks=[{"_id": "t3", "status": "ready", "video_id": "v3"}])
    poller(api).poll_due()
    # One list for the index; only the task missing from it (finished) is read alone.
    assert api.names() == ["list_tasks", "get_task"]
    assert api.calls[0][1]["index_id"] == "idx"
    assert set(api.calls[0][1]["statuses"]) == {"uploading", "validating", "pending", "queued",
                                                "indexing"}
    assert api.calls[1][1] == {"task_id": "t3"}
    assert store.get(first.id).remote_status == "indexing"
    assert store.get(second.id).remote_status == "pending"
    assert store.get(third.id).state == State.FINALIZING and finalized == [third.id]


def test_poller_falls_back_to_one_get_each_when_listing_fails_or_is_off(indexing):
    store, _, poller, _ = indexing
    store.add(path="/in/b.mp4", folder="/in", index_id="idx", state=State.INDEXING, task_id="t2")
    api = ScriptedApi(listed=[TransientError(503, None, "busy")],
                      tasks=[{"status": "pending"}, {"status": "pending"}])
    poller(api).poll_due()
    assert api.names() == ["list_tasks", "get_task", "get_task"]
    api = ScriptedApi(tasks=[{"status": "pending"}, {"status": "pending"}])
    p = poller(api)
    p.batch = False
    p.poll_due()
    assert api.names() == ["get_task", "get_task"]


def test_a_single_task_is_polled_with_a_get_not_a_list(indexing):
    _, _, poller, _ = indexing
    api = ScriptedApi(tasks=[{"status": "pending"}])
    poller(api).poll_due()
    assert api.names() == ["get_task"]


def test_a_file_missing_from_an_empty_folder_waits_instead_of_vanishing(rig, tmp_path):
    """An unmounted share leaves an empty mount point: that is no proof of deletion."""
    queued, worker, store, _, resettled = rig
    record = queued("ok.mp4")
    os.unlink(record.path)
    os.rmdir(tmp_path / "inbox" / "done")
    worker(ScriptedApi()).process(record.id)
    assert store.get(record.id).state == State.SETTLING and resettled == [record.path]


def test_same_content_already_indexed_is_not_uploaded_again(rig):
    queued, worker, store, finalized, _ = rig
    first = queued("first.mp4")
    worker(ScriptedApi(creates=[{"_id": "t1", "video_id": "v1"}])).process(first.id)
    store.transition(first.id, State.DONE, "moved", outcome="ready")
    copy = queued("copy.mp4")
    api = ScriptedApi()
    worker(api).process(copy.id)
    copy = store.get(copy.id)
    assert api.calls == [] and finalized == [copy.id]
    assert (copy.state, copy.outcome, copy.task_id, copy.video_id, copy.duplicate_of) == \
        (State.FINALIZING, "ready", "t1", "v1", first.id)
    assert copy.attempts == 0 and "same content as" in copy.reason


def test_a_copy_of_content_being_indexed_follows_that_task(rig):
    queued, worker, store, finalized, _ = rig
    first = queued("first.mp4")
    worker(ScriptedApi(creates=[{"_id": "t1", "video_id": "v1"}])).process(first.id)
    copy = queued("copy.mp4")
    api = ScriptedApi()
    worker(api).process(copy.id)
    copy = store.get(copy.id)
    assert api.calls == [] and finalized == []
    assert (copy.state, copy.task_id, copy.duplicate_of) == (State.INDEXING, "t1", first.id)


def test_a_copy_of_content_being_uploaded_waits_at_the_back_of_the_queue(rig, valid_clip):
    """The first copy's last attempt may have created a task: the second must not upload."""
    queued, worker, store, _, _ = rig
    queued("first.mp4", attempts=1, sha256=hashlib.sha256(valid_clip.read_bytes()).hexdigest())
    work: queue.Queue[int] = queue.Queue()
    copy = queued("copy.mp4")
    api = ScriptedApi()
    worker(api, work).process(copy.id)
    assert api.calls == [] and work.get_nowait() == copy.id
    assert store.get(copy.id).state == State.QUEUED


def test_dedupe_off_uploads_every_copy(rig, tmp_path):
    queued, worker, store, _, _ = rig
    first = queued("first.mp4")
    worker(ScriptedApi(creates=[{"_id": "t1", "video_id": "v1"}])).process(first.id)
    copy = queued("copy.mp4", folder=tmp_path / "nodedupe")
    worker(ScriptedApi(creates=[{"_id": "t2", "video_id": "v2"}])).process(copy.id)
    assert store.get(copy.id).task_id == "t2"


@pytest.mark.parametrize("confirmed", [True, False])
def test_after_a_rebuild_only_a_content_match_is_adopted(rig, confirmed):
    """upload_started_at=0: an upload may have happened at an unknown time."""
    queued, worker, store, _, _ = rig
    record = queued("ok.mp4", upload_started_at=0.0, task_may_exist=1)
    task = {"_id": "t9", "video_id": "v9", "system_metadata": {"filename": "ok.mp4"}}
    api = ScriptedApi(listed=[[task]], creates=[{"_id": "t2", "video_id": "v2"}],
                      videos=[[{"_id": "v9", "user_metadata": {"sha256": "someone else"}}]])
    if confirmed:
        sha = hashlib.sha256(Path(record.path).read_bytes()).hexdigest()
        api.videos = [[{"_id": "v9", "user_metadata": {"sha256": sha}}]]
    worker(api).process(record.id)
    record = store.get(record.id)
    assert api.calls[0][1]["created_at"] is None
    assert record.task_id == ("t9" if confirmed else "t2")
    assert ("create_task" in api.names()) is not confirmed


def test_a_task_that_never_finishes_fails_after_task_timeout(tmp_path):
    clock = FakeClock(10_000.0)
    store = Store(tmp_path / "state.db", clock=clock).open()
    record = store.add(path="/in/a.mp4", folder="/in", index_id="idx", state=State.INDEXING,
                       task_id="t1", uploaded_at=clock.now, remote_status="indexing")
    finalized: list[int] = []
    api = ScriptedApi(tasks=[{"_id": "t1", "status": "indexing"}] * 2)
    p = Poller(store=store, api=api, gate=UploadGate(), finalize=finalized.append,
               interval=0.0, task_timeout=3600, rng=lambda: 0.5, clock=clock)
    p.poll_due()
    clock.now += 3599
    p.poll_due()
    assert store.get(record.id).state == State.INDEXING
    clock.now += 2
    p.poll_due()
    failed = store.get(record.id)
    assert (failed.state, failed.outcome, failed.error_code) == (State.FINALIZING, "failed",
                                                                 "task_timeout")
    assert "still indexing after 1.0 h" in failed.reason and finalized == [record.id]
    assert api.names() == ["get_task"] * 2  # a timed-out task is not polled again
    store.close()


def test_a_wall_clock_step_neither_fails_nor_prolongs_a_task(tmp_path):
    """task_timeout_seconds counts monotonic time: NTP steps of the wall clock do not count."""
    wall, mono = FakeClock(1_000_000.0), FakeClock(50.0)
    store = Store(tmp_path / "state.db", clock=wall).open()
    record = store.add(path="/in/a.mp4", folder="/in", index_id="idx", state=State.INDEXING,
                       task_id="t1", uploaded_at=wall.now, remote_status="indexing")
    api = ScriptedApi(tasks=[{"_id": "t1", "status": "indexing"}] * 3)
    p = Poller(store=store, api=api, gate=UploadGate(), finalize=lambda _: None,
               interval=0.0, task_timeout=3600, rng=lambda: 0.5, clock=mono)
    p.poll_due()
    wall.now += 2 * 86400  # the wall clock jumps two days ahead
    mono.now += 10
    p.poll_due()
    assert store.get(record.id).state == State.INDEXING
    wall.now -= 5 * 86400  # and then far behind: the task still times out on time
    mono.now += 3600
    p.poll_due()
    assert store.get(record.id).error_code == "task_timeout"
    store.close()


def test_the_time_a_task_was_followed_survives_a_restart(tmp_path):
    """Monotonic time restarts at boot: the seconds followed are saved in the row."""
    store = Store(tmp_path / "state.db", clock=FakeClock(1_000_000.0)).open()
    record = store.add(path="/in/a.mp4", folder="/in", index_id="idx", state=State.INDEXING,
                       task_id="t1", remote_status="indexing")
    api = ScriptedApi(tasks=[{"_id": "t1", "status": "indexing"}] * 4)
    before = FakeClock(90_000.0)
    first = Poller(store=store, api=api, gate=UploadGate(), finalize=lambda _: None,
                   interval=0.0, task_timeout=3600, rng=lambda: 0.5, clock=before)
    first.poll_due()
    before.now += 3000
    first.poll_due()
    assert store.get(record.id).indexing_seconds == 3000
    after = FakeClock(7.0)  # a reboot: the monotonic clock starts low again
    second = Poller(store=store, api=api, gate=UploadGate(), finalize=lambda _: None,
                    interval=0.0, task_timeout=3600, rng=lambda: 0.5, clock=after)
    second.poll_due()
    after.now += 599
    second.poll_due()
    assert store.get(record.id).state == State.INDEXING
    after.now += 2
    second.poll_due()
    assert store.get(record.id).error_code == "task_timeout"
    store.close()


class ChangingApi(ScriptedApi):
    """Does something to the file half way through the upload, then checks for abort."""

    def __init__(self, mishap):
        super().__init__()
        self.mishap = mishap

    def create_task(self, path, **kwargs):
        self.calls.append(("create_task", kwargs))
        self.mishap(path)
        assert kwargs["should_abort"]()
        raise UploadAborted("file changed during upload")


@pytest.mark.parametrize("mishap", ["appended", "deleted"])
def test_a_file_changed_or_deleted_mid_upload_is_not_uploaded_as_it_was(rig, mishap):
    queued, worker, store, finalized, resettled = rig
    record = queued("ok.mp4")

    def act(path):
        if mishap == "deleted":
            os.unlink(path)
        else:
            with open(path, "ab") as fh:
                fh.write(b"more")

    worker(ChangingApi(act)).process(record.id)
    record = store.get(record.id)
    # Back to the settle gate, which waits for quiet again or records the file as vanished.
    assert record.state == State.SETTLING and resettled == [record.path] and finalized == []
