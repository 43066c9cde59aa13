"""Load the YAML config once into frozen dataclasses.

Every problem is collected (not just the first) and reported with its key
path, e.g. ``folders[1].index_id: required``. Nothing outside this module sees
a raw dict. Relative paths resolve against the config file's folder.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import watcherd.media.profiles as profiles
from watcherd.cluster.settings import CoordinationConfig, parse_coordination
from watcherd.errors import ConfigError
from watcherd.foldersources import KEYS as SOURCE_KEYS
from watcherd.foldersources import MetadataSettings, parse_sources
from watcherd.media.profiles import AUTO, MODEL_CHOICES, FolderProfile, LimitOverrides
from watcherd.metricsconfig import MetricsConfig, parse_metrics
from watcherd.webhookconfig import TOP_KEYS as WEBHOOK_TOP_KEYS
from watcherd.webhookconfig import Webhooks, parse_webhooks
from watcherd.yamlreader import Errors, Reader, Section

DEFAULT_CONFIG_PATH = "/etc/watcherd/config.yaml"
# The unit's ConfigurationDirectory= and StateDirectory= (systemd/watcherd.service):
# a config in the first keeps its database in the second, whoever reads it.
SYSTEM_CONFIG_DIR = Path(DEFAULT_CONFIG_PATH).parent
SYSTEM_STATE_DB = Path("/var/lib/watcherd/state.db")
USER_STATE_DB = Path(".local/state/watcherd/state.db")  # under the user's home
DEFAULT_BASE_URL = "https://api.twelvelabs.io/v1.3"
# How a file reaches Twelve Labs: "multipart" (resumable assets, then indexed
# assets), "tasks" (the legacy single POST /tasks) or "auto" (multipart, with
# /tasks as the fallback for an account refused multipart).
AUTO_METHOD, MULTIPART, TASKS = "auto", "multipart", "tasks"
UPLOAD_METHODS = (AUTO_METHOD, MULTIPART, TASKS)
VIDEO_EXTENSIONS = tuple(
    ".mp4 .mov .m4v .mkv .webm .avi .mxf .mts .m2ts .ts .wmv .flv .mpg .mpeg .3gp".split()
)


@dataclass(frozen=True)
class ApiConfig:
    base_url: str = DEFAULT_BASE_URL
    key_file: Path | None = None
    connect_timeout_seconds: float = 10.0
    # Applies to every socket read and write, so it bounds a stalled upload
    # without capping how long a healthy 2 GB upload may take.
    io_timeout_seconds: float = 300.0


@dataclass(frozen=True)
class FolderConfig:
    path: Path
    index_id: str
    # "auto": the index's models decide (``profiles``); a profile name pins one.
    model: str = AUTO
    done_dir: Path = Path()
    failed_dir: Path = Path()
    recursive: bool = False
    polling: bool = False
    require_audio: bool = False
    language: str | None = None
    # Content already indexed in this index (same sha256) is not uploaded again.
    dedupe: bool = True
    extensions: tuple[str, ...] = tuple(VIDEO_EXTENSIONS)
    limits: LimitOverrides = ()  # folders[].limits: (key, value) pairs over the profile
    # folders[].upload_method, else the top-level upload_method (resolved at load).
    upload_method: str = "auto"
    # What goes in with each video, and what becomes of the source (``foldersources``):
    # "move" to done/failed, "leave" in place (sidecars in records_dir), "delete" once ready.
    metadata: MetadataSettings = field(default_factory=MetadataSettings)
    after: str = "move"
    records_dir: Path | None = None
    # What files are validated with: set from the index at start and on reload
    # (``folderprofiles``). Not configuration, so it takes no part in equality.
    profile: FolderProfile = field(default_factory=profiles.default, compare=False)


def stall_seconds_for(api: ApiConfig) -> float:
    """The default ``stall_seconds``: both API timeouts plus a minute."""
    return api.connect_timeout_seconds + api.io_timeout_seconds + 60


@dataclass(frozen=True)
class Config:
    source: Path | None
    api: ApiConfig
    state_db: Path
    folders: tuple[FolderConfig, ...]
    settle_seconds: float = 5.0
    poll_interval_seconds: float = 10.0
    # One list request per index for all unfinished tasks instead of a GET each.
    poll_batch: bool = True
    rescan_interval_seconds: float = 300.0
    upload_workers: int = 1
    upload_method: str = "auto"
    # Chunk PUTs in flight per file on the multipart path, and across all
    # upload workers together (the uplink is shared).
    chunk_concurrency: int = 4
    max_chunk_connections: int = 8
    pause_check_seconds: float = 60.0
    # A task not terminal after this long fails the file rather than pinning it forever.
    task_timeout_seconds: float = 86400.0
    # Finished files' history (and failed/vanished rows) older than this is pruned;
    # 0 keeps everything. What dedupe needs is kept forever (``Store.prune``).
    history_retention_days: float = 90.0
    # A service thread showing no progress for this long counts as hung (the
    # systemd watchdog pings stop).
    stall_seconds: float = stall_seconds_for(ApiConfig())
    log_level: str = "info"
    metrics: MetricsConfig = field(default_factory=MetricsConfig)  # off unless listen is set
    # webhooks (the receivers) and webhook_retry_hours: ``webhookconfig``.
    webhooks: Webhooks = field(default_factory=Webhooks)
    # Folders removed by a reload that still have files in flight: no longer
    # watched or scanned, but their files finish with the settings they had.
    retired: tuple[FolderConfig, ...] = ()
    # Said once at start and on reload (e.g. a deprecated spelling); not errors.
    warnings: tuple[str, ...] = ()
    # Several hosts on one share (``cluster/``); None: this daemon runs alone.
    coordination: CoordinationConfig | None = None

    def folder_for(self, path: str | os.PathLike) -> FolderConfig | None:
        """The configured folder whose tree holds ``path`` (deepest match)."""
        # Prefixes of parts: is_relative_to without a Path per parent (once per hint).
        target = Path(path).parts
        for folders in (self.folders, self.retired):
            matches = [f for f in folders if target[:len(f.path.parts)] == f.path.parts]
            if matches:
                return max(matches, key=lambda f: len(f.path.parts))
        return None

    def folder_keys_by_index(self) -> dict[str, list[str]]:
        """Each index id with the config keys (``folders[i]``) of the folders that use it."""
        found: dict[str, list[str]] = {}
        for i, folder in enumerate(self.folders):
            found.setdefault(folder.index_id, []).append(f"folders[{i}]")
        return found


TOP_KEYS = {
    "api", "state_db", "settle_seconds", "poll_interval_seconds", "rescan_interval_seconds",
    "upload_workers", "folders", "log_level", "pause_check_seconds", "task_timeout_seconds",
    "stall_seconds", "poll_batch", "history_retention_days", "upload_method",
    "chunk_concurrency", "max_chunk_connections", "metrics", "coordination",
} | WEBHOOK_TOP_KEYS
API_KEYS = {"base_url", "key_file", "connect_timeout_seconds", "io_timeout_seconds"}
FOLDER_KEYS = {
    "path", "index_id", "model", "done_dir", "failed_dir", "recursive", "polling",
    "require_audio", "language", "dedupe", "extensions", "limits", "upload_method",
    *SOURCE_KEYS,
}
LOG_LEVELS = ("debug", "info", "warning", "error")


def load_config(path: str | os.PathLike, env: dict[str, str] | None = None) -> Config:
    """Read and validate ``path``; raise ConfigError listing every problem."""
    env = dict(os.environ) if env is None else env
    import yaml  # here, not at the top: ``watcherd --version`` needs no YAML parser

    source = Path(path).expanduser().absolute()
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read: {exc.strerror or exc}"], str(source)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: not valid YAML: {exc}"], str(source)) from exc
    return parse_config(raw, base_dir=source.parent, env=env, source=source)


def parse_config(
    raw: Any, *, base_dir: Path, env: dict[str, str], source: Path | None = None
) -> Config:
    errors = Errors()
    reader = Reader(errors, base_dir)
    if not isinstance(raw, dict):
        raise ConfigError(["(top level): must be a mapping with a 'folders' list"], str(source))
    reader.unknown_keys(raw, TOP_KEYS, "")
    top = Section(reader, raw, Config)
    api = _parse_api(reader, raw.get("api") or {})
    upload_method = top.choice("upload_method", UPLOAD_METHODS)
    numbered = _parse_folders(reader, raw.get("folders"), upload_method)
    state_db = top.path("state_db") or default_state_db(source, env)
    config = Config(
        source=source,
        api=api,
        state_db=state_db,
        folders=tuple(folder for _, folder in numbered),
        settle_seconds=top.number("settle_seconds", minimum=0),
        poll_interval_seconds=top.number("poll_interval_seconds", minimum=0.05),
        poll_batch=top.boolean("poll_batch"),
        rescan_interval_seconds=top.number("rescan_interval_seconds", minimum=0.1),
        upload_workers=int(top.number("upload_workers", minimum=1, maximum=16, integer=True)),
        upload_method=upload_method,
        chunk_concurrency=int(top.number("chunk_concurrency", minimum=1, maximum=64,
                                         integer=True)),
        max_chunk_connections=int(top.number("max_chunk_connections", minimum=1, maximum=256,
                                             integer=True)),
        pause_check_seconds=top.number("pause_check_seconds", minimum=0.1),
        task_timeout_seconds=top.number("task_timeout_seconds", minimum=1),
        history_retention_days=top.number("history_retention_days", minimum=0),
        stall_seconds=top.number("stall_seconds", minimum=5, default=stall_seconds_for(api)),
        log_level=top.choice("log_level", LOG_LEVELS),
        metrics=parse_metrics(reader, raw.get("metrics")),
        webhooks=parse_webhooks(reader, raw, base_url_problem),
        warnings=tuple(errors.warnings),
        coordination=parse_coordination(reader, raw.get("coordination")),
    )
    _check_folder_overlaps(numbered, errors)
    if errors.lines:
        raise ConfigError(errors.lines, str(source) if source else None)
    return config


def default_state_db(source: Path | None, env: dict[str, str]) -> Path:
    """Where the database is when ``state_db`` is unset: derived from the config file alone.

    Not from ``$STATE_DIRECTORY``, which only the service sees: an operator's
    ``watcherd status`` (or a second ``run``) with the same config must land on
    the same database as the service.
    """
    if source is not None and Path(os.path.normpath(source)).parent == SYSTEM_CONFIG_DIR:
        return SYSTEM_STATE_DB
    home = env.get("HOME") or str(Path.home())
    return Path(home) / USER_STATE_DB


def _parse_api(reader: Reader, raw: Any) -> ApiConfig:
    if not isinstance(raw, dict):
        reader.errors.add("api", "must be a mapping")
        return ApiConfig()
    reader.unknown_keys(raw, API_KEYS, "api")
    api = Section(reader, raw, ApiConfig, "api")
    base_url = api.string("base_url")
    problem = base_url_problem(base_url) if base_url else None
    if problem:
        reader.errors.add("api.base_url", problem)
    return ApiConfig(
        base_url=(base_url or api.default("base_url")).rstrip("/"),
        key_file=api.path("key_file"),
        connect_timeout_seconds=api.number("connect_timeout_seconds", minimum=0.1),
        io_timeout_seconds=api.number("io_timeout_seconds", minimum=0.1),
    )


def base_url_problem(url: str) -> str | None:
    """The API key travels with every request: only over TLS, or to this machine itself."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed [ in an IPv6 address
        parts, host = None, None
    if parts is not None and host and parts.scheme == "https":
        return None
    if parts is not None and host and parts.scheme == "http" and _is_loopback(host):
        return None
    return (f"must start with https:// (plain http:// is allowed only for a loopback host: "
            f"localhost, 127.0.0.0/8 or [::1]); got {url!r}")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_folders(reader: Reader, raw: Any,
                   upload_method: str) -> list[tuple[int, FolderConfig]]:
    """The valid folders, each with its position in the YAML list."""
    if raw is None:
        reader.errors.add("folders", "required: a list of drop folders")
        return []
    if not isinstance(raw, list) or not raw:
        reader.errors.add("folders", "must be a non-empty list")
        return []
    folders = []
    for i, item in enumerate(raw):
        folder = _parse_folder(reader, item, f"folders[{i}]", upload_method)
        if folder is not None:
            folders.append((i, folder))
    return folders


def _parse_folder(reader: Reader, raw: Any, key: str, upload_method: str) -> FolderConfig | None:
    if not isinstance(raw, dict):
        reader.errors.add(key, "must be a mapping with at least 'path' and 'index_id'")
        return None
    reader.unknown_keys(raw, FOLDER_KEYS, key)
    folder = Section(reader, raw, FolderConfig, key)
    path = folder.path("path", required=True)
    index_id = folder.string("index_id", required=True)
    model = folder.choice("model", MODEL_CHOICES)
    deprecated = profiles.deprecation(model)
    if deprecated:
        reader.errors.warn(f"{key}.model", deprecated)
    model = profiles.canonical(model)
    overrides = tuple(folder.limits().items())
    # Read every field before giving up, so one run reports every problem.
    done_dir = folder.path("done_dir")
    failed_dir = folder.path("failed_dir")
    recursive = folder.boolean("recursive")
    polling = folder.boolean("polling")
    require_audio = folder.boolean("require_audio")
    language = folder.string("language")
    dedupe = folder.boolean("dedupe")
    extensions = folder.extensions()
    method = reader.choice(raw, "upload_method", folder.key("upload_method"), UPLOAD_METHODS,
                           upload_method)
    sources = parse_sources(reader, raw, key, path=path, recursive=recursive,
                            done_dir=done_dir, failed_dir=failed_dir)
    profile = profiles.default(overrides) if model == AUTO else profiles.pinned(model, overrides)
    if path is None or index_id is None:
        return None
    if sources.after == "leave":  # nothing moves: only sidecars are written, to records_dir
        done_dir = failed_dir = sources.records_dir
    return FolderConfig(
        path=path, index_id=index_id, model=model,
        done_dir=done_dir or path / "done", failed_dir=failed_dir or path / "failed",
        recursive=recursive, polling=polling, require_audio=require_audio, language=language,
        dedupe=dedupe, extensions=extensions, limits=overrides, upload_method=method,
        metadata=sources.metadata, after=sources.after,
        records_dir=sources.records_dir or (done_dir or path / "done"
                                            if sources.after == "delete" else None),
        profile=profile,
    )


def _check_folder_overlaps(numbered: list[tuple[int, FolderConfig]], errors: Errors) -> None:
    """Cross-field checks, run after every field parsed."""
    for n, (i, folder) in enumerate(numbered):
        for name in ("done_dir", "failed_dir"):
            if getattr(folder, name) == folder.path:
                errors.add(f"folders[{i}].{name}", "must differ from the folder's path")
        if folder.done_dir == folder.failed_dir and folder.after != "leave":
            errors.add(f"folders[{i}].failed_dir", "must differ from done_dir")
        for name in ("done_dir", "failed_dir"):
            target = getattr(folder, name)
            for j, other in numbered:
                if j != i and (target == other.path or
                               (other.recursive and target.is_relative_to(other.path))):
                    errors.add(f"folders[{i}].{name}",
                               f"inside folders[{j}]: its files would be uploaded again")
        for j, other in numbered[:n]:
            if folder.path == other.path:
                errors.add(f"folders[{i}].path", f"same folder as folders[{j}].path")
            elif other.recursive and folder.path.is_relative_to(other.path):
                errors.add(f"folders[{i}].path", f"inside folders[{j}], which is recursive")
            elif folder.recursive and other.path.is_relative_to(folder.path):
                errors.add(f"folders[{i}].path", f"recursive and contains folders[{j}]")
