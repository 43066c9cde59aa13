"""Read a file's media facts with PyAV, cheaply and without trusting the file.

The probe opens the container, picks the first real video stream, reads the
tail of the demuxer's index and decodes one video frame. That costs a few ms
even for a two-hour file, and the decode proves the codec is readable.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass

import av
import av.error

logger = logging.getLogger(__name__)

# The highest byte offsets sit at the end of each stream's index; scanning all
# entries of a 1 h file costs ~190 ms, the last few cost nothing.
INDEX_TAIL = 4
# Enough for any sane decoder delay; stops a broken stream from making us
# read a whole 2 GB file looking for a frame that never comes.
MAX_PACKETS_FOR_FIRST_FRAME = 256


@dataclass(frozen=True)
class MediaFacts:
    size_bytes: int
    container: str
    video_codec: str
    width: int  # coded size
    height: int
    rotation: int  # display rotation in degrees, counter-clockwise, 0..359
    display_width: int  # after rotation
    display_height: int
    duration_seconds: float
    has_audio: bool
    audio_codec: str | None
    index_end_bytes: int  # highest pos+size among index tails; 0 when there is no index

    def as_dict(self) -> dict:
        return asdict(self)


class ProbeFailed(Exception):
    """The file cannot be used as a video; ``reason`` is a sentence for humans."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def probe(path: str | os.PathLike) -> MediaFacts:
    """Media facts of ``path``; ProbeFailed when it is not a decodable video.

    FileNotFoundError and PermissionError propagate: a vanished or unreadable
    file is the caller's business, not a property of the media.
    """
    started = time.perf_counter()
    size = os.stat(path).st_size
    try:
        with av.open(os.fspath(path), mode="r", metadata_errors="ignore") as container:
            facts = _read_facts(container, size)
    except (FileNotFoundError, PermissionError):
        raise  # the file is gone or the service user may not read it: not bad media
    except av.error.FFmpegError as exc:
        # Covers InvalidDataError, IsADirectoryError, DecoderNotFoundError, ...
        raise ProbeFailed(f"not a media file FFmpeg can read: {_describe(exc)}") from exc
    logger.debug("probed %s in %.1f ms: %s", path, (time.perf_counter() - started) * 1000, facts)
    return facts


def _read_facts(container: av.container.InputContainer, size: int) -> MediaFacts:
    stream = _video_stream(container)
    codec = stream.codec_context
    width, height = codec.width, codec.height
    if not width or not height:
        raise ProbeFailed("the video stream has no frame size")
    duration = _duration(container, stream)
    audio = container.streams.audio[0] if container.streams.audio else None
    # Before decoding: demuxing may append entries, and we want the header's view.
    index_end = _index_end(container)
    rotation = _first_frame_rotation(container, stream)
    swap = rotation % 180 == 90
    return MediaFacts(
        size_bytes=size,
        container=container.format.name,
        video_codec=codec.name,
        width=width,
        height=height,
        rotation=rotation,
        display_width=height if swap else width,
        display_height=width if swap else height,
        duration_seconds=duration,
        has_audio=audio is not None,
        audio_codec=audio.codec_context.name if audio is not None else None,
        index_end_bytes=index_end,
    )


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    # Cover art in .m4a/.mp3 shows up as a one-picture "video" stream.
    real = [s for s in container.streams.video
            if not s.disposition & av.stream.Disposition.attached_pic]
    if not real:
        raise ProbeFailed("no video stream (only audio or cover art)")
    return real[0]


def _duration(container: av.container.InputContainer,
              stream: av.video.stream.VideoStream) -> float:
    if container.duration is not None:  # AV_TIME_BASE units (µs)
        return container.duration / av.time_base
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    raise ProbeFailed("duration unknown")


def _index_end(container: av.container.InputContainer) -> int:
    end = 0
    for stream in container.streams:
        entries = stream.index_entries
        for k in range(max(0, len(entries) - INDEX_TAIL), len(entries)):
            end = max(end, entries[k].pos + entries[k].size)
    return end


def _first_frame_rotation(container: av.container.InputContainer,
                          stream: av.video.stream.VideoStream) -> int:
    """Decode one frame (proof the codec reads) and return its display rotation.

    PyAV 18 exposes rotation only on decoded frames, not on streams.
    """
    stream.thread_type = "NONE"  # frame threading would buffer several packets first
    try:
        for count, packet in enumerate(container.demux(stream)):
            if count >= MAX_PACKETS_FOR_FIRST_FRAME:
                break
            frames = stream.decode(packet)  # the empty packet at EOF drains the decoder
            if frames:
                return round(frames[0].rotation or 0) % 360
    except av.error.FFmpegError as exc:
        # The container opened, so say it is the video data that is broken.
        raise ProbeFailed(f"no decodable video frame: {_describe(exc)}") from exc
    raise ProbeFailed("no decodable video frame")


def _describe(exc: av.error.FFmpegError) -> str:
    # strerror, not str(exc): that adds an errno and the path the caller knows.
    return f"{type(exc).__name__} ({exc.strerror or exc})"
