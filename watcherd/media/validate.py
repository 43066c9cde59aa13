"""Check a file against Twelve Labs' limits before spending bandwidth on it.

Rules run in a fixed order and each yields a Verdict. ``size`` needs only
``os.stat``, so a huge file is rejected without FFmpeg ever touching it; when
``decodable`` fails, the rules that need media facts are skipped. ``size``
applies the smaller of the model's cap and the upload path's own (multipart
10 GiB, ``POST /tasks`` 2 GiB), and its reason names which one refused.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from watcherd.errors import MediaRejected
from watcherd.media.limits import MULTIPART_UPLOAD, Limits, UploadPath, upload_path
from watcherd.media.probe import MediaFacts, ProbeFailed, probe
from watcherd.units import human_bytes

if TYPE_CHECKING:
    from watcherd.config import FolderConfig

logger = logging.getLogger(__name__)

PASS, FAIL, SKIP = "pass", "fail", "skip"
RULES = ("size", "decodable", "complete", "resolution", "aspect_ratio", "duration", "audio")


@dataclass(frozen=True)
class Verdict:
    rule: str
    status: str  # "pass" | "fail" | "skip"
    measured: str
    expected: str
    reason: str | None = None  # set when status is "fail"


@dataclass(frozen=True)
class Report:
    path: str
    facts: MediaFacts | None
    verdicts: tuple[Verdict, ...]

    @property
    def accepted(self) -> bool:
        return self.first_failure is None

    @property
    def first_failure(self) -> Verdict | None:
        return next((v for v in self.verdicts if v.status == FAIL), None)

    def as_dict(self) -> dict:
        failure = self.first_failure
        return {
            "path": self.path,
            "accepted": self.accepted,
            "rule": failure.rule if failure else None,
            "reason": failure.reason if failure else None,
            "facts": self.facts.as_dict() if self.facts else None,
            "verdicts": [asdict(v) for v in self.verdicts],
        }


def check_file(path: str | os.PathLike, limits: Limits, *, require_audio: bool,
               upload: UploadPath = MULTIPART_UPLOAD, model: str | None = None) -> Report:
    """Every rule's verdict for ``path``; FileNotFoundError propagates.

    ``upload``: the path the file would take (``limits.upload_path``); ``model``: whose
    ``max_size_bytes`` ``limits`` holds, as a refusal names it ("Marengo 3.0").
    """
    size = os.stat(path).st_size
    verdicts = [_size(size, limits, upload, model or "profile")]
    facts = None
    if verdicts[0].status == PASS:
        try:
            facts = probe(path)
            verdicts.append(Verdict("decodable", PASS, f"{facts.video_codec} in {facts.container}",
                                    _EXPECT_DECODABLE))
        except ProbeFailed as exc:
            verdicts.append(Verdict("decodable", FAIL, "unreadable", _EXPECT_DECODABLE,
                                    f"not decodable: {exc.reason}"))
    if facts is not None:
        verdicts += [_complete(facts), _resolution(facts, limits), _aspect_ratio(facts, limits),
                     _duration(facts, limits), _audio(facts, require_audio)]
    else:
        failed = verdicts[-1].rule
        verdicts += [_skipped(rule, failed, limits, require_audio)
                     for rule in RULES[len(verdicts):]]
    report = Report(os.fspath(path), facts, tuple(verdicts))
    _log(report)
    return report


def check_for_folder(path: str | os.PathLike, folder: FolderConfig) -> Report:
    """``check_file`` with what a folder validates with: its profile, its audio rule, the
    path its ``upload_method`` takes, and whose size limit applies."""
    own = any(key == "max_size_bytes" for key, _ in folder.limits)
    return check_file(path, folder.profile.limits, require_audio=folder.require_audio,
                      upload=upload_path(folder.upload_method),
                      model="folder's own" if own else folder.profile.title())


def raise_if_rejected(report: Report) -> None:
    """MediaRejected for the first failing rule, if any."""
    failure = report.first_failure
    if failure is not None:
        raise MediaRejected(failure.rule, failure.reason or failure.rule, failure.measured)


# -- rules -----------------------------------------------------------------------

_EXPECT_DECODABLE = "a video stream FFmpeg can decode"
_EXPECT_COMPLETE = "index inside the file"
_EXPECT_AUDIO = "an audio stream (require_audio)"


def _expect_resolution(limits: Limits) -> str:
    return (f"short side ≥ {limits.min_short_side}, long side ≤ {limits.max_long_side}, "
            f"short side ≤ {limits.max_short_side}")


def _expect_duration(limits: Limits) -> str:
    return (f"{_num(limits.min_duration_seconds)}–{_num(limits.max_duration_seconds)} s "
            f"(± {_num(limits.duration_tolerance_seconds)} s)")


def _expect_aspect_ratio(limits: Limits) -> str:
    ratio = _num(limits.max_aspect_ratio)
    return f"long side / short side ≤ {ratio} (1:{ratio} to {ratio}:1)"


def _size(size: int, limits: Limits, upload: UploadPath, model: str) -> Verdict:
    model_cap, path_cap = human_bytes(limits.max_size_bytes), human_bytes(upload.max_size_bytes)
    if upload.max_size_bytes < limits.max_size_bytes:
        expected = f"1 byte – {path_cap} ({upload.name}; the {model} limit is {model_cap})"
    else:
        expected = f"1 byte – {model_cap} (the {model} limit)"
    measured = human_bytes(size)
    if size == 0:
        return Verdict("size", FAIL, measured, expected, "the file is empty (0 bytes)")
    if size > min(limits.max_size_bytes, upload.max_size_bytes):
        return Verdict("size", FAIL, measured, expected,
                       f"size {measured} ({size} bytes) is {_larger_than(limits, upload, model)}")
    return Verdict("size", PASS, measured, expected)


def _larger_than(limits: Limits, upload: UploadPath, model: str) -> str:
    """Which cap refused: the model's (named with its key), or the path's, with the way out."""
    if limits.max_size_bytes <= upload.max_size_bytes:
        return (f"larger than the {human_bytes(limits.max_size_bytes)} {model} limit "
                f"({limits.max_size_bytes} bytes, limits.max_size_bytes)")
    # The model would take it: say what stands in the way, not "too big for Twelve Labs".
    return (f"larger than the {human_bytes(upload.max_size_bytes)} limit of {upload.name} "
            f"({upload.max_size_bytes} bytes; the {model} limit is "
            f"{human_bytes(limits.max_size_bytes)}); to lift it: {upload.lift}")


def _complete(facts: MediaFacts) -> Verdict:
    end, size = facts.index_end_bytes, facts.size_bytes
    if end == 0:
        # Formats without an index (e.g. MPEG-TS) cannot be checked this way.
        return Verdict("complete", PASS, "no index to check", _EXPECT_COMPLETE)
    measured = f"index ends at byte {end} of {size}"
    if end > size:
        return Verdict("complete", FAIL, measured, _EXPECT_COMPLETE,
                       f"truncated: the index points to byte {end} but the file has {size} bytes")
    return Verdict("complete", PASS, measured, _EXPECT_COMPLETE)


def _resolution(facts: MediaFacts, limits: Limits) -> Verdict:
    w, h = facts.display_width, facts.display_height
    short, long = min(w, h), max(w, h)
    measured = f"{w}x{h}" + (f" (rotated {facts.rotation}°)" if facts.rotation else "")
    expected = _expect_resolution(limits)
    problem = None
    if short < limits.min_short_side:
        problem = (f"short side {short} is below the minimum of {limits.min_short_side} "
                   f"(limits.min_short_side)")
    elif long > limits.max_long_side:
        problem = (f"long side {long} exceeds the maximum of {limits.max_long_side} "
                   f"(limits.max_long_side)")
    elif short > limits.max_short_side:
        problem = (f"short side {short} exceeds the maximum of {limits.max_short_side} "
                   f"(limits.max_short_side)")
    if problem:
        return Verdict("resolution", FAIL, measured, expected, f"resolution {measured}: {problem}")
    return Verdict("resolution", PASS, measured, expected)


def _aspect_ratio(facts: MediaFacts, limits: Limits) -> Verdict:
    w, h = facts.display_width, facts.display_height  # rotation applied
    ratio = max(w, h) / min(w, h)
    shape = "wide" if w >= h else "tall"
    measured = f"{ratio:.2f}:1 ({shape}, {w}x{h})"
    expected = _expect_aspect_ratio(limits)
    # A hair of slack: 5184x2160 is exactly 2.4, and float division must not refuse it.
    if ratio > limits.max_aspect_ratio + 1e-9:
        return Verdict("aspect_ratio", FAIL, measured, expected,
                       f"aspect ratio {w}x{h} is {ratio:.2f}:1 ({shape}), beyond the maximum of "
                       f"{_num(limits.max_aspect_ratio)}:1 (limits.max_aspect_ratio)")
    return Verdict("aspect_ratio", PASS, measured, expected)


def _duration(facts: MediaFacts, limits: Limits) -> Verdict:
    d, tol = facts.duration_seconds, limits.duration_tolerance_seconds
    measured = f"{d:.2f} s"
    expected = _expect_duration(limits)
    if d < limits.min_duration_seconds - tol:
        return Verdict("duration", FAIL, measured, expected,
                       f"duration {measured} is below the minimum of "
                       f"{_num(limits.min_duration_seconds)} s (limits.min_duration_seconds)")
    if d > limits.max_duration_seconds + tol:
        return Verdict("duration", FAIL, measured, expected,
                       f"duration {measured} exceeds the maximum of "
                       f"{_num(limits.max_duration_seconds)} s (limits.max_duration_seconds)")
    return Verdict("duration", PASS, measured, expected)


def _audio(facts: MediaFacts, require_audio: bool) -> Verdict:
    measured = f"audio ({facts.audio_codec})" if facts.has_audio else "no audio stream"
    if not require_audio:
        return Verdict("audio", SKIP, measured, "not required")
    expected = _EXPECT_AUDIO
    if not facts.has_audio:
        return Verdict("audio", FAIL, measured, expected,
                       "audio is required (require_audio) but the file has no audio stream")
    return Verdict("audio", PASS, measured, expected)


def _skipped(rule: str, failed: str, limits: Limits, require_audio: bool) -> Verdict:
    expected = {
        "decodable": _EXPECT_DECODABLE,
        "complete": _EXPECT_COMPLETE,
        "resolution": _expect_resolution(limits),
        "aspect_ratio": _expect_aspect_ratio(limits),
        "duration": _expect_duration(limits),
        "audio": _EXPECT_AUDIO if require_audio else "not required",
    }[rule]
    return Verdict(rule, SKIP, f"not measured ({failed} failed)", expected)


# -- formatting --------------------------------------------------------------------


def _num(x: float) -> str:
    """4.0 -> "4", 0.1 -> "0.1", 7200.0 -> "7200": limits read as people wrote them."""
    return f"{x:.10g}"


def _log(report: Report) -> None:
    failure = report.first_failure
    if failure is None:
        logger.debug("%s: every rule passed", report.path)
    else:
        logger.debug("%s: rejected by %s: %s", report.path, failure.rule, failure.reason)
