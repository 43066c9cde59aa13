"""Which path an upload takes: resumable multipart assets, or the legacy ``POST /tasks``.

A folder's ``upload_method`` says what it wants; what Twelve Labs has told us since
narrows it. Two things can be learnt while running, each for the whole account:

* **multipart refused**: a 403 on session create (``MultipartNotEnabled``; multipart is
  a private preview on some plans). ``auto`` falls back to ``POST /tasks`` for the
  files that path takes (up to 2 GiB), with one WARNING; a larger file waits. A
  ``multipart`` folder never falls back: its files wait (one ERROR).
* **/tasks removed**: ``POST /tasks`` answered 404/410 (the legacy endpoint is gone).
  A ``tasks`` folder waits, with an ERROR telling the operator to switch to ``auto``;
  ``auto`` no longer offers the fallback.

A file that cannot go now is never failed: it stays ``queued`` in the inbox, parked
here, and is handed back when the pause check (``pausecheck``) sees the cause gone,
every ``pause_check_seconds`` like the other pauses. The checks ask without side
effects: listing the incomplete multipart sessions, and a ``POST /tasks`` without a
video (a live endpoint refuses the missing file; a removed one answers 404/410).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from watcherd.config import AUTO_METHOD, MULTIPART, TASKS, Config
from watcherd.errors import ApiError, AuthError, KeyUnavailable
from watcherd.media.limits import TASKS_UPLOAD
from watcherd.state.runtime import UploadPathsSnapshot
from watcherd.twelvelabs.assets import AssetsApi
from watcherd.twelvelabs.client import TwelveLabsClient
from watcherd.units import human_bytes

logger = logging.getLogger(__name__)

REMOVED_STATUSES = (404, 410)
SWITCH_TO_AUTO = ("set upload_method (or the folder's folders[i].upload_method) to auto and "
                  "reload (systemctl reload watcherd): the multipart asset upload replaces it")


@dataclass(frozen=True)
class Waiting:
    """Why a file cannot be uploaded by any path its folder allows right now; ``news``:
    the file was not already parked for this reason (say it once, not at every check)."""

    reason: str
    news: bool = True


def removed_endpoint(error: ApiError) -> bool:
    """``POST /tasks`` answered as if the route itself is gone (not the index: the caller
    rules that out first, since an unknown index may be a 404 too)."""
    return error.status in REMOVED_STATUSES


def multipart_allowed(api: TwelveLabsClient) -> bool:
    """Ask, with nothing created, whether the account may use multipart uploads: every
    multipart route answers 403 to an account without it (the list of incomplete
    sessions is the harmless one). Other failures propagate: nobody can tell yet."""
    assets = AssetsApi(api)
    try:
        assets.list_incomplete_uploads(max_pages=1)
    except AuthError as exc:
        if exc.status != 403 or isinstance(exc, KeyUnavailable):
            raise
        return False
    finally:
        assets.close()
    return True


class UploadPaths:
    """What the account allows (learnt from its answers), the path each file takes, and
    the files parked until a path opens. One per daemon, shared by every worker."""

    def __init__(self, config: Callable[[], Config]) -> None:
        self._config = config  # read when a message is made: folder keys follow a reload
        self._lock = threading.Lock()
        self._multipart_refused: str | None = None
        self._tasks_removed: str | None = None
        self._parked: set[int] = set()
        self._told: dict[int, str] = {}  # file id -> the reason it was last parked with

    # -- the choice -----------------------------------------------------------------

    def route(self, method: str, size: int) -> str | Waiting:
        """``multipart`` or ``tasks`` for a file of ``size`` bytes in a folder on
        ``method``, or why it must wait."""
        with self._lock:
            return self._route(method, size)

    def route_or_park(self, file_id: int, method: str, size: int) -> str | Waiting:
        """Like ``route``, but a file that must wait is parked here (atomic with
        ``reopen_*``, so a path that opens meanwhile is never missed)."""
        with self._lock:
            chosen = self._route(method, size)
            if not isinstance(chosen, Waiting):
                self._told.pop(file_id, None)
                return chosen
            self._parked.add(file_id)
            news = self._told.get(file_id) != chosen.reason
            self._told[file_id] = chosen.reason
            return Waiting(chosen.reason, news)

    def _route(self, method: str, size: int) -> str | Waiting:
        refused, removed = self._multipart_refused, self._tasks_removed
        if method == TASKS:
            if removed:
                return Waiting(f"POST /tasks is gone ({removed}) and this folder's "
                               f"upload_method is tasks. Fix: {SWITCH_TO_AUTO}")
            return TASKS
        if not refused:
            return MULTIPART
        if method == MULTIPART:
            return Waiting(f"Twelve Labs refuses multipart uploads for this account "
                           f"({refused}) and this folder's upload_method is multipart, which "
                           "never falls back to POST /tasks")
        if removed:
            return Waiting(f"Twelve Labs refuses multipart uploads for this account "
                           f"({refused}) and POST /tasks, the fallback, is gone ({removed})")
        if size > TASKS_UPLOAD.max_size_bytes:
            return Waiting(f"Twelve Labs refuses multipart uploads for this account "
                           f"({refused}), and at {human_bytes(size)} the file is larger than "
                           f"the {human_bytes(TASKS_UPLOAD.max_size_bytes)} that POST /tasks, "
                           "the fallback, takes: it waits for multipart")
        return TASKS

    # -- what the account said ------------------------------------------------------

    def refuse_multipart(self, error: ApiError) -> None:
        """A 403 on session create; said once (WARNING for the fallback, ERROR for the
        folders that wait), not once per file."""
        with self._lock:
            started = self._multipart_refused is None
            self._multipart_refused = error.describe()
        if not started:
            return
        auto, multipart = self._folder_keys(AUTO_METHOD), self._folder_keys(MULTIPART)
        if auto:
            logger.warning(
                "Twelve Labs refuses multipart uploads for this account (%s): %s upload "
                "through POST /tasks instead, files up to %s (larger ones wait in the inbox). "
                "Checked again every %.0fs; multipart is used again as soon as it is allowed",
                error.describe(), _which(auto, AUTO_METHOD),
                human_bytes(TASKS_UPLOAD.max_size_bytes), self._config().pause_check_seconds)
        if multipart:
            logger.error(
                "Twelve Labs refuses multipart uploads for this account (%s): %s never fall "
                "back to POST /tasks, so their files wait in the inbox. Fix: ask Twelve Labs "
                "to enable multipart uploads, or set them to auto (checked again every %.0fs)",
                error.describe(), _which(multipart, MULTIPART),
                self._config().pause_check_seconds)

    def remove_tasks(self, error: ApiError) -> None:
        """``POST /tasks`` answered 404/410."""
        with self._lock:
            started = self._tasks_removed is None
            self._tasks_removed = error.describe()
        if started:
            self.say_tasks_removed()

    def say_tasks_removed(self) -> None:
        """The ERROR for folders that wait on it (again after each check that finds it
        still gone, like every pause); a WARNING when only the fallback is lost."""
        removed = self.tasks_removed()
        if removed is None:
            return
        tasks = self._folder_keys(TASKS)
        if tasks:
            logger.error("POST /tasks is gone (%s): %s have no other path, so their files "
                         "wait in the inbox. Fix: %s", removed, _which(tasks, TASKS),
                         SWITCH_TO_AUTO)
        else:
            logger.warning("POST /tasks is gone (%s): upload_method auto no longer falls "
                           "back to it when multipart is refused", removed)

    def reopen_multipart(self) -> list[int]:
        """Multipart is allowed again; returns the parked files (those that still cannot
        go park again)."""
        with self._lock:
            was, self._multipart_refused = self._multipart_refused, None
            parked, self._parked = sorted(self._parked), set()
        if was:
            logger.info("Twelve Labs allows multipart uploads again; folders on auto and "
                        "multipart use them from now on")
        return parked

    def reopen_tasks(self) -> list[int]:
        with self._lock:
            was, self._tasks_removed = self._tasks_removed, None
            parked, self._parked = sorted(self._parked), set()
        if was:
            logger.info("POST /tasks answers again; folders on upload_method tasks resume")
        return parked

    # -- for the pause check, the sweep and status ------------------------------------

    def multipart_refused(self) -> str | None:
        with self._lock:
            return self._multipart_refused

    def tasks_removed(self) -> str | None:
        with self._lock:
            return self._tasks_removed

    def parked(self) -> set[int]:
        with self._lock:
            return set(self._parked)

    def snapshot(self) -> UploadPathsSnapshot:
        """For ``watcherd status``."""
        with self._lock:
            refused, removed, waiting = (self._multipart_refused, self._tasks_removed,
                                         len(self._parked))
        return {"multipart_refused": refused, "tasks_removed": removed,
                "fallback": bool(refused) and not removed, "waiting": waiting}

    def describe(self) -> str | None:
        """For the status line."""
        snap = self.snapshot()
        parts = []
        if snap["multipart_refused"]:
            parts.append("multipart refused" + (", auto falls back to POST /tasks"
                                                if snap["fallback"] else ""))
        if snap["tasks_removed"]:
            parts.append("POST /tasks gone")
        if snap["waiting"]:
            parts.append(f"{snap['waiting']} file(s) wait for an upload path")
        return "; ".join(parts) or None

    def _folder_keys(self, method: str) -> list[str]:
        config = self._config()
        return [f"folders[{i}]" for i, f in enumerate(config.folders)
                if f.upload_method == method]


def _which(keys: list[str], method: str) -> str:
    return f"{', '.join(keys)} (upload_method {method})"
