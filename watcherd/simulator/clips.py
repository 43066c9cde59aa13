"""Tiny videos made at run time with PyAV: test fixtures without binaries in git, and
the clips ``watcherd demo`` drops.

Each clip is a few KB and takes milliseconds: 2 fps, flat grey frames, silent
AAC mono at 8 kHz. Durations with audio come out a little long because AAC
pads to whole 1024-sample frames (5 s -> 5.12 s), so tests should keep clear
of exact limits.
"""

from __future__ import annotations

import functools
import os
from fractions import Fraction
from pathlib import Path

import av

AUDIO_RATE = 8000
AAC_FRAME = 1024
COVER_SIDE = 64


def make_video(
    path: str | os.PathLike,
    *,
    width: int = 640,
    height: int = 360,
    seconds: float = 5.0,
    fps: int = 2,
    audio: bool = True,
    rotation: int = 0,
    faststart: bool = False,
) -> Path:
    """An H.264 clip; the container follows the suffix (.mp4, .mov, .mkv, ...).

    ``rotation`` goes into the stream's display matrix (counter-clockwise
    degrees, as read back from ``VideoFrame.rotation``); the coded frames stay
    ``width`` x ``height``.
    """
    path = Path(path)
    # movflags only means something to the mov/mp4 muxers; others ignore it.
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"preset": "ultrafast"}
        if rotation:
            video.set_display_rotation(rotation)  # must precede the first encode
        sound = _add_silent_aac(out) if audio else None
        _encode_video(out, video, width, height, round(seconds * fps), fps)
        if sound is not None:
            _encode_silence(out, sound, seconds)
    return path


def make_audio_only(path: str | os.PathLike, seconds: float = 5.0) -> Path:
    """AAC in an MP4-family container (.mp4 or .m4a) with no video stream."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        _encode_silence(out, _add_silent_aac(out), seconds)
    return path


def make_audio_with_cover(path: str | os.PathLike, seconds: float = 5.0) -> Path:
    """Silent AAC plus a 64x64 PNG cover image (an ``attached_pic`` "video" stream).

    Only ``.mp4`` works: the ``ipod`` muxer behind .m4a refuses PNG, and the
    ``mov`` muxer silently drops the picture, which would make a test that
    relies on the cover pass for the wrong reason.
    """
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise ValueError(f"cover art is only generated in .mp4, not {path.suffix!r}")
    with av.open(str(path), "w") as out:
        sound = _add_silent_aac(out)
        cover = out.add_mux_stream("png", width=COVER_SIDE, height=COVER_SIDE)
        cover.disposition = av.stream.Disposition.attached_pic
        for packet in _png_packets(COVER_SIDE):
            packet.stream = cover
            packet.pts = packet.dts = 0
            packet.time_base = Fraction(1, 90000)
            out.mux(packet)
        _encode_silence(out, sound, seconds)
    return path


def make_truncated(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """The first half of ``src``.

    From a faststart MP4 this opens and decodes (the index sits at the front)
    but the index points past the end; from a plain MP4 the index at the end
    is gone and FFmpeg cannot open it at all.
    """
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: len(data) // 2])
    return dst


def make_garbled(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """``src`` (a faststart MP4) with its media data overwritten by 0xff bytes.

    The header and index survive, so the file opens, but no frame decodes.
    """
    data = bytearray(Path(src).read_bytes())
    start = data.find(b"mdat")
    if start < 0 or data.find(b"moov") > start:
        raise ValueError(f"{src} is not a faststart MP4 (moov must precede mdat)")
    data[start + 4:] = b"\xff" * (len(data) - start - 4)
    dst = Path(dst)
    dst.write_bytes(data)
    return dst


def write_text_as_video(path: str | os.PathLike) -> Path:
    """Plain text with a video suffix."""
    path = Path(path)
    path.write_text("this is not a video, just text with a video suffix\n" * 40)
    return path


@functools.cache
def standard_clips(directory: Path) -> dict[str, Path]:
    """One clip per validation case, generated once per directory (≈ 0.2 s in all)."""
    directory.mkdir(parents=True, exist_ok=True)
    d = directory
    clips = {
        "ok": make_video(d / "ok.mp4"),  # 640x360, 5.12 s with AAC padding
        "noaudio": make_video(d / "noaudio.mp4", audio=False),  # 5.0 s
        "small": make_video(d / "small.mp4", width=320, height=240),
        "portrait": make_video(d / "portrait.mp4", rotation=90),  # displays 360x640
        "portrait270": make_video(d / "portrait270.mp4", rotation=-90, audio=False),
        "wide": make_video(d / "wide.mp4", width=4000, height=360, seconds=1, audio=False),
        "short": make_video(d / "short.mp4", seconds=3),  # 3.07 s
        "mid": make_video(d / "mid.mp4", seconds=4.5),  # 4.61 s
        "fast": make_video(d / "fast.mp4", faststart=True),
        "mkv": make_video(d / "ok.mkv"),
        "audio_only": make_audio_only(d / "audio_only.m4a"),
        "cover": make_audio_with_cover(d / "cover.mp4"),
        "text": write_text_as_video(d / "text.mp4"),
    }
    clips["truncated_fast"] = make_truncated(clips["fast"], d / "truncated_fast.mp4")
    clips["truncated_plain"] = make_truncated(clips["ok"], d / "truncated_plain.mp4")
    clips["garbled"] = make_garbled(make_video(d / "fast_silent.mp4", audio=False,
                                               faststart=True), d / "garbled.mp4")
    clips["empty"] = d / "empty.mp4"
    clips["empty"].write_bytes(b"")
    return clips


# -- helpers -------------------------------------------------------------------


def _add_silent_aac(out: av.container.OutputContainer) -> av.audio.stream.AudioStream:
    stream = out.add_stream("aac", rate=AUDIO_RATE)
    stream.layout = "mono"
    return stream


def _encode_video(out: av.container.OutputContainer, stream: av.video.stream.VideoStream,
                  width: int, height: int, frames: int, fps: int) -> None:
    for i in range(frames):
        frame = av.VideoFrame(width, height, "yuv420p")
        # A changing luma level keeps frames distinct without numpy.
        frame.planes[0].update(bytes([16 + (i * 7) % 200]) * frame.planes[0].buffer_size)
        frame.planes[1].update(b"\x80" * frame.planes[1].buffer_size)
        frame.planes[2].update(b"\x80" * frame.planes[2].buffer_size)
        frame.pts, frame.time_base = i, Fraction(1, fps)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def _encode_silence(out: av.container.OutputContainer, stream: av.audio.stream.AudioStream,
                    seconds: float) -> None:
    # Silence, not a tone: filling samples from Python costs ~90 ms per clip.
    pts = 0
    while pts < seconds * AUDIO_RATE:
        frame = av.AudioFrame(format="fltp", layout="mono", samples=AAC_FRAME)
        frame.planes[0].update(bytes(frame.planes[0].buffer_size))
        frame.sample_rate, frame.pts, frame.time_base = AUDIO_RATE, pts, Fraction(1, AUDIO_RATE)
        pts += AAC_FRAME
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))


def _png_packets(side: int) -> list[av.Packet]:
    codec = av.CodecContext.create("png", "w")
    codec.width = codec.height = side
    codec.pix_fmt = "rgb24"
    codec.time_base = Fraction(1, 1)
    image = av.VideoFrame(side, side, "rgb24")
    image.planes[0].update(b"\x40" * image.planes[0].buffer_size)
    return list(codec.encode(image)) + list(codec.encode(None))
