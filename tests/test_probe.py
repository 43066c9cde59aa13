"""probe(): media facts from real (tiny, generated) files."""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import av
import pytest

from watcherd.media.probe import MediaFacts, ProbeFailed, probe
from watcherd.simulator.clips import standard_clips


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    return standard_clips(tmp_path_factory.getbasetemp() / "standard-clips")


def test_valid_clip_with_audio(clips):
    facts = probe(clips["ok"])
    assert (facts.width, facts.height) == (640, 360)
    assert (facts.display_width, facts.display_height) == (640, 360)
    assert facts.rotation == 0
    assert facts.video_codec == "h264" and "mp4" in facts.container
    assert facts.has_audio and facts.audio_codec == "aac"
    # AAC pads to whole 1024-sample frames: 5 s of audio reports 5.12 s.
    assert 5.0 <= facts.duration_seconds < 5.2
    assert facts.size_bytes == os.stat(clips["ok"]).st_size
    assert 0 < facts.index_end_bytes <= facts.size_bytes


def test_valid_clip_without_audio(clips):
    facts = probe(clips["noaudio"])
    assert not facts.has_audio and facts.audio_codec is None
    assert facts.duration_seconds == pytest.approx(5.0, abs=0.01)


@pytest.mark.parametrize("name, rotation", [("portrait", 90), ("portrait270", 270)])
def test_rotation_swaps_display_dimensions(clips, name, rotation):
    facts = probe(clips[name])
    assert facts.rotation == rotation
    assert (facts.width, facts.height) == (640, 360)  # coded size is untouched
    assert (facts.display_width, facts.display_height) == (360, 640)


@pytest.mark.parametrize("name", ["fast", "mkv"])
def test_other_layouts_and_containers(clips, name):
    facts = probe(clips[name])
    assert (facts.width, facts.height) == (640, 360)
    assert 0 < facts.index_end_bytes <= facts.size_bytes


def test_truncated_faststart_opens_but_index_points_past_the_end(clips):
    facts = probe(clips["truncated_fast"])
    assert facts.index_end_bytes > facts.size_bytes


@pytest.mark.parametrize("name, reason", [
    ("audio_only", "no video stream (only audio or cover art)"),
    ("cover", "no video stream (only audio or cover art)"),
    ("text", "not a media file FFmpeg can read: InvalidDataError"),
    ("truncated_plain", "not a media file FFmpeg can read: InvalidDataError"),
    ("garbled", "no decodable video frame"),
])
def test_unusable_files_raise_probe_failed(clips, name, reason):
    with pytest.raises(ProbeFailed) as caught:
        probe(clips[name])
    assert caught.value.reason.startswith(reason)
    assert str(clips[name]) not in caught.value.reason  # the caller already names the file


def test_cover_art_is_a_real_attached_pic_stream(clips):
    """Guards the test above: the cover clip must really carry the trap it claims to."""
    with av.open(str(clips["cover"])) as container:
        pictures = [s for s in container.streams.video
                    if s.disposition & av.stream.Disposition.attached_pic]
    assert len(pictures) == 1


def test_directory_is_probe_failed(tmp_path):
    with pytest.raises(ProbeFailed, match="IsADirectoryError"):
        probe(tmp_path)


def test_missing_file_propagates_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "gone.mp4")


def test_ffmpeg_prints_nothing_to_stderr(clips, capfd):
    for name in ("text", "truncated_plain", "garbled", "truncated_fast", "cover"):
        try:
            probe(clips[name])
        except ProbeFailed:
            pass
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_as_dict_is_json_ready(clips):
    facts = probe(clips["portrait"])
    data = json.loads(json.dumps(facts.as_dict()))
    assert data["display_width"] == 360 and data["rotation"] == 90
    assert set(data) == set(MediaFacts.__dataclass_fields__)


def test_probe_is_cheap(clips):
    probe(clips["ok"])  # warm the decoder
    times = []
    for _ in range(5):
        started = time.perf_counter()
        probe(clips["ok"])
        times.append(time.perf_counter() - started)
    # ~1 ms measured; the bound only catches an accidental full scan or decode.
    assert statistics.median(times) < 0.05
