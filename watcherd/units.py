"""Byte counts for people: one formatter for limits, log lines and status tables."""

from __future__ import annotations

BINARY_UNITS = ("KiB", "MiB", "GiB", "TiB")


def human_bytes(n: float, *, unit: str | None = None, short: bool = False) -> str:
    """Binary units, because the limits are set in GiB (2 GiB, not 2.1 GB).

    ``unit`` fixes the unit ("MiB": a journal line's figures compare at a glance);
    ``short`` writes fewer than 1024 bytes as "512 B" (a table column), not "512 bytes".
    """
    if unit is not None:
        return f"{n / 1024 ** (BINARY_UNITS.index(unit) + 1):.1f} {unit}"
    if n < 1024:
        return f"{n:.0f} B" if short else f"{n:.0f} byte" + ("" if n == 1 else "s")
    value = float(n)
    for name in BINARY_UNITS:
        value /= 1024
        if value < 1024 or name == BINARY_UNITS[-1]:
            break
    return f"{value:.1f} {name}"


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def since_time(text: str, now: float | None = None) -> float:
    """``--since``: an age (``90s``, ``30m``, ``12h``, ``7d``, ``2w``) or an ISO date/time
    (``2026-11-30``, ``2026-11-30T08:00``, local time unless it says otherwise), as a
    wall-clock timestamp. ValueError says what it accepts."""
    import time
    from datetime import datetime

    text = text.strip()
    unit = DURATION_UNITS.get(text[-1:].lower())
    if unit is not None and text[:-1].replace(".", "", 1).isdigit():
        return (time.time() if now is None else now) - float(text[:-1]) * unit
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise ValueError(f"{text!r} is neither an age like 12h or 7d nor a date like "
                         "2026-11-30 or 2026-11-30T08:00") from None
