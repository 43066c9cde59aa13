"""The file state machine, in one place.

    settling ──stable──▶ queued ──▶ validating ──▶ uploading ──▶ indexing
       │  ▲                 │            │             │            │
       │  └────changed──────┴────────────┴─────────────┘            │
       │                                 │ rejected                 │ ready / failed
       ▼                                 ▼                          ▼
    vanished                        finalizing ◀────────────────────┘
                                      │      │
                                      ▼      ▼
                                    done   failed

``finalizing`` records the move's target before the move happens, so a crash
between the move and the row update can be repaired on the next start.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """Each value is what the database and every JSON output hold."""

    SETTLING = "settling"
    QUEUED = "queued"
    VALIDATING = "validating"
    UPLOADING = "uploading"
    INDEXING = "indexing"
    FINALIZING = "finalizing"
    DONE = "done"
    FAILED = "failed"
    VANISHED = "vanished"

    def __repr__(self) -> str:
        # Shown like the plain string it replaced, e.g. in argparse's "choose from
        # 'done', ..." and in messages that print a tuple of states.
        return repr(self.value)


ACTIVE_STATES = (
    State.SETTLING, State.QUEUED, State.VALIDATING, State.UPLOADING, State.INDEXING,
    State.FINALIZING,
)
FINAL_STATES = (State.DONE, State.FAILED, State.VANISHED)
STATE_NAMES = (*ACTIVE_STATES, *FINAL_STATES)
# The file is still in the inbox and has not reached the API yet.
PRE_UPLOAD_STATES = (State.SETTLING, State.QUEUED, State.VALIDATING)

# A settling row's error_code while the file cannot be opened (permissions).
UNREADABLE = "unreadable"

# Twelve Labs task statuses (twelvelabs-api.md section 2.2).
TERMINAL_TASK_STATUSES = ("ready", "failed")
KNOWN_TASK_STATUSES = (
    "uploading", "validating", "pending", "queued", "indexing", "ready", "failed",
)

# The multipart path: an asset's statuses, then its indexed asset's (research
# round 2, sections 1.1 and 1.3); an indexed asset's are a subset of a task's.
ASSET_STATUSES = ("processing", "ready", "failed")
INDEXED_ASSET_STATUSES = ("pending", "queued", "indexing", "validating", "ready", "failed")
