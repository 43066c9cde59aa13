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
