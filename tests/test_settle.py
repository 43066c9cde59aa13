"""The completeness gate, stepped with a fake clock: nothing partial gets through."""

from __future__ import annotations

import os
import queue
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from watcherd.config import parse_config
from watcherd.intake.settle import PIPELINE_VIEW_SECONDS, Hint, ScanBatch, Settler
from watcherd.state.states import State
from watcherd.state.store import Store


@pytest.fixture
def rig(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "done").mkdir(parents=True)  # as preflight leaves it: a folder in reach
    config = parse_config({"settle_seconds": 5, "folders": [{"path": str(inbox),
                                                             "index_id": "idx"}]},
                          base_dir=tmp_path, env={})
    store = Store(tmp_path / "state.db").open()
    released: list[int] = []
    clock = FakeClock()
    settler = Settler(config=config, store=store, intake=queue.SimpleQueue(),
                      release=released.append, clock=clock)
    yield settler, inbox, released, clock, store
    store.close()


def test_file_is_released_only_after_settle_seconds_of_quiet(rig):
    settler, inbox, released, clock, store = rig
    clip = inbox / "clip.mp4"
    clip.write_bytes(b"x" * 100)
    settler.offer(Hint(str(clip), "event"))
    for _ in range(4):  # 4 s of quiet: not yet
        clock.now += 1
        settler.tick()
    assert released == []
    clock.now += 1.01
    settler.tick()
    assert len(released) == 1
    record = store.get(released[0])
    assert (record.state, record.size) == (State.QUEUED, 100)


def test_a_writer_pausing_shorter_than_settle_never_gets_released(rig):
    settler, inbox, released, clock, store = rig
    clip = inbox / "slow.mp4"
    clip.write_bytes(b"a")
    settler.offer(Hint(str(clip), "scan"))
    for _ in range(20):  # appends every 4.9 s: never quiet for 5 s
        clock.now += 4.9
        settler.tick()
        with clip.open("ab") as fh:
            fh.write(b"b")
        # mtime granularity can hide a write; the size changes regardless.
        settler.tick()
    assert released == []
    clock.now += 5.1
    settler.tick()
    assert len(released) == 1 and store.get(released[0]).size == 21


def test_an_event_restarts_the_quiet_period(rig):
    settler, inbox, released, clock, _ = rig
    clip = inbox / "clip.mp4"
    clip.write_bytes(b"x")
    settler.offer(Hint(str(clip), "event"))
    clock.now += 4
    settler.offer(Hint(str(clip), "event"))  # e.g. a write that kept size and mtime
    clock.now += 4
    settler.tick()
    assert released == []
    clock.now += 1.5
    settler.tick()
    assert len(released) == 1


def test_ignored_names_and_directories_are_left_alone(rig):
    settler, inbox, released, clock, store = rig
    for name in ("clip.mp4.part", ".hidden.mp4", "notes.txt"):
        (inbox / name).write_bytes(b"x")
        settler.offer(Hint(str(inbox / name), "scan"))
    (inbox / "dir.mp4").mkdir()
    settler.offer(Hint(str(inbox / "dir.mp4"), "scan"))
    os.symlink(inbox / "notes.txt", inbox / "link.mp4")
    settler.offer(Hint(str(inbox / "link.mp4"), "scan"))
    clock.now += 10
    settler.tick()
    assert released == [] and store.all() == []


def test_a_file_deleted_while_settling_ends_as_vanished(rig):
    settler, inbox, released, clock, store = rig
    clip = inbox / "gone.mp4"
    clip.write_bytes(b"x")
    settler.offer(Hint(str(clip), "event"))
    clip.unlink()
    clock.now += 1
    settler.tick()
    assert released == [] and store.all()[0].state == State.VANISHED


def test_a_file_already_in_the_pipeline_is_not_taken_twice(rig):
    settler, inbox, released, clock, store = rig
    clip = inbox / "clip.mp4"
    clip.write_bytes(b"x")
    record = store.add(path=str(clip), folder=str(inbox), index_id="idx",
                       state=State.INDEXING)
    settler.offer(Hint(str(clip), "scan"))
    clock.now += 10
    settler.tick()
    assert released == [] and store.get(record.id).state == State.INDEXING


def test_step_drains_hints_from_the_intake_queue(rig):
    settler, inbox, _, clock, _ = rig
    clip = inbox / "clip.mp4"
    clip.write_bytes(b"x")
    settler.intake.put(Hint(str(clip), "event"))
    settler.tick_seconds = 0.01
    clock.now += 0  # the fake clock does not advance on its own: step must still return
    settler.intake.put(Hint(str(Path(clip)), "event"))
    settler.step()
    assert str(clip) in settler.candidates


def test_a_settling_row_whose_file_is_gone_at_restart_ends_as_vanished(rig):
    settler, inbox, _, _, store = rig
    record = store.add(path=str(inbox / "was-here.mp4"), folder=str(inbox), index_id="idx")
    settler.offer(Hint(record.path, "recovery"))
    assert store.get(record.id).state == State.VANISHED


def test_files_of_a_folder_that_went_away_stay_tracked_until_it_returns(rig, tmp_path):
    """An unmounted share looks like an empty or missing folder, not like deleted files."""
    settler, inbox, released, clock, store = rig
    clip = inbox / "on-share.mp4"
    clip.write_bytes(b"x" * 10)
    settler.offer(Hint(str(clip), "event"))
    aside = tmp_path / "unmounted"
    inbox.rename(aside)
    for _ in range(10):
        clock.now += 1
        settler.tick()
    settler.offer(Hint(str(clip), "recovery"))
    assert released == [] and store.all()[0].state == State.SETTLING
    aside.rename(inbox)
    clock.now += 1
    settler.tick()
    clock.now += 5.1
    settler.tick()
    assert released == [store.all()[0].id]


def _statements(store: Store) -> list[str]:
    """Every SQL statement this thread's connection runs from now on."""
    seen: list[str] = []
    store._conn().set_trace_callback(seen.append)
    return seen


def test_a_rescan_of_tracked_files_is_answered_without_a_query_per_file(rig):
    settler, inbox, released, _, store = rig
    for n in range(100):
        clip = inbox / f"tracked-{n:03d}.mp4"
        clip.write_bytes(b"x")
        store.add(path=str(clip), folder=str(inbox), index_id="idx", state=State.UPLOADING)
    statements = _statements(store)
    for n in range(100):
        settler.intake.put(Hint(str(inbox / f"tracked-{n:03d}.mp4"), "scan"))
    settler.tick_seconds = 0.01
    settler.step()
    assert settler.intake.empty() and settler.candidates == {} and released == []
    assert len(store.all()) == 100
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) <= 2, \
        statements[:10]


def test_a_row_that_finished_with_its_file_left_in_place_is_still_found_again(rig):
    """The in-memory view of the pipeline is at most PIPELINE_VIEW_SECONDS old."""
    settler, inbox, _, clock, store = rig
    clip = inbox / "left.mp4"
    clip.write_bytes(b"x")
    old = store.add(path=str(clip), folder=str(inbox), index_id="idx", state=State.UPLOADING)
    settler.offer(Hint(str(clip), "scan"))
    assert settler.candidates == {}
    store.transition(old.id, State.FAILED, "gave up", finished_at=store.clock())
    clock.now += PIPELINE_VIEW_SECONDS
    settler.offer(Hint(str(clip), "scan"))
    assert str(clip) in settler.candidates
    assert settler.candidates[str(clip)].file_id != old.id


def test_the_new_rows_of_a_burst_of_hints_share_one_commit(rig):
    settler, inbox, _, _, store = rig
    for n in range(150):
        (inbox / f"new-{n:03d}.mp4").write_bytes(b"x")
        settler.intake.put(Hint(str(inbox / f"new-{n:03d}.mp4"), "scan"))
    statements = _statements(store)
    settler.tick_seconds = 0.01
    settler.step()
    assert len(settler.candidates) == 150 == len(store.all())
    assert statements.count("COMMIT") <= 2, f"{statements.count('COMMIT')} commits"


def test_while_hints_wait_a_tick_releases_for_a_bounded_time_then_catches_up(rig, monkeypatch):
    settler, inbox, released, clock, store = rig
    monkeypatch.setattr("watcherd.intake.settle.RELEASE_BUDGET_SECONDS", 0.0)
    for n in range(5):
        (inbox / f"due-{n}.mp4").write_bytes(b"x")
        settler.offer(Hint(str(inbox / f"due-{n}.mp4"), "scan"))
    clock.now += 6
    settler.intake.put(Hint(str(inbox / "waiting.mp4"), "event"))  # discovery is busy
    settler.tick()
    assert len(released) == 1  # at least one per tick, never starved
    assert all(store.get(i).state == State.QUEUED for i in released)
    settler.intake.get_nowait()  # the queue is drained: no more holding back
    settler.tick()
    assert len(released) == 5


def test_hints_taken_with_one_that_crashes_the_settler_are_put_back(rig, monkeypatch):
    settler, inbox, _, _, _ = rig
    batch = ScanBatch()
    for name in ("a.mp4", "boom.mp4", "c.mp4"):
        (inbox / name).write_bytes(b"x")
        batch.add()
        settler.intake.put(Hint(str(inbox / name), "scan", batch))
    batch.walked()
    real_offer = settler.offer

    def offer(hint):
        if hint.path.endswith("boom.mp4"):
            raise RuntimeError("settler bug")
        real_offer(hint)

    monkeypatch.setattr(settler, "offer", offer)
    settler.tick_seconds = 0.01
    with pytest.raises(RuntimeError):
        settler.step()
    assert [settler.intake.get_nowait().path] == [str(inbox / "c.mp4")]
    assert not batch.finished  # c.mp4 is still to be offered


def test_a_file_another_host_claimed_is_held_until_it_goes_or_changes(rig):
    """Several hosts: held, never released again while unchanged; forgotten when its owner
    moves it; released when it changes (a new file) or when our pipeline hands it back."""
    settler, inbox, released, clock, store = rig
    held, changed, handed_back = (inbox / f"{n}.mp4" for n in ("held", "changed", "back"))
    for clip in (held, changed, handed_back):
        clip.write_bytes(b"x" * 10)
        store.add(path=str(clip), folder=str(inbox), index_id="idx", state=State.SETTLING)
        settler.offer(Hint(str(clip), "elsewhere"))
    clock.now += 60
    settler.tick()
    assert released == []
    changed.write_bytes(b"y" * 20)
    settler.offer(Hint(str(handed_back), "recovery"))  # e.g. taken over, then put back
    for _ in range(2):
        clock.now += 6
        settler.tick()
    assert sorted(store.get(i).path for i in released) == sorted([str(changed),
                                                                 str(handed_back)])
    held_id = store.active_by_path(str(held)).id
    held.unlink()  # its owner moved it: the row was never ours
    clock.now += 1
    settler.tick()
    assert held_id not in {r.id for r in store.all()}
