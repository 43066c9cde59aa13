"""Moves never overwrite, survive other filesystems, and leave the source on failure."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

import watcherd.ingest.mover as mover
from watcherd.ingest.mover import TEMP_PREFIX, free_target, move_file
from watcherd.ingest.sidecar import write_sidecar


def test_a_taken_name_gets_a_distinct_suffix_and_so_does_its_sidecar(tmp_path):
    done = tmp_path / "done"
    done.mkdir()
    (done / "clip.mp4").write_bytes(b"old")
    (done / "clip-1.mp4.json").write_text("{}")  # sidecar alone also blocks the name
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"new")
    moved = move_file(source, free_target(done, "clip.mp4"))
    assert moved == done / "clip-2.mp4"
    assert (done / "clip.mp4").read_bytes() == b"old" and moved.read_bytes() == b"new"
    assert not source.exists()


def test_move_never_clobbers_a_target_created_after_it_was_chosen(tmp_path):
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"new")
    target = free_target(tmp_path / "done", "clip.mp4")
    target.parent.mkdir()
    target.write_bytes(b"someone else's")
    moved = move_file(source, target)
    assert moved.name == "clip-1.mp4" and target.read_bytes() == b"someone else's"


def test_cross_filesystem_move_copies_then_removes_the_source(tmp_path, monkeypatch):
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"v" * 3_000_000)
    real_link = os.link

    def link(src, dst, **kw):
        if str(src) == str(source):  # the first, direct attempt crosses devices
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_link(src, dst, **kw)

    monkeypatch.setattr(mover.os, "link", link)
    moved = move_file(source, tmp_path / "done" / "clip.mp4")
    assert moved.read_bytes() == b"v" * 3_000_000 and not source.exists()
    assert [p.name for p in moved.parent.iterdir()] == ["clip.mp4"]  # no temp left


def test_real_cross_device_move_when_dev_shm_is_another_filesystem(tmp_path):
    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem here")
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"abc")
    target_dir = os.path.join(shm, f"watcherd-test-{os.getpid()}")
    try:
        moved = move_file(source, free_target(Path(target_dir), "clip.mp4"))
        assert moved.read_bytes() == b"abc" and not source.exists()
    finally:
        shutil.rmtree(target_dir, ignore_errors=True)


def test_disk_full_during_copy_keeps_the_source_and_leaves_no_temp(tmp_path, monkeypatch):
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"v" * 100)
    monkeypatch.setattr(mover.os, "link",
                        lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EXDEV, "x")))

    def full(src, dst):
        dst.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mover, "copy_data", full)
    with pytest.raises(OSError) as caught:
        move_file(source, tmp_path / "done" / "clip.mp4")
    assert caught.value.errno == errno.ENOSPC
    assert source.read_bytes() == b"v" * 100
    assert list((tmp_path / "done").iterdir()) == []


def test_sidecar_is_written_atomically_next_to_the_moved_file(tmp_path):
    moved = tmp_path / "clip.mp4"
    moved.write_bytes(b"x")
    sidecar = write_sidecar(moved, {"status": "ready", "name": "видео"})
    assert sidecar.name == "clip.mp4.json"
    assert json.loads(sidecar.read_text()) == {"status": "ready", "name": "видео"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip.mp4.json"]


def test_a_partial_copy_left_by_a_killed_run_is_cleaned_up(tmp_path, monkeypatch):
    done = tmp_path / "done"
    done.mkdir()
    stale = done / ".watcherd-tmp-12345-clip.mp4"
    stale.write_bytes(b"half")
    source = tmp_path / "clip.mp4"
    source.write_bytes(b"whole")
    real_link = os.link

    def link(src, dst, **kw):
        if str(src) == str(source):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_link(src, dst, **kw)

    monkeypatch.setattr(mover.os, "link", link)
    moved = move_file(source, done / "clip.mp4")
    assert sorted(p.name for p in done.iterdir()) == ["clip.mp4"]
    assert moved.read_bytes() == b"whole"


def test_stale_temp_cleanup_treats_bracketed_names_literally(tmp_path):
    done = tmp_path / "done"
    done.mkdir()
    other = done / ".watcherd-tmp-1-take 1.mp4"  # would match the pattern "take [12].mp4"
    other.write_bytes(b"someone else's partial copy")
    stale = done / ".watcherd-tmp-1-take [12].mp4"
    stale.write_bytes(b"ours")
    mover._remove_stale_temps(done / "take [12].mp4")
    assert other.exists() and not stale.exists()


def test_a_sidecar_temp_left_by_a_killed_run_is_cleaned_up(tmp_path):
    moved = tmp_path / "clip.mp4"
    moved.write_bytes(b"v")
    stale = tmp_path / f"{TEMP_PREFIX}99999-clip.mp4.json"  # another pid: a killed run
    stale.write_text("{")
    write_sidecar(moved, {"status": "ready"})
    assert not stale.exists() and sorted(p.name for p in tmp_path.iterdir()) == \
        ["clip.mp4", "clip.mp4.json"]
