"""Output for the operator commands: ``--json`` as is, or for people in consoles and tables.

Colour only on a terminal and never with ``NO_COLOR`` (rich honours both);
``--json`` output never goes through rich. Times are shown local and relative
("3m ago") because an operator asks "is this recent?", and JSON carries the
exact ISO 8601 values.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from watcherd.names import display

if TYPE_CHECKING:  # rich is imported when something is drawn: --json output never loads it
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from watcherd.state.schema import FileRecord

PIPE_WIDTH = 4096
STATE_STYLES = {
    "done": "green", "failed": "red", "vanished": "dim", "uploading": "cyan",
    "indexing": "blue", "queued": "yellow", "settling": "yellow", "validating": "cyan",
    "finalizing": "blue", "ignored": "dim", "would upload": "green", "invalid": "red",
    "duplicate": "magenta", "tracked": "blue",
}


def session_json(session: dict[str, Any] | None) -> dict[str, Any] | None:
    """``queries.upload_session`` for JSON: the expiry as ISO 8601."""
    return None if session is None else {**session, "expires_at": iso(session["expires_at"])}


def session_text(session: dict[str, Any] | None) -> str:
    """"chunk 12/40, session expires 14:02" for people ("" without a session)."""
    if session is None:
        return ""
    expires = session["expires_at"]
    until = f", session expires {expires[:16].replace('T', ' ')}" if expires else ""
    return f"chunk {session['chunks_done']}/{session['chunks_total']}{until}"


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def emit(data: Any, as_json: bool, render: Callable[[Any, Console], None]) -> None:
    """``data`` as JSON, or drawn by ``render`` for people."""
    if as_json:
        print_json(data)
    else:
        render(data, output_console())


def shown(value: Any) -> Any:
    """Every string in ``value`` fit for JSON and terminals (undecodable bytes escaped)."""
    if isinstance(value, dict):
        return {k: shown(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shown(v) for v in value]
    return display(value) if isinstance(value, str) else value


def output_console() -> Console:
    """stdout for command output; rich disables colour off a terminal and with NO_COLOR.

    Piped output is never cut to 80 columns: a path in a pipe must stay whole.
    """
    from rich.console import Console

    width = None if sys.stdout.isatty() else PIPE_WIDTH
    return Console(file=sys.stdout, highlight=False, soft_wrap=True, width=width,
                   **_plain_if_asked())


def terminal_console() -> Console | None:
    """A stderr console for ``watcherd run`` when a person is watching, else None."""
    from watcherd.service.logs import stderr_is_journal

    if not sys.stderr.isatty() or stderr_is_journal():
        return None
    from rich.console import Console

    return Console(file=sys.stderr, highlight=False, **_plain_if_asked())


def _plain_if_asked() -> dict[str, Any]:
    # rich's own NO_COLOR handling still emits bold and dim; no-color.org asks for none.
    return {"color_system": None} if os.environ.get("NO_COLOR") else {}


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None
          ) -> Table:
    from rich.table import Table
    from rich.text import Text

    grid = Table(*columns, title=title, title_justify="left", box=None, pad_edge=False,
                 header_style="bold")
    for row in rows:
        # Plain Text, never markup: a file named "take [12].mp4" must print as is.
        grid.add_row(*(cell if isinstance(cell, Text) else Text("" if cell is None else str(cell))
                       for cell in row))
    return grid


def remote_ids(record: FileRecord) -> dict[str, Any]:
    """The upload path and the multipart path's ids, for status, list and explain."""
    from watcherd.ingest.sidecar import upload_method_of

    return {"upload_method": upload_method_of(record), "asset_id": record.asset_id,
            "indexed_asset_id": record.indexed_asset_id}


def job_shown(entry: dict[str, Any]) -> str:
    """The "task" column: the task (on the multipart path the indexed asset), else the
    asset still being processed."""
    if entry.get("task_id"):
        return str(entry["task_id"])
    return f"asset {entry['asset_id']}" if entry.get("asset_id") else ""


def styled_state(state: str) -> Text:
    from rich.text import Text

    return Text(state, style=STATE_STYLES.get(state, ""))


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(
        timespec="seconds")


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "never"
    return f"{duration((now or time.time()) - ts)} ago"


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d{seconds % 86400 // 3600:02.0f}h"
