"""Find the Twelve Labs API key without ever logging it.

Order: ``api.key_file``, then ``$CREDENTIALS_DIRECTORY/api-key`` (systemd's
``LoadCredential=``), then the ``TWELVELABS_API_KEY`` environment variable.
The key is re-read on every call so that fixing a key file is enough to
resume after a 401. At start a missing key is a configuration error; while
running (``key_for_request``) it is a pause, like a refused key: a rotation
that leaves the file briefly empty or missing must not fail any file.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from watcherd.errors import ConfigError, KeyUnavailable

logger = logging.getLogger(__name__)

ENV_VAR = "TWELVELABS_API_KEY"
CREDENTIAL_NAME = "api-key"
# The key is read per request: warn about a loose file once, not per request.
_loose_files_warned: set[Path] = set()


@dataclass(frozen=True)
class ApiKey:
    value: str
    source: str  # human description, safe to log

    def __repr__(self) -> str:  # keeps the key out of tracebacks and debug dumps
        return f"ApiKey(source={self.source!r})"


def resolve_api_key(key_file: Path | None, env: dict[str, str] | None = None) -> ApiKey:
    env = dict(os.environ) if env is None else env
    if key_file is not None:
        return ApiKey(_read_key_file(key_file, "api.key_file"), f"file {key_file}")
    cred_dir = env.get("CREDENTIALS_DIRECTORY")
    if cred_dir:
        cred = Path(cred_dir) / CREDENTIAL_NAME
        if cred.exists():
            return ApiKey(_read_key_file(cred, "credential"), f"credential {CREDENTIAL_NAME}")
    if env.get(ENV_VAR, "").strip():
        return ApiKey(env[ENV_VAR].strip(), f"environment variable {ENV_VAR}")
    raise ConfigError([
        "api.key_file: no API key found: set api.key_file, or pass the credential "
        f"'{CREDENTIAL_NAME}' with LoadCredential=, or set {ENV_VAR}"
    ])


def key_for_request(key_file: Path | None) -> str:
    """The key for the next request; KeyUnavailable (an upload pause) if none can be read."""
    try:
        return resolve_api_key(key_file).value
    except ConfigError as exc:
        raise KeyUnavailable("; ".join(exc.errors)) from None


def key_source(key_file: Path | None) -> str:
    """Where the key comes from right now, for messages (never the key itself)."""
    try:
        return resolve_api_key(key_file).source
    except ConfigError as exc:
        return "; ".join(exc.errors)


def _read_key_file(path: Path, key: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError([f"{key}: cannot read {path}: {exc.strerror or exc}"]) from exc
    if not text:
        raise ConfigError([f"{key}: {path} is empty"])
    if mode & stat.S_IROTH and path not in _loose_files_warned:
        _loose_files_warned.add(path)
        logger.warning("API key file %s is world-readable; chmod 600 it", path)
    return text
