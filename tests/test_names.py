"""Names: exact bytes in the database, escaped for people, bounded by NAME_MAX on disk."""

from __future__ import annotations

import errno
import json
import os
import queue
import sqlite3

import pytest

import watcherd.ingest.mover as mover
import watcherd.state.queries as queries
from tests.conftest import FakeClock
from watcherd.config import parse_config
from watcherd.ingest.finalizer import Finalizer
from watcherd.ingest.mover import TEMP_PREFIX, free_target, write_sidecar
from watcherd.names import NAME_MAX, api_filename, display, fit_name, name_bytes, temp_name
from watcherd.state.states import State
from watcherd.state.store import Store

LATIN1 = os.fsdecode(b"/in/caf\xe9.mp4")


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "state.db").open()
    yield s
    s.close()


def test_a_path_that_is_not_utf8_round_trips_through_the_database(store, tmp_path):
    record = store.add(path=LATIN1, folder="/in", index_id="idx",
                       detail=f"found {LATIN1} by scan")
    assert store.active_by_path(LATIN1).id == record.id
    assert store.get(record.id).path == LATIN1
    store.transition(record.id, State.FINALIZING, f"moving {LATIN1}", outcome="ready",
                     dest_path=LATIN1.replace("/in/", "/in/done/"))
    assert store.get(record.id).dest_path == os.fsdecode(b"/in/done/caf\xe9.mp4")
    assert [r.id for r in queries.records_for_path(store, LATIN1)] == [record.id]
    # The exact bytes are stored; a UTF-8 name that looks alike is another file.
    assert store.active_by_path("/in/café.mp4") is None
    raw = sqlite3.connect(tmp_path / "state.db").execute("SELECT path FROM files").fetchone()
    assert raw[0] == b"/in/caf\xe9.mp4"
    assert store.history(record.id)[-1]["detail"] == "moving /in/caf\\xe9.mp4"


def test_display_escapes_only_what_is_not_utf8():
    assert display(LATIN1) == "/in/caf\\xe9.mp4"
    assert display("/in/café 🎬.mp4") == "/in/café 🎬.mp4"
    assert api_filename(LATIN1) == "caf\ufffd.mp4"
    json.dumps(display(LATIN1), ensure_ascii=False).encode("utf-8")  # valid UTF-8


@pytest.mark.parametrize("name", ["a" * 250 + ".mp4", "é" * 126 + ".mov",
                                  os.fsdecode(b"\xff" * 251 + b".mp4"), "🎬" * 63 + ".mp4"])
def test_fit_name_keeps_the_extension_and_room_for_the_sidecar(name):
    fitted = fit_name(name)
    assert name_bytes(fitted) <= NAME_MAX - len(".json")
    assert fitted.endswith("…" + name[-4:]) and fitted != name
    collided = fit_name(name, "-12")
    assert name_bytes(collided) <= NAME_MAX - len(".json") and collided.endswith("…-12" +
                                                                                 name[-4:])
    fitted.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")


def test_a_name_that_fits_is_left_alone():
    assert fit_name("clip.mp4") == "clip.mp4" and fit_name("clip.mp4", "-1") == "clip-1.mp4"
    assert fit_name("v" * 246 + ".mp4") == "v" * 246 + ".mp4"


def test_temp_names_never_exceed_name_max_and_stale_ones_are_found(tmp_path):
    target = "x" * 246 + ".mp4.json"  # a sidecar name of exactly NAME_MAX bytes
    temp = temp_name(TEMP_PREFIX, target)
    assert name_bytes(temp) <= NAME_MAX and temp.startswith(TEMP_PREFIX)
    stale = tmp_path / temp.replace(f"{TEMP_PREFIX}{os.getpid()}-", f"{TEMP_PREFIX}1-")
    stale.write_text("{")
    other = tmp_path / temp_name(TEMP_PREFIX, "y" + target[1:])
    other.write_text("{")
    moved = tmp_path / target[:-5]
    moved.write_bytes(b"v")
    sidecar = write_sidecar(moved, {"status": "ready"})
    assert sidecar.name == target and not stale.exists() and other.exists()


def test_free_target_shortens_collision_names_of_long_files(tmp_path):
    name = "z" * 249 + ".mp4"
    first = free_target(tmp_path, name)
    first.write_bytes(b"1")
    second = free_target(tmp_path, name)
    assert second.name == "z" * 241 + "…-1.mp4" and name_bytes(second.name + ".json") <= 255


@pytest.fixture
def rig(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    config = parse_config({"folders": [{"path": str(inbox), "index_id": "idx"}]},
                          base_dir=tmp_path, env={})
    store = Store(tmp_path / "state.db").open()
    work: queue.SimpleQueue[int] = queue.SimpleQueue()
    finalizer = Finalizer(config=config, store=store, work=work, clock=FakeClock())
    source = inbox / "clip.mp4"
    source.write_bytes(b"video bytes")
    record = store.add(path=str(source), folder=str(inbox), index_id="idx",
                       state=State.FINALIZING, outcome="ready", task_id="t1", video_id="v1")
    yield finalizer, store, work, record.id, source
    store.close()


@pytest.mark.parametrize("code", [errno.ENAMETOOLONG, errno.EINVAL])
def test_a_name_the_filesystem_refuses_is_reported_once_and_not_retried(rig, monkeypatch,
                                                                        caplog, code):
    finalizer, store, work, file_id, source = rig

    def refuse(*_args, **_kwargs):
        raise OSError(code, os.strerror(code), "done/clip.mp4")

    monkeypatch.setattr(mover.os, "link", refuse)
    work.put(file_id)
    finalizer.step()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "Retrying cannot help" in errors[0].getMessage()
    assert "nothing is lost" not in caplog.text and errno.errorcode[code] in caplog.text
    assert finalizer._later == [] and work.empty()  # parked, not retried with backoff
    assert store.get(file_id).state == State.FINALIZING and source.exists()
    assert "retrying cannot help" in store.history(file_id)[-1]["detail"]
