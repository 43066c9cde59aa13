"""The fault switches as text, for ``watcherd simulator``'s command line.

Each switch names one of ``FakeTwelveLabs``'s test controls, so a staging set-up or
someone's CI can make the simulator misbehave the way a test does:

- ``--inject 'METHOD PATH ANSWER [times=N] [delay=S] [status=N] [body=TEXT] [header=K:V]'``
- ``--random 'METHOD PATH ANSWER p=P [seed=N] [status=N] [body=TEXT] [header=K:V]'``
- ``--rate-limit 'METHOD PATH LIMIT/WINDOW'``, ``--fail-filename NAME``,
  ``--ready-after S``, ``--redirect-to URL``, ``--clock-offset S``,
  ``--user-metadata-shown WHERE``
- the upload paths: ``--throttle RATE`` (per connection, e.g. ``20MB``), ``--chunk-size
  SIZE``, ``--url-ttl S``, ``--session-ttl S``, ``--multipart-forbidden``,
  ``--tasks-removed 404|410``

ANSWER is an HTTP status (``429``) or an action (``reset``, ``early``, ...); METHOD may
be ``*``; PATH is a prefix under ``/<api_version>``. A body that is a JSON object is sent
as JSON. Any mistake is a ``SwitchError`` naming the switch, before anything is served.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from watcherd.simulator.catalog import DEFAULT_PROGRESSION, Progression
from watcherd.simulator.faults import ACTIONS, Payload
from watcherd.simulator.server import FakeTwelveLabs

METADATA_PLACES = ("list_and_video", "video", "nowhere")
ANSWER_ACTIONS = tuple(a for a in ACTIONS if a not in (None, "pass"))


class SwitchError(ValueError):
    """A fault switch that does not parse; the message names it."""


@dataclass(frozen=True)
class Switches:
    inject: Sequence[str] = ()
    random: Sequence[str] = ()
    rate_limit: Sequence[str] = ()
    fail_filename: Sequence[str] = ()
    ready_after: float | None = None
    redirect_to: str | None = None
    clock_offset: float = 0.0
    user_metadata_shown: str = "list_and_video"
    throttle: str | None = None         # bytes per second per connection: "20MB", "500KiB"
    chunk_size: str | None = None       # the multipart chunk size the server chooses
    url_ttl: float | None = None        # presigned URLs expire after this many seconds
    session_ttl: float | None = None    # upload sessions expire after this many seconds
    multipart_forbidden: bool = False   # 403 on every multipart route
    tasks_removed: int | None = None    # POST /tasks answers 404 or 410


SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9,
              "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30}


def apply(fake: FakeTwelveLabs, switches: Switches) -> list[str]:
    """Turn the switches on (all parsed first: one bad switch turns none on); returns one
    line per switch that is on, for the operator."""
    injects = [_inject_arguments(text) for text in switches.inject]
    randoms = [_random_arguments(text) for text in switches.random]
    limits = [_rate_limit_arguments(text) for text in switches.rate_limit]
    progression = scaled_progression(switches.ready_after)
    if switches.user_metadata_shown not in METADATA_PLACES:
        raise SwitchError(f"--user-metadata-shown: one of {', '.join(METADATA_PLACES)}")
    upload = _upload_controls(switches)
    for kwargs in injects:
        fake.inject(**kwargs)
    for kwargs in randoms:
        fake.inject_randomly(**kwargs)
    for kwargs in limits:
        fake.rate_limit(**kwargs)
    fake.fail_filenames(switches.fail_filename)
    fake.set_progression(progression)
    fake.redirect_to(switches.redirect_to)
    fake.clock_offset_seconds = switches.clock_offset
    fake.user_metadata_shown = switches.user_metadata_shown
    for name, value in upload.items():
        setattr(fake, name, value)
    return _describe(switches)


def _upload_controls(switches: Switches) -> dict[str, object]:
    """The upload-path switches as the simulator's attributes (only those given)."""
    controls: dict[str, object] = {}
    if switches.throttle is not None:
        controls["throttle_bytes_per_second"] = size_value("--throttle", switches.throttle)
    if switches.chunk_size is not None:
        controls["multipart_chunk_size"] = size_value("--chunk-size", switches.chunk_size)
    for name, attribute, seconds in (("--url-ttl", "url_ttl_seconds", switches.url_ttl),
                                     ("--session-ttl", "session_ttl_seconds",
                                      switches.session_ttl)):
        if seconds is not None:
            if seconds <= 0:
                raise SwitchError(f"{name}: seconds, more than 0")
            controls[attribute] = seconds
    if switches.multipart_forbidden:
        controls["multipart_forbidden"] = True
    if switches.tasks_removed is not None:
        if switches.tasks_removed not in (404, 410):
            raise SwitchError("--tasks-removed: 404 or 410")
        controls["tasks_removed_status"] = switches.tasks_removed
    return controls


def size_value(switch: str, text: str) -> int:
    """``20MB`` (decimal), ``5MiB`` (binary) or plain bytes, more than 0."""
    number = text.strip().rstrip("bBiIkKmMgG/sS ")
    unit = text.strip()[len(number):].lower().removesuffix("/s").strip()
    try:
        value = int(float(number) * SIZE_UNITS[unit])
    except (ValueError, KeyError):
        raise SwitchError(f"{switch} {text!r}: a size like 20MB, 5MiB or 1048576") from None
    if value <= 0:
        raise SwitchError(f"{switch} {text!r}: must be more than 0")
    return value


def scaled_progression(ready_after: float | None) -> Progression:
    """The default status sequence, stretched so ``ready`` comes after ``ready_after`` s."""
    if ready_after is None:
        return DEFAULT_PROGRESSION
    if ready_after < 0:
        raise SwitchError("--ready-after: seconds, 0 or more")
    end = DEFAULT_PROGRESSION[-1][1]
    return tuple((status, at * ready_after / end) for status, at in DEFAULT_PROGRESSION)


def _describe(switches: Switches) -> list[str]:
    lines = [f"--inject {text}" for text in switches.inject]
    lines += [f"--random {text}" for text in switches.random]
    lines += [f"--rate-limit {text}" for text in switches.rate_limit]
    lines += [f"--fail-filename {name}" for name in switches.fail_filename]
    if switches.ready_after is not None:
        lines.append(f"--ready-after {switches.ready_after:g}")
    if switches.redirect_to:
        lines.append(f"--redirect-to {switches.redirect_to}")
    if switches.clock_offset:
        lines.append(f"--clock-offset {switches.clock_offset:g}")
    if switches.user_metadata_shown != "list_and_video":
        lines.append(f"--user-metadata-shown {switches.user_metadata_shown}")
    for name, value in (("--throttle", switches.throttle), ("--chunk-size", switches.chunk_size),
                        ("--url-ttl", switches.url_ttl), ("--session-ttl", switches.session_ttl),
                        ("--tasks-removed", switches.tasks_removed)):
        if value is not None:
            lines.append(f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}")
    if switches.multipart_forbidden:
        lines.append("--multipart-forbidden")
    return lines


def _inject_arguments(text: str) -> dict[str, Any]:
    method, prefix, answer, options = _split("--inject", text, 3)
    kwargs = _answer("--inject", text, answer, options)
    kwargs["times"] = _number("--inject", text, options.pop("times", "1"), int, "times")
    kwargs["delay"] = _number("--inject", text, options.pop("delay", "0"), float, "delay")
    _no_leftovers("--inject", text, options)
    return {"method": method, "path_prefix": prefix, **kwargs}


def _random_arguments(text: str) -> dict[str, Any]:
    method, prefix, answer, options = _split("--random", text, 3)
    kwargs = _answer("--random", text, answer, options)
    if "p" not in options:
        raise SwitchError(f"--random {text!r}: p=PROBABILITY is required")
    probability = _number("--random", text, options.pop("p"), float, "p")
    if not 0 <= probability <= 1:
        raise SwitchError(f"--random {text!r}: p must be between 0 and 1")
    kwargs["seed"] = _number("--random", text, options.pop("seed", "0"), int, "seed")
    kwargs["after_bytes"] = _number("--random", text, options.pop("after_bytes", "0"), int,
                                    "after_bytes")
    _no_leftovers("--random", text, options)
    return {"method": method, "path_prefix": prefix, "probability": probability, **kwargs}


def _rate_limit_arguments(text: str) -> dict[str, Any]:
    method, prefix, rate, options = _split("--rate-limit", text, 3)
    _no_leftovers("--rate-limit", text, options)
    limit, slash, window = rate.partition("/")
    if not slash:
        raise SwitchError(f"--rate-limit {text!r}: the rate is LIMIT/WINDOW_SECONDS, e.g. 10/60")
    return {"method": method, "path_prefix": prefix,
            "limit": _number("--rate-limit", text, limit, int, "LIMIT"),
            "window": _number("--rate-limit", text, window, float, "WINDOW")}


def _split(switch: str, text: str, positional: int) -> tuple[str, str, str, dict[str, str]]:
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise SwitchError(f"{switch} {text!r}: {exc}") from None
    if len(words) < positional or any("=" in w for w in words[:positional]):
        raise SwitchError(f"{switch} {text!r}: expected METHOD PATH "
                          f"{'LIMIT/WINDOW' if switch == '--rate-limit' else 'ANSWER'} first")
    method, prefix, third = words[:positional]
    if not prefix.startswith("/"):
        raise SwitchError(f"{switch} {text!r}: PATH starts with / (e.g. /tasks)")
    options: dict[str, str] = {}
    headers: list[str] = []
    for word in words[positional:]:
        key, eq, value = word.partition("=")
        if not eq:
            raise SwitchError(f"{switch} {text!r}: {word!r} is not KEY=VALUE")
        if key == "header":
            headers.append(value)
        elif key in options:
            raise SwitchError(f"{switch} {text!r}: {key} given twice")
        else:
            options[key] = value
    if headers:
        options["header"] = "\n".join(headers)
    return method.upper(), prefix, third, options


def _answer(switch: str, text: str, answer: str, options: dict[str, str]) -> dict[str, Any]:
    """ANSWER plus status=, body= and header= options -> status, action, body, headers."""
    if answer.isdigit():
        status, action = int(answer), None
    elif answer in ANSWER_ACTIONS:
        status, action = 500, answer
    else:
        raise SwitchError(f"{switch} {text!r}: ANSWER is an HTTP status or one of "
                          f"{', '.join(str(a) for a in ANSWER_ACTIONS)}")
    status = _number(switch, text, options.pop("status", str(status)), int, "status")
    headers = {}
    for line in filter(None, options.pop("header", "").split("\n")):
        name, colon, value = line.partition(":")
        if not colon or not name.strip():
            raise SwitchError(f"{switch} {text!r}: header=NAME:VALUE, not {line!r}")
        headers[name.strip()] = value.strip()
    return {"status": status, "action": action, "headers": headers,
            "body": _body(options.pop("body", None))}


def _body(text: str | None) -> Payload:
    if text is None:
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    return parsed if isinstance(parsed, dict) else text


def _number(switch: str, text: str, value: str, kind: type[int | float],
            name: str) -> Any:
    try:
        number = kind(value)
    except ValueError:
        raise SwitchError(f"{switch} {text!r}: {name} must be a number, not {value!r}") from None
    if number < 0:
        raise SwitchError(f"{switch} {text!r}: {name} must not be negative")
    return number


def _no_leftovers(switch: str, text: str, options: dict[str, str]) -> None:
    if options:
        raise SwitchError(f"{switch} {text!r}: unknown option(s) {', '.join(sorted(options))}")
