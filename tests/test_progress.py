"""Upload progress: journal lines per 25 % or 10 s, and the terminal bars."""

from __future__ import annotations

import io
import logging

from rich.console import Console

from tests.conftest import FakeClock
from watcherd.ingest.progress import Progress, ProgressLog, TerminalProgress

MIB = 2**20


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "watcherd.ingest.progress"]


def test_a_line_per_quarter_at_most_plus_one_per_ten_quiet_seconds(caplog):
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    log = ProgressLog("/in/big.mp4", clock=clock)
    for mib in range(1, 100):  # 100 MiB in 1 MiB blocks, 0.1 s each
        clock.now += 0.1
        log.update(mib * MIB, 100 * MIB)
    assert [line.split(":")[1].split("(")[0].strip() for line in lines(caplog)] == \
        ["25%", "50%", "75%"]
    assert lines(caplog)[0] == "uploading big.mp4: 25% (25.0 MiB of 100.0 MiB, 10.0 MiB/s)"


def test_a_slow_upload_still_says_something_every_ten_seconds(caplog):
    caplog.set_level(logging.INFO)
    clock = FakeClock()
    log = ProgressLog("/in/slow.mp4", clock=clock)
    for mib in range(1, 31):  # 30 MiB of 1000, one per 2 s: one line per 10 s
        clock.now += 2
        log.update(mib * MIB, 1000 * MIB)
    assert len(lines(caplog)) == 6
    log.update(1000 * MIB, 1000 * MIB)  # the end is the pipeline's line
    assert len(lines(caplog)) == 6


def test_progress_rate_and_clear():
    progress = Progress()
    progress.update(1, 10, 100, "/in/a.mp4")
    assert progress.snapshot() == {1: (10, 100)}
    progress.started[1] -= 2  # two seconds ago
    assert 4.9 < progress.rate(1) < 5.1
    progress.clear(1)
    assert progress.snapshot() == {} and progress.rate(1) is None


def test_terminal_bars_follow_the_uploads():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    with TerminalProgress(console) as bars:
        bars.show({1: ("видео.mp4", 50 * MIB, 100 * MIB)})
        assert [t.description for t in bars.bars.tasks] == ["видео.mp4"]
        assert bars.bars.tasks[0].percentage == 50
        bars.show({2: ("next.mp4", 0, 10)})
        assert [t.description for t in bars.bars.tasks] == ["next.mp4"]
        bars.bars.refresh()
    assert "next.mp4" in out.getvalue()
