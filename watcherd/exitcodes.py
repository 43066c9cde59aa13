"""The exit codes of every ``watcherd`` command and of the daemon.

2 (a bad command line) is argparse's own, and a ``SystemExit`` with a message
exits 1.
"""

EXIT_OK = 0
EXIT_FAIL = 1  # rejected, failed or not found; or the daemon cannot run (lock, database)
EXIT_CONFIG = 78  # EX_CONFIG: invalid configuration; the unit's RestartPreventExitStatus
