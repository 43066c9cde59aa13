"""``watcherd`` run by root, but refused files the way a service user is refused them.

Usage: python unprivileged_daemon.py run --config FILE

Root reads a file whatever its mode. When the tests run as root and the
unprivileged ``nobody`` cannot even start this interpreter (it lives in a
private home), the permission check is put back at the two calls where
watcherd opens media: Python's ``open`` and PyAV's ``av.open``. A regular
file without any read bit (``chmod 0``) then fails with EACCES, as it would
for the service user; everything else behaves as usual.
"""

from __future__ import annotations

import builtins
import errno
import os
import stat
import sys
from typing import Any

import av

import watcherd.cli.main as cli

_open = builtins.open
_av_open = av.open


def _refused_to_a_user(path: Any) -> bool:
    if isinstance(path, int):
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False  # the real call reports it
    return stat.S_ISREG(st.st_mode) and not st.st_mode & 0o444


def checked_open(file: Any, *args: Any, **kwargs: Any) -> Any:
    if _refused_to_a_user(file):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(file))
    return _open(file, *args, **kwargs)


def checked_av_open(file: Any, *args: Any, **kwargs: Any) -> Any:
    if _refused_to_a_user(file):  # what FFmpeg's EACCES becomes in PyAV
        raise av.error.PermissionError(errno.EACCES, os.strerror(errno.EACCES),
                                       os.fspath(file))
    return _av_open(file, *args, **kwargs)


if __name__ == "__main__":
    builtins.open = checked_open
    av.open = checked_av_open
    sys.exit(cli.main(sys.argv[1:]))
