"""The command line: probe's verdicts and exit codes, list output, help."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY
from watcherd.simulator.clips import make_video
from watcherd.state.states import State
from watcherd.state.store import Store


def watcherd(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "watcherd", *args], capture_output=True,
                          text=True, timeout=60, env=env)


def test_probe_accepts_a_valid_file_with_exit_0(valid_clip):
    result = watcherd("probe", str(valid_clip))
    assert result.returncode == 0, result.stderr
    assert "ACCEPTED" in result.stdout
    for rule in ("size", "decodable", "complete", "resolution", "duration", "audio"):
        assert rule in result.stdout


def test_probe_rejects_with_exit_1_and_names_the_rule(clip_dir):
    short = make_video(clip_dir / "cli-short.mp4", seconds=3)
    result = watcherd("probe", str(short), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["model"] == "marengo3.0" and report["accepted"] is False
    assert report["profile"]["source"] == "default"
    assert report["rule"] == "duration" and "limits.min_duration_seconds" in report["reason"]
    assert {v["rule"]: v["status"] for v in report["verdicts"]}["duration"] == "fail"


@pytest.fixture(scope="module")
def ultrawide(clip_dir) -> Path:
    return make_video(clip_dir / "cli-5184x2160.mp4", width=5184, height=2160, seconds=5, fps=1,
                      audio=False)


def test_probe_a_5184x2160_clip_passes_marengo_3_0_and_fails_marengo_2_7(ultrawide):
    new = watcherd("probe", str(ultrawide), "--model", "marengo3.0")
    assert new.returncode == 0, new.stdout + new.stderr
    assert "ACCEPTED" in new.stdout and "override" in new.stdout  # the profile's source
    old = watcherd("probe", str(ultrawide), "--model", "marengo2.7", "--json")
    assert old.returncode == 1
    report = json.loads(old.stdout)
    assert (report["model"], report["rule"]) == ("marengo2.7", "resolution")
    assert report["profile"]["source"] == "override"
    assert report["profile"]["limits"]["max_long_side"] == 3840


def test_probe_accepts_the_old_spellings_with_a_warning(ultrawide):
    result = watcherd("probe", str(ultrawide), "--model", "marengo", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["model"] == "marengo3.0"
    assert "'marengo' is deprecated: it now means marengo3.0" in result.stderr


def probe_config(tmp_path: Path, base_url: str) -> Path:
    config = tmp_path / "probe.yaml"
    config.write_text(f"api: {{base_url: '{base_url}', connect_timeout_seconds: 1, "
                      f"io_timeout_seconds: 2}}\nstate_db: {tmp_path / 'state.db'}\n"
                      f"folders:\n  - {{path: {tmp_path}, index_id: idx_test}}\n")
    return config


def test_probe_index_uses_the_indexs_models_then_the_cache_when_offline(tmp_path, fake_api,
                                                                        ultrawide):
    env = {**os.environ, "TWELVELABS_API_KEY": TEST_KEY}
    fake_api.index_models["idx_old"] = ["marengo2.7"]
    fake_api.indexes.append("idx_old")
    config = probe_config(tmp_path, fake_api.base_url)
    new = watcherd("probe", str(ultrawide), "--index", "idx_test", "-c", str(config), env=env)
    assert new.returncode == 0, new.stdout + new.stderr
    assert "from index" in new.stdout and "marengo3.0" in new.stdout
    old = watcherd("probe", str(ultrawide), "--index", "idx_old", "-c", str(config), "--json",
                   env=env)
    assert old.returncode == 1, old.stderr
    profile = json.loads(old.stdout)["profile"]
    assert (profile["name"], profile["source"], profile["models"]) == (
        "marengo2.7", "index", ["marengo2.7"])
    assert fake_api.count("GET", "/indexes/idx_old") == 1

    offline = probe_config(tmp_path, "http://127.0.0.1:9/v1.3")  # nothing listens there
    missing = watcherd("probe", str(ultrawide), "--index", "idx_old", "-c", str(offline), env=env)
    assert missing.returncode == 1 and "no cached answer" in missing.stderr
    store = Store(tmp_path / "state.db").open()
    store.save_index_models("idx_old", ("marengo2.7",))  # what a daemon saved at its start
    store.close()
    cached = watcherd("probe", str(ultrawide), "--index", "idx_old", "-c", str(offline),
                      "--json", env=env)
    assert cached.returncode == 1
    assert json.loads(cached.stdout)["profile"]["source"] == "cache"
    assert "using its models as the daemon last saw them" in cached.stderr


def test_probe_index_refuses_a_pegasus_only_index(tmp_path, fake_api, valid_clip):
    fake_api.index_models["idx_test"] = ["pegasus1.2"]
    result = watcherd("probe", str(valid_clip), "--index", "idx_test", "-c",
                      str(probe_config(tmp_path, fake_api.base_url)),
                      env={**os.environ, "TWELVELABS_API_KEY": TEST_KEY})
    assert result.returncode == 1
    assert "index idx_test has only pegasus1.2, which can no longer take new videos" \
        in result.stderr


def test_probe_require_audio_and_missing_file(clip_dir):
    silent = make_video(clip_dir / "cli-silent.mp4", audio=False)
    assert watcherd("probe", str(silent)).returncode == 0
    assert watcherd("probe", str(silent), "--require-audio").returncode == 1
    missing = watcherd("probe", str(clip_dir / "nope.mp4"))
    assert missing.returncode == 1 and "no such file" in missing.stderr


def test_list_shows_every_tracked_file_newest_first_as_text_and_json(tmp_path):
    db = tmp_path / "state.db"
    config = tmp_path / "config.yaml"
    config.write_text(f"state_db: {db}\nfolders:\n  - {{path: {tmp_path}, index_id: idx}}\n")
    assert watcherd("status", "-c", str(config)).returncode == 1  # no database yet
    assert watcherd("list", "-c", str(config)).stdout == "no tracked files\n"
    assert watcherd("list", "--json", "-c", str(config)).stdout == ""
    store = Store(db).open()
    a = store.add(path=f"{tmp_path}/a.mp4", folder=str(tmp_path), index_id="idx")
    store.transition(a.id, State.INDEXING, task_id="t1", video_id="v1")
    b = store.add(path=f"{tmp_path}/b.mp4", folder=str(tmp_path), index_id="idx")
    store.transition(b.id, State.FAILED, reason="duration 3 s is below the minimum")
    store.close()
    rows = [json.loads(line) for line in watcherd("list", "--json", "-c",
                                                  str(config)).stdout.splitlines()]
    assert [(r["path"], r["state"], r["task_id"], r["video_id"]) for r in rows] == [
        (f"{tmp_path}/b.mp4", "failed", None, None), (f"{tmp_path}/a.mp4", "indexing", "t1", "v1")]
    assert rows[0]["reason"] == "duration 3 s is below the minimum"
    failed_only = watcherd("list", "--state", "failed", "--json", "-c", str(config)).stdout
    assert [json.loads(line)["path"] for line in failed_only.splitlines()] == [f"{tmp_path}/b.mp4"]
    text = watcherd("list", "-c", str(config)).stdout
    assert "indexing" in text and "t1" in text and "below the minimum" in text


def test_every_command_has_help_with_examples():
    result = watcherd("--help")
    assert result.returncode == 0 and "examples:" in result.stdout
    for command in ("run", "check-config", "probe", "status", "list", "explain", "retry",
                    "scan"):
        result = watcherd(command, "--help")
        assert result.returncode == 0 and "examples:\n  watcherd " + command in result.stdout
    assert watcherd("frobnicate").returncode == 2


def test_help_and_version_load_no_command_module():
    """Every command's module is imported only when it runs: --version stays cheap."""
    probe = ("import sys\nfrom watcherd.cli.main import main\ntry:\n    main(['--version'])\n"
             "except SystemExit:\n    pass\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('rich', 'av', 'requests', 'watchdog') or m.startswith('watcherd.cli.')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("watcherd ")
    assert result.stdout.splitlines()[-1] == "['watcherd.cli.main']"


def test_every_registered_command_names_a_function_that_exists():
    import importlib

    from watcherd.cli.main import COMMANDS

    for command in COMMANDS:
        module, _, function = command.handler.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), command.name


def test_list_limit_and_since_pick_the_newest_rows(tmp_path):
    db = tmp_path / "state.db"
    config = tmp_path / "config.yaml"
    config.write_text(f"state_db: {db}\nfolders:\n  - {{path: {tmp_path}, index_id: idx}}\n")
    now = [1_700_000_000.0]
    store = Store(db, clock=lambda: now[0]).open()
    for n in range(5):
        store.add(path=f"{tmp_path}/{n}.mp4", folder=str(tmp_path), index_id="idx")
        now[0] += 86400
    store.close()

    def paths(*args: str) -> list[str]:
        result = watcherd("list", "--json", *args, "-c", str(config))
        assert result.returncode == 0, result.stderr
        return [Path(json.loads(line)["path"]).name for line in result.stdout.splitlines()]

    assert paths() == ["4.mp4", "3.mp4", "2.mp4", "1.mp4", "0.mp4"]  # --json: every row
    assert paths("--limit", "2") == ["4.mp4", "3.mp4"]
    assert paths("--limit", "0") == paths()
    since = __import__("datetime").datetime.fromtimestamp(1_700_000_000 + 3 * 86400)
    assert paths("--since", since.isoformat()) == ["4.mp4", "3.mp4"]
    assert paths("--since", "1d") == []  # every row is older than a day
    table = watcherd("list", "--limit", "3", "-c", str(config))
    assert [n for n in ("4.mp4", "3.mp4", "2.mp4", "1.mp4") if n in table.stdout] == [
        "4.mp4", "3.mp4", "2.mp4"]
    assert "--limit 0 for all" in table.stderr
    bad = watcherd("list", "--since", "last tuesday", "-c", str(config))
    assert bad.returncode == 2 and "neither an age" in bad.stderr


def test_list_streams_the_table_in_blocks_as_rows_come(tmp_path, monkeypatch, capsys):
    """The first block is printed before the last row is even read from the database."""
    import argparse

    import watcherd.cli.listing as listing

    db = tmp_path / "state.db"
    config = tmp_path / "config.yaml"
    config.write_text(f"state_db: {db}\nfolders:\n  - {{path: {tmp_path}, index_id: idx}}\n")
    store = Store(db).open()
    for n in range(listing.BLOCK_ROWS + 5):
        store.add(path=f"{tmp_path}/{n:04d}.mp4", folder=str(tmp_path), index_id="idx")
    store.close()
    read = []
    real = listing.list_row

    def counting(record):
        read.append(record.id)
        if len(read) == listing.BLOCK_ROWS + 1:  # the first row of the second block
            assert f"{listing.BLOCK_ROWS + 4:04d}.mp4" in capsys.readouterr().out
        return real(record)

    monkeypatch.setattr(listing, "list_row", counting)
    args = argparse.Namespace(config=str(config), folder=None, state=None, since=None,
                              limit=None, json=False)
    assert listing.cmd_list(args) == 0
    assert len(read) == listing.BLOCK_ROWS + 5


@pytest.mark.parametrize(("args", "unwanted"), [
    (["--version"], ("yaml", "rich", "requests", "watchdog", "av")),
    (["check-config"], ("rich", "requests", "watchdog", "av")),
    (["status", "--json"], ("rich", "requests", "watchdog", "av")),
])
def test_operator_commands_import_only_what_they_use(tmp_path, args, unwanted):
    config = tmp_path / "config.yaml"
    config.write_text(f"state_db: {tmp_path / 'state.db'}\n"
                      f"folders:\n  - {{path: {tmp_path}, index_id: idx}}\n")
    Store(tmp_path / "state.db").open().close()
    if args != ["--version"]:
        args = [*args, "-c", str(config)]
    probe = ("import sys\nfrom watcherd.cli.main import main\n"
             f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
             f"print('LOADED', sorted(m for m in {list(unwanted)!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60, env={**os.environ, "TWELVELABS_API_KEY": TEST_KEY})
    assert "LOADED []" in result.stdout, result.stdout + result.stderr


def test_status_does_not_count_files_another_host_claimed_as_waiting(tmp_path):
    from rich.console import Console

    from watcherd.cli.status import build_status, render_status
    from watcherd.config import parse_config
    from watcherd.state.states import CLAIMED_ELSEWHERE, State
    from watcherd.state.store import Store

    inbox = tmp_path / "inbox"
    config = parse_config({"state_db": str(tmp_path / "state.db"),
                           "folders": [{"path": str(inbox), "index_id": "idx"}]},
                          base_dir=tmp_path, env={})
    store = Store(config.state_db).open()
    try:
        for name, code in (("ours.mp4", None), ("theirs.mp4", CLAIMED_ELSEWHERE)):
            store.add(path=str(inbox / name), folder=str(inbox), index_id="idx",
                      state=State.SETTLING, error_code=code)
        status = build_status(config, store)
    finally:
        store.close()
    (folder,) = status["folders"]
    assert folder["elsewhere"] == 1 and folder["counts"]["settling"] == 2
    console = Console(record=True, width=250)
    render_status(status, console)
    header, row = [line for line in console.export_text().splitlines()
                   if "waiting" in line or str(inbox) in line][:2]
    columns = dict(zip(header.replace("last scan", "last_scan").replace(
        "other hosts", "other_hosts").split(), row.split(), strict=True))
    assert (columns["waiting"], columns["other_hosts"]) == ("1", "1")
