"""Which upload path a file takes (``ingest.method``), and what happens when Twelve Labs
refuses multipart or removes ``POST /tasks``: nothing fails, files wait, the pause check
opens the path again. The real daemon is in test_method_e2e."""

from __future__ import annotations

import logging
import queue
import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import FakeClock
from tests.test_indexpause import IndexedApi
from watcherd.config import MULTIPART, TASKS, parse_config
from watcherd.errors import ApiError, ApiRejected
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.method import UploadPaths, Waiting
from watcherd.ingest.pausecheck import PauseCheck
from watcherd.ingest.upload import UploadWorker
from watcherd.media.limits import GIB
from watcherd.simulator import FakeTwelveLabs
from watcherd.state.states import State
from watcherd.state.store import Store
from watcherd.twelvelabs.client import TwelveLabsClient

FORBIDDEN = ApiError(403, "forbidden", "POST /assets/multipart-uploads: not enabled")
REMOVED = ApiRejected(404, "not_found", "POST /v1.3/tasks not found.")


def config_with(*methods: str, tmp_path=None):
    root = tmp_path or __import__("pathlib").Path("/srv")
    return parse_config({"pause_check_seconds": 30, "folders": [
        {"path": str(root / f"in{n}"), "index_id": "idx", "upload_method": m}
        for n, m in enumerate(methods)]}, base_dir=root, env={})


@pytest.fixture
def paths() -> UploadPaths:
    config = config_with("auto", "multipart", "tasks")
    return UploadPaths(lambda: config)


def test_each_method_takes_its_path_until_the_account_says_otherwise(paths):
    assert [paths.route(m, GIB) for m in ("auto", "multipart", "tasks")] == \
        [MULTIPART, MULTIPART, TASKS]
    paths.refuse_multipart(FORBIDDEN)
    assert paths.route("auto", GIB) == TASKS  # the fallback
    big = paths.route("auto", 3 * GIB)
    assert isinstance(big, Waiting) and "larger than the 2.0 GiB that POST /tasks" in big.reason
    assert "never falls back" in paths.route("multipart", GIB).reason
    paths.remove_tasks(REMOVED)
    assert "switch" not in paths.route("tasks", GIB).reason
    assert "set upload_method (or the folder's folders[i].upload_method) to auto" in \
        paths.route("tasks", GIB).reason
    assert "the fallback, is gone" in paths.route("auto", GIB).reason
    paths.reopen_multipart()
    assert paths.route("auto", 3 * GIB) == MULTIPART


def test_the_fallback_is_said_once_as_a_warning_and_the_waiting_folders_as_an_error(
        paths, caplog):
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            paths.refuse_multipart(FORBIDDEN)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(warnings) == 1 and len(errors) == 1
    assert "folders[0] (upload_method auto) upload through POST /tasks" in warnings[0].message
    assert "folders[1] (upload_method multipart) never fall back" in errors[0].message
    assert paths.snapshot() == {"multipart_refused": FORBIDDEN.describe(),
                                "tasks_removed": None, "fallback": True, "waiting": 0}
    assert paths.describe() == "multipart refused, auto falls back to POST /tasks"


def test_a_parked_file_is_told_once_and_handed_back_when_the_path_opens(paths):
    paths.refuse_multipart(FORBIDDEN)
    first = paths.route_or_park(7, "multipart", GIB)
    again = paths.route_or_park(7, "multipart", GIB)
    assert isinstance(first, Waiting) and first.news and not again.news
    assert paths.parked() == {7} and paths.snapshot()["waiting"] == 1
    assert paths.route_or_park(8, "auto", GIB) == TASKS and paths.parked() == {7}
    assert paths.reopen_multipart() == [7] and paths.parked() == set()


@pytest.fixture
def tasks_rig(tmp_path, valid_clip) -> Iterator:
    inbox = tmp_path / "in0"
    (inbox / "done").mkdir(parents=True)
    config = config_with("tasks", tmp_path=tmp_path)
    store = Store(tmp_path / "state.db").open()
    path = inbox / "ok.mp4"
    shutil.copy(valid_clip, path)
    st = path.stat()
    record = store.add(path=str(path), folder=str(inbox), index_id="idx", state=State.QUEUED,
                       size=st.st_size, mtime_ns=st.st_mtime_ns)

    def worker(api):
        return UploadWorker("upload-1", config=config, store=store, api=api,
                            gate=UploadGate(rng=lambda: 0.0), work=queue.Queue(),
                            finalize=pytest.fail, settle_again=pytest.fail)

    yield worker, store, record
    store.close()


@pytest.mark.parametrize(("status", "asks_index"), [(404, True), (410, False)])
def test_a_removed_post_tasks_parks_a_tasks_folder_file_in_the_inbox(
        tasks_rig, caplog, status, asks_index):
    worker, store, record = tasks_rig
    api = IndexedApi(creates=[ApiRejected(status, "not_found", "POST /tasks: not found")],
                     indexes=[{"_id": "idx"}])  # the index answers: the endpoint is gone
    w = worker(api)
    with caplog.at_level(logging.ERROR):
        w.process(record.id)
    row = store.get(record.id)
    assert (row.state, row.outcome, row.task_may_exist) == (State.QUEUED, None, 0)
    assert w.paths.parked() == {record.id} and w.work.empty()
    assert "POST /tasks is gone (HTTP " in caplog.text
    assert "folders[0] (upload_method tasks)" in caplog.text and "to auto" in caplog.text
    assert api.names() == ["create_task", *(["get_index"] if asks_index else [])]
    w.process(record.id)  # taken again while it is gone: parked, no request
    assert len(api.calls) == (2 if asks_index else 1)


@pytest.fixture
def live(tmp_path) -> Iterator:
    with FakeTwelveLabs() as fake:
        client = TwelveLabsClient(fake.base_url, lambda: fake.api_key)
        config = config_with("auto", "tasks", tmp_path=tmp_path)
        clock = FakeClock()
        released: list[int] = []
        paths = UploadPaths(lambda: config)
        check = PauseCheck(config=config, api=client, gate=UploadGate(), paths=paths,
                           release=released.append, clock=clock)
        yield fake, paths, check, clock, released
        client.close()


def test_the_pause_check_opens_multipart_again_only_once_the_account_allows_it(live):
    fake, paths, check, clock, released = live
    fake.multipart_forbidden = True
    paths.refuse_multipart(FORBIDDEN)
    paths.route_or_park(5, "auto", 3 * GIB)
    check.check()  # just learnt: nothing asked yet
    clock.now += 31
    check.check()
    assert paths.multipart_refused() and released == []
    fake.multipart_forbidden = False
    clock.now += 31
    check.check()
    assert paths.multipart_refused() is None and released == [5]
    # Asked with nothing created: no session, no task.
    assert fake.uploads_by_id == {} and fake.count("POST", "/assets") == 0


def test_the_pause_check_asks_post_tasks_without_a_video(live, caplog):
    fake, paths, check, clock, released = live
    fake.tasks_removed_status = 410
    paths.remove_tasks(REMOVED)
    paths.route_or_park(6, "tasks", GIB)
    check.check()
    clock.now += 31
    with caplog.at_level(logging.ERROR):
        check.check()
    assert paths.tasks_removed() and released == []
    assert "POST /tasks is gone" in caplog.text  # said again at each failed check
    fake.tasks_removed_status = None
    clock.now += 31
    check.check()
    assert paths.tasks_removed() is None and released == [6]
    assert fake.uploads() == [] and fake.tasks == {}


def test_status_says_which_path_is_closed_and_which_folders_wait():
    from rich.console import Console

    from watcherd.cli.status import render_status

    counts = dict.fromkeys(("settling", "queued", "validating", "uploading", "indexing",
                            "done", "failed", "vanished"), 0)
    status = {
        "daemon": {"running": True, "pid": 1, "version": "test",
                   "started_at": "2026-01-01T00:00:00+00:00", "problems": []},
        "uploads": {"state": "running"},
        "upload_paths": {"multipart_refused": FORBIDDEN.describe(),
                         "tasks_removed": REMOVED.describe(), "fallback": False, "waiting": 2},
        "folders": [{"path": f"/srv/{m}", "index_id": "idx", "upload_method": m,
                     "paused": None, "unreadable": [], "watch": None, "counts": counts}
                    for m in ("auto", "multipart", "tasks")],
        "active": [], "recent": {"done": [], "failed": []}}
    console = Console(record=True, width=300)
    render_status(status, console)
    text = console.export_text()
    assert "multipart refused for this account (HTTP 403 forbidden" in text
    assert "no fallback left" in text and "POST /tasks gone (HTTP 404 not_found" in text
    assert "uploads paused for /srv/tasks: upload_method tasks\n  fix: set its " \
           "upload_method to auto and reload" in text
    assert "uploads paused for /srv/multipart: upload_method multipart" in text
    assert "/srv/auto:" not in text and "2 file(s) wait in the inbox" in text
