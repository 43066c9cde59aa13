"""check_file(): every rule's verdict, in order, against the per-model limits."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import av
import pytest

from watcherd.errors import MediaRejected
from watcherd.media.limits import MULTIPART_UPLOAD, TASKS_UPLOAD
from watcherd.media.profiles import PROFILES
from watcherd.media.validate import RULES, Report, check_file, raise_if_rejected
from watcherd.simulator.clips import make_video, standard_clips

MARENGO = PROFILES["marengo3.0"].limits
MARENGO_2_7 = PROFILES["marengo2.7"].limits


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    return standard_clips(tmp_path_factory.getbasetemp() / "standard-clips")


def check(path, limits=MARENGO, *, require_audio: bool = False) -> Report:
    return check_file(path, limits, require_audio=require_audio)


def statuses(report: Report) -> dict[str, str]:
    return {v.rule: v.status for v in report.verdicts}


def verdict(report: Report, rule: str):
    return next(v for v in report.verdicts if v.rule == rule)


@pytest.fixture
def no_pyav(monkeypatch):
    """Any attempt to open a file with PyAV fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("PyAV must not open this file")
    monkeypatch.setattr(av, "open", refuse)


def test_valid_clip_passes_every_rule_in_order(clips):
    report = check(clips["ok"])
    assert tuple(v.rule for v in report.verdicts) == RULES
    assert statuses(report) == {"size": "pass", "decodable": "pass", "complete": "pass",
                                "resolution": "pass", "aspect_ratio": "pass", "duration": "pass",
                                "audio": "skip"}
    assert report.accepted and report.first_failure is None
    assert report.facts is not None and report.facts.width == 640
    assert verdict(report, "resolution").measured == "640x360"
    assert verdict(report, "duration").measured == "5.12 s"
    raise_if_rejected(report)  # no-op


def test_audio_not_required_is_skipped_but_says_what_exists(clips):
    assert verdict(check(clips["noaudio"]), "audio").measured == "no audio stream"
    assert verdict(check(clips["ok"]), "audio").measured == "audio (aac)"


def test_audio_required(clips):
    assert check(clips["ok"], require_audio=True).accepted
    report = check(clips["noaudio"], require_audio=True)
    assert report.first_failure.rule == "audio"
    assert "audio" in report.first_failure.reason


def test_small_resolution_fails(clips):
    failure = check(clips["small"]).first_failure
    assert failure.rule == "resolution" and failure.measured == "320x240"
    assert failure.reason == ("resolution 320x240: short side 240 is below the minimum of 360 "
                              "(limits.min_short_side)")


def test_rotated_portrait_uses_display_dimensions_and_passes(clips):
    report = check(clips["portrait"])
    assert report.accepted
    assert verdict(report, "resolution").measured == "360x640 (rotated 90°)"


def test_too_wide_fails_on_long_side(clips):
    failure = check(clips["wide"], MARENGO_2_7).first_failure
    assert failure.rule == "resolution" and "long side 4000" in failure.reason


def test_short_side_above_maximum_fails(clips):
    failure = check(clips["ok"], replace(MARENGO, max_short_side=300)).first_failure
    assert failure.rule == "resolution" and "short side 360 exceeds" in failure.reason


def test_too_short_for_marengo(clips):
    failure = check(clips["short"]).first_failure
    assert failure.rule == "duration" and failure.measured == "3.07 s"
    assert failure.reason == ("duration 3.07 s is below the minimum of 4 s "
                              "(limits.min_duration_seconds)")


def test_four_and_a_half_seconds_passes_marengo_but_not_a_raised_minimum(clips):
    assert check(clips["mid"], MARENGO).accepted
    failure = check(clips["mid"], replace(MARENGO, min_duration_seconds=5)).first_failure
    assert failure.rule == "duration" and "minimum of 5 s" in failure.reason


def test_too_long_via_override(clips):
    failure = check(clips["ok"], replace(MARENGO, max_duration_seconds=2)).first_failure
    assert failure.rule == "duration"
    assert failure.reason == ("duration 5.12 s exceeds the maximum of 2 s "
                              "(limits.max_duration_seconds)")


@pytest.mark.parametrize("minimum, accepted", [(5.2, True), (5.3, False)])
def test_duration_tolerance(clips, minimum, accepted):
    # 5.12 s against a minimum of 5.2 s is inside the 0.1 s slack; 5.3 s is not.
    assert check(clips["ok"], replace(MARENGO, min_duration_seconds=minimum)).accepted == accepted


@pytest.mark.parametrize("name", ["audio_only", "cover", "text", "truncated_plain", "garbled"])
def test_undecodable_fails_and_skips_the_rest(clips, name):
    report = check(clips[name], require_audio=True)
    assert report.facts is None
    assert statuses(report) == {"size": "pass", "decodable": "fail", "complete": "skip",
                                "resolution": "skip", "aspect_ratio": "skip", "duration": "skip",
                                "audio": "skip"}
    assert report.first_failure.reason.startswith("not decodable: ")


def test_truncated_faststart_fails_complete(clips):
    report = check(clips["truncated_fast"])
    failure = report.first_failure
    size = clips["truncated_fast"].stat().st_size
    assert failure.rule == "complete"
    assert failure.reason == (f"truncated: the index points to byte {report.facts.index_end_bytes}"
                              f" but the file has {size} bytes")
    assert check(clips["fast"]).accepted  # the uncut original is fine


def test_empty_file_fails_size_without_pyav(clips, no_pyav):
    report = check(clips["empty"])
    assert statuses(report) == {"size": "fail", "decodable": "skip", "complete": "skip",
                                "resolution": "skip", "aspect_ratio": "skip", "duration": "skip",
                                "audio": "skip"}
    assert report.first_failure.reason == "the file is empty (0 bytes)"
    assert report.first_failure.measured == "0 bytes" and report.facts is None


def test_oversize_fails_size_without_pyav(clips, no_pyav):
    report = check(clips["ok"], replace(MARENGO, max_size_bytes=1000))
    assert report.first_failure.rule == "size" and report.facts is None
    assert "limits.max_size_bytes)" in report.first_failure.reason
    assert all(v.status == "skip" for v in report.verdicts[1:])


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        check(tmp_path / "vanished.mp4")


@pytest.mark.parametrize("name, overrides, key", [
    ("ok", {"max_size_bytes": 1000}, "limits.max_size_bytes"),
    ("small", {}, "limits.min_short_side"),
    ("wide", {"max_long_side": 3840}, "limits.max_long_side"),
    ("wide", {}, "limits.max_aspect_ratio"),
    ("ok", {"max_short_side": 300}, "limits.max_short_side"),
    ("short", {}, "limits.min_duration_seconds"),
    ("ok", {"max_duration_seconds": 2}, "limits.max_duration_seconds"),
])
def test_each_limit_failure_names_its_key(clips, name, overrides, key):
    failure = check(clips[name], replace(MARENGO, **overrides)).first_failure
    assert key in failure.reason


def test_report_as_dict_is_json_serialisable(clips):
    for report in (check(clips["portrait"]), check(clips["text"]), check(clips["empty"])):
        data = json.loads(json.dumps(report.as_dict()))
        assert [v["rule"] for v in data["verdicts"]] == list(RULES)
        assert data["accepted"] == report.accepted
    data = check(clips["short"]).as_dict()
    assert data["rule"] == "duration" and data["facts"]["duration_seconds"] == 3.072


def test_raise_if_rejected_carries_the_first_failure(clips):
    with pytest.raises(MediaRejected) as caught:  # resolution, aspect, audio all fail
        raise_if_rejected(check(clips["wide"], MARENGO_2_7, require_audio=True))
    assert caught.value.rule == "resolution"
    assert caught.value.measured == "4000x360"
    assert "limits.max_long_side" in caught.value.reason


# -- the profiles' own limits: Marengo 3.0's wider frame and its aspect-ratio rule --------


@pytest.fixture(scope="module")
def shaped(tmp_path_factory) -> dict[str, Path]:
    """Clips whose shape alone decides: a few frames each, no audio."""
    d = tmp_path_factory.mktemp("shaped")
    few = {"seconds": 5, "fps": 1, "audio": False}
    return {
        "ultrawide": make_video(d / "ultrawide.mp4", width=5184, height=2160, **few),
        "ultratall": make_video(d / "ultratall.mp4", width=5184, height=2160, rotation=90, **few),
        "panorama": make_video(d / "panorama.mp4", width=900, height=360, **few),  # 2.5:1
        "tall_panorama": make_video(d / "tall.mp4", width=900, height=360, rotation=90, **few),
        "edge": make_video(d / "edge.mp4", width=864, height=360, **few),  # exactly 2.4:1
        "cinema": make_video(d / "cinema.mp4", width=1920, height=900, **few),  # 2.13:1
    }


@pytest.mark.parametrize("name, shown", [("ultrawide", "5184x2160"),
                                         ("ultratall", "2160x5184 (rotated 90°)")])
def test_5184x2160_passes_marengo_3_0_in_either_orientation_but_not_2_7(shaped, name, shown):
    report = check(shaped[name], MARENGO)
    assert report.accepted, report.first_failure
    assert verdict(report, "resolution").measured == shown
    assert verdict(report, "aspect_ratio").status == "pass"
    failure = check(shaped[name], MARENGO_2_7).first_failure
    assert failure.rule == "resolution" and "long side 5184 exceeds the maximum of 3840" \
        in failure.reason


@pytest.mark.parametrize("name, shape", [("panorama", "wide, 900x360"),
                                         ("tall_panorama", "tall, 360x900")])
def test_a_panorama_beyond_2_4_to_1_fails_the_aspect_rule_rotated_or_not(shaped, name, shape):
    report = check(shaped[name], MARENGO)
    failure = report.first_failure
    assert failure.rule == "aspect_ratio" and failure.measured == f"2.50:1 ({shape})"
    assert failure.reason.endswith("is 2.50:1 (" + shape.split(",")[0] + "), beyond the "
                                   "maximum of 2.4:1 (limits.max_aspect_ratio)")
    assert verdict(report, "resolution").status == "pass"  # the frame size itself is fine
    # A folder may loosen it like any other limit.
    assert check(shaped[name], replace(MARENGO, max_aspect_ratio=2.5)).accepted


def test_exactly_2_4_to_1_passes_and_2_7_keeps_its_narrower_ratios(shaped):
    assert check(shaped["edge"], MARENGO).accepted
    assert check(shaped["cinema"], MARENGO).accepted
    failure = check(shaped["cinema"], MARENGO_2_7).first_failure
    assert failure.rule == "aspect_ratio" and "maximum of 1.89:1" in failure.reason


def sparse(path: Path, size: int) -> Path:
    """A file of ``size`` bytes that takes no disk space (only ``size`` is looked at)."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def test_a_file_marengo_3_0_takes_but_post_tasks_cannot_names_the_path_and_the_way_out(
        tmp_path, no_pyav):
    three_gib = sparse(tmp_path / "lecture.mp4", 3 * 1024**3)
    failure = check_file(three_gib, MARENGO, require_audio=False, upload=TASKS_UPLOAD,
                         model="Marengo 3.0").first_failure
    assert failure.rule == "size" and failure.measured == "3.0 GiB"
    assert "is larger than the 2.0 GiB limit of POST /tasks" in failure.reason
    assert "the Marengo 3.0 limit is 4.0 GiB" in failure.reason
    assert "to lift it: set the folder's upload_method to auto or multipart" in failure.reason
    assert failure.expected == "1 byte – 2.0 GiB (POST /tasks; the Marengo 3.0 limit is 4.0 GiB)"


def test_the_model_cap_below_the_path_cap_is_named_as_the_models(tmp_path, no_pyav):
    five_gib = sparse(tmp_path / "huge.mp4", 5 * 1024**3)
    failure = check_file(five_gib, MARENGO, require_audio=False, upload=MULTIPART_UPLOAD,
                         model="Marengo 3.0").first_failure
    assert "is larger than the 4.0 GiB Marengo 3.0 limit" in failure.reason
    assert "(4294967296 bytes, limits.max_size_bytes)" in failure.reason
    assert "POST" not in failure.reason and "multipart" not in failure.reason
    # Through /tasks, a file too big for both is refused by the smaller cap: the path's.
    assert "limit of POST /tasks" in check_file(five_gib, MARENGO, require_audio=False,
                                                upload=TASKS_UPLOAD).first_failure.reason


def test_a_folder_limit_above_the_multipart_cap_is_refused_by_the_path(tmp_path, no_pyav):
    eleven_gib = sparse(tmp_path / "long.mp4", 11 * 1024**3)
    roomy = replace(MARENGO, max_size_bytes=20 * 1024**3)
    failure = check_file(eleven_gib, roomy, require_audio=False).first_failure
    assert "larger than the 10.0 GiB limit of the multipart upload" in failure.reason
    assert "the profile limit is 20.0 GiB" in failure.reason


def test_a_folder_validates_with_the_cap_of_its_upload_method(tmp_path):
    from watcherd.config import FolderConfig
    from watcherd.media import profiles
    from watcherd.media.validate import check_for_folder

    three_gib = sparse(tmp_path / "lecture.mp4", 3 * 1024**3)
    folder = FolderConfig(path=tmp_path, index_id="idx", profile=profiles.pinned("marengo3.0"))
    on_tasks = replace(folder, upload_method="tasks")
    assert verdict(check_for_folder(three_gib, folder), "size").status == "pass"
    assert "limit of POST /tasks" in check_for_folder(three_gib, on_tasks).first_failure.reason
    own = replace(folder, limits=(("max_size_bytes", 1024**3),),
                              profile=profiles.pinned("marengo3.0",
                                                      (("max_size_bytes", 1024**3),)))
    assert "larger than the 1.0 GiB folder's own limit" in \
        check_for_folder(three_gib, own).first_failure.reason


def test_the_upload_path_cap_is_the_callers_to_lift(tmp_path):
    from watcherd.media.limits import UploadPath

    three_gib = sparse(tmp_path / "lecture.mp4", 3 * 1024**3)
    roomy = UploadPath("multipart", 10 * 1024**3, "-")
    assert verdict(check_file(three_gib, MARENGO, require_audio=False, upload=roomy),
                   "size").status == "pass"
