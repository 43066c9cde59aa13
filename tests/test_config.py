"""Config: frozen dataclasses, every error with its key path, exit 78 from the CLI."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from watcherd.config import VIDEO_EXTENSIONS, load_config, parse_config
from watcherd.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_example_config_is_valid_and_documents_every_key():
    config = load_config(ROOT / "config.example.yaml")
    folder = config.folders[0]
    assert folder.path == Path("/srv/drop/inbox")
    assert folder.done_dir == Path("/srv/drop/done")
    assert config.api.base_url == "https://api.twelvelabs.io/v1.3"
    text = (ROOT / "config.example.yaml").read_text()
    for field in dataclasses.fields(type(config)):
        # retired: set by reloads; warnings: what parsing noticed
        if field.name not in ("source", "folders", "retired", "warnings"):
            assert field.name in text, f"{field.name} missing from config.example.yaml"
    for field in dataclasses.fields(type(folder)):
        assert field.name in text, f"folders[].{field.name} missing from config.example.yaml"


def test_defaults_and_relative_paths_resolve_against_the_config_folder(tmp_path):
    config = load_config(write(tmp_path, "folders:\n  - {path: inbox, index_id: idx}\n"),
                         env={"STATE_DIRECTORY": "/var/lib/watcherd", "HOME": "/home/op"})
    folder = config.folders[0]
    assert folder.path == tmp_path / "inbox"
    assert folder.done_dir == tmp_path / "inbox" / "done"
    assert folder.failed_dir == tmp_path / "inbox" / "failed"
    assert folder.model == "auto" and folder.limits == ()
    assert folder.profile.name == "marengo3.0" and folder.profile.source == "default"
    assert folder.extensions == tuple(VIDEO_EXTENSIONS)
    # Not $STATE_DIRECTORY: only the service sees it, and its operator must find the same file.
    assert config.state_db == Path("/home/op/.local/state/watcherd/state.db")
    assert config.settle_seconds == 5 and config.upload_workers == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.settle_seconds = 1  # type: ignore[misc]


@pytest.mark.parametrize("env", [
    {"STATE_DIRECTORY": "/var/lib/watcherd", "HOME": "/var/lib/watcherd"},  # the service
    {"HOME": "/root"}, {"HOME": "/home/operator"}, {}])  # whoever runs a command
def test_the_system_config_keeps_its_database_in_var_lib_for_everyone(env):
    raw = {"folders": [{"path": "/srv/drop/inbox", "index_id": "idx"}]}
    config = parse_config(raw, base_dir=Path("/etc/watcherd"), env=env,
                          source=Path("/etc/watcherd/config.yaml"))
    assert config.state_db == Path("/var/lib/watcherd/state.db")


def test_pinned_model_and_limit_overrides(tmp_path):
    config = load_config(write(tmp_path, """
folders:
  - path: /in
    index_id: idx
    model: pegasus1.2
    extensions: [MP4, .mov]
    limits: {min_short_side: 240, max_duration_seconds: 60}
"""), env={})
    limits = config.folders[0].profile.limits
    assert limits.max_long_side == 3840 and config.folders[0].profile.name == "pegasus1.2"
    assert limits.min_short_side == 240 and limits.max_duration_seconds == 60.0
    assert config.folders[0].extensions == (".mp4", ".mov")


def test_every_error_is_reported_with_its_key_path(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, """
api: {base_url: ftp://nope, surprise: 1}
settle_seconds: -1
upload_workers: 1.5
colour: blue
folders:
  - {path: /a, index_id: one, model: gpt, recursive: "yes"}
  - {path: /b, limits: {min_short_side: x, bogus: 1}}
  - {path: /a, index_id: three, done_dir: /a}
"""), env={})
    errors = caught.value.errors
    expected_prefixes = [
        "api.surprise: unknown key", "api.base_url: must start with https://",
        "settle_seconds: must be >= 0", "upload_workers: must be an integer",
        "colour: unknown key",
        "folders[0].model: must be one of auto, marengo3.0, marengo2.7, pegasus1.2",
        "folders[0].recursive: must be true or false", "folders[1].index_id: required",
        "folders[1].limits.min_short_side: must be an integer",
        "folders[1].limits.bogus: unknown limit", "folders[2].done_dir: must differ",
        "folders[2].path: same folder as folders[0].path",
    ]
    for prefix in expected_prefixes:
        assert any(e.startswith(prefix) for e in errors), (prefix, errors)


def test_missing_folders_and_unreadable_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="folders: required"):
        load_config(write(tmp_path, "settle_seconds: 1\n"), env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml", env={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "folders: [\n"), env={})


def test_recursive_folder_may_not_contain_another(tmp_path):
    with pytest.raises(ConfigError, match=r"folders\[1\]\.path: inside folders\[0\]"):
        load_config(write(tmp_path, """
folders:
  - {path: /drop, index_id: a, recursive: true}
  - {path: /drop/sub, index_id: b}
"""), env={})


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_cli_exits_78_with_the_key_path_and_no_traceback(tmp_path, command):
    path = write(tmp_path, "folders:\n  - {path: /a, index_id: x}\n  - {path: /b}\n")
    result = subprocess.run([sys.executable, "-m", "watcherd", command, "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78
    assert "folders[1].index_id: required" in result.stderr
    assert "Traceback" not in result.stderr


def test_upload_method_is_global_and_per_folder_with_chunk_settings(tmp_path):
    config = load_config(write(tmp_path, """
upload_method: tasks
chunk_concurrency: 6
max_chunk_connections: 12
folders:
  - {path: /a, index_id: x}
  - {path: /b, index_id: y, upload_method: multipart}
"""), env={})
    assert [f.upload_method for f in config.folders] == ["tasks", "multipart"]
    assert (config.chunk_concurrency, config.max_chunk_connections) == (6, 12)
    defaults = load_config(write(tmp_path, "folders:\n  - {path: /a, index_id: x}\n"), env={})
    assert defaults.upload_method == defaults.folders[0].upload_method == "auto"
    assert (defaults.chunk_concurrency, defaults.max_chunk_connections) == (4, 8)


def test_bad_upload_settings_exit_78_naming_each_key(tmp_path):
    path = write(tmp_path, """
upload_method: fast
chunk_concurrency: 0
max_chunk_connections: many
folders:
  - {path: /a, index_id: x, upload_method: s3}
""")
    result = subprocess.run([sys.executable, "-m", "watcherd", "check-config", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78, result.stderr
    for line in ("upload_method: must be one of auto, multipart, tasks (got 'fast')",
                 "folders[0].upload_method: must be one of auto, multipart, tasks (got 's3')",
                 "chunk_concurrency: ", "max_chunk_connections: "):
        assert line in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_prints_a_summary(tmp_path):
    path = write(tmp_path, f"folders:\n  - {{path: {tmp_path}, index_id: idx, polling: true}}\n")
    result = subprocess.run([sys.executable, "-m", "watcherd", "check-config", "-c", str(path)],
                            capture_output=True, text=True, timeout=60,
                            env={"TWELVELABS_API_KEY": "tlk_secret_value", "PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr
    assert f"folders[0]: {tmp_path} -> index idx (model auto, polling" in result.stdout
    assert "environment variable TWELVELABS_API_KEY" in result.stdout
    assert "tlk_secret_value" not in result.stdout


def test_run_without_any_api_key_exits_78(tmp_path):
    path = write(tmp_path, f"state_db: {tmp_path}/s.db\nfolders:\n  - {{path: {tmp_path}, "
                           "index_id: idx}\n")
    result = subprocess.run([sys.executable, "-m", "watcherd", "run", "-c", str(path)],
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin", "HOME": str(tmp_path)})
    assert result.returncode == 78
    assert "api.key_file: no API key found" in result.stderr


def test_done_dir_inside_another_watched_folder_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"folders\[0\]\.done_dir: inside folders\[1\]"):
        load_config(write(tmp_path, """
folders:
  - {path: /drop/a, index_id: a, done_dir: /drop/b}
  - {path: /drop/b, index_id: b}
"""), env={})


def test_run_with_an_unusable_state_db_exits_1_with_a_clear_line(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state folder should be")
    path = write(tmp_path, f"state_db: {blocker}/state.db\nfolders:\n"
                           f"  - {{path: {tmp_path}, index_id: idx}}\n")
    result = subprocess.run([sys.executable, "-m", "watcherd", "run", "-c", str(path)],
                            capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin", "TWELVELABS_API_KEY": "tlk_x"})
    assert result.returncode == 1
    assert "cannot run:" in result.stderr and str(blocker) in result.stderr
    assert "Traceback" not in result.stderr
