"""Naming rules: which paths are candidates, and the rule that excludes the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcherd.config import parse_config
from watcherd.intake.filters import ignore_reason


def folder(recursive: bool = False):
    raw = {"folders": [{"path": "/drop", "index_id": "idx", "recursive": recursive}]}
    return parse_config(raw, base_dir=Path("/"), env={}).folders[0]


@pytest.mark.parametrize("name", ["clip.mp4", "CLIP.MOV", "a.b.mkv", "x.m2ts", "y.MpEg",
                                  "z.3gp", "Ünïcode видео.mp4"])
def test_video_names_are_candidates(name):
    assert ignore_reason(Path("/drop") / name, folder()) is None


@pytest.mark.parametrize("name, rule", [
    ("clip.mp4.part", "partial download name (.part)"),
    ("clip.mp4.crdownload", "partial download name (.crdownload)"),
    ("clip.MP4.PARTIAL", "partial download name (.partial)"),
    ("~syncthing~clip.mp4.tmp", "partial download name (.tmp)"),
    ("clip.mp4.filepart", "partial download name (.filepart)"),
    ("clip.temp", "partial download name (.temp)"),
    ("clip.download", "partial download name (.download)"),
    (".clip.mp4", "hidden name (.clip.mp4)"),
    ("._clip.mp4", "hidden name (._clip.mp4)"),
    ("~$clip.mp4", "temporary name (~$ owner file)"),
    ("clip.mp4~", "temporary name (ends with ~)"),
    ("notes.txt", "not a video extension (.txt)"),
    ("README", "not a video extension (no suffix)"),
])
def test_partial_hidden_and_other_names_are_ignored_by_a_named_rule(name, rule):
    assert ignore_reason(Path("/drop") / name, folder()) == rule


def test_done_and_failed_dirs_are_never_candidates_even_when_recursive():
    f = folder(recursive=True)
    assert ignore_reason("/drop/done/clip.mp4", f).startswith("inside done_dir")
    assert ignore_reason("/drop/failed/x/clip.mp4", f).startswith("inside failed_dir")
    assert ignore_reason("/drop/sub/clip.mp4", f) is None
    assert ignore_reason("/drop/.hidden/clip.mp4", f) == "hidden name (.hidden)"


def test_subfolders_are_ignored_unless_recursive():
    assert ignore_reason("/drop/sub/clip.mp4", folder()) == \
        "in a subfolder and the folder is not recursive"
    assert ignore_reason("/elsewhere/clip.mp4", folder()).startswith("outside")
