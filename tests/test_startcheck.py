"""``run`` and ``check-config`` refuse the same configurations at start (exit 78, key path).

Folders that are missing or not directories, a configured key file that is
missing or unreadable, no key source at all and the example's placeholder
index id; ``check-config --online`` also asks Twelve Labs, like run's
start-up checks. Both commands run as real subprocesses against the fake API.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TEST_KEY

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = ["run", "check-config"]


def example_index_id() -> str:
    """The placeholder config.example.yaml ships with (whatever it is spelt like)."""
    example = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    return example["folders"][0]["index_id"]


class Setup:
    """A valid config on temp folders against the fake API; each case breaks one thing."""

    def __init__(self, root: Path, api: Any) -> None:
        self.root = root
        for name in ("one", "two"):
            (root / name).mkdir()
        self.settings: dict[str, Any] = {
            "api": {"base_url": api.base_url, "connect_timeout_seconds": 2,
                    "io_timeout_seconds": 5},
            "state_db": str(root / "state" / "state.db"),
            "folders": [{"path": str(root / "one"), "index_id": "idx_test"},
                        {"path": str(root / "two"), "index_id": "idx_test"}],
        }
        self.env = {"PATH": os.environ.get("PATH", "/usr/bin"), "HOME": str(root),
                    "TWELVELABS_API_KEY": TEST_KEY}

    def watcherd(self, *args: str) -> subprocess.CompletedProcess:
        config = self.root / "config.yaml"
        config.write_text(yaml.safe_dump(self.settings))
        # run would wait forever on a missing folder before the fix: the timeout ends it.
        return subprocess.run([sys.executable, "-m", "watcherd", *args, "-c", str(config)],
                              capture_output=True, text=True, env=self.env, timeout=30,
                              cwd=self.root)


@pytest.fixture
def setup(tmp_path, fake_api) -> Setup:
    return Setup(tmp_path, fake_api)


def missing_folder(s: Setup) -> str:
    s.settings["folders"][1]["path"] = str(s.root / "not-mounted")
    return "folders[1].path: "


def folder_is_a_file(s: Setup) -> str:
    (s.root / "a-file").write_text("not a folder")
    s.settings["folders"][1]["path"] = str(s.root / "a-file")
    return "folders[1].path: "


def missing_key_file(s: Setup) -> str:
    s.settings["api"]["key_file"] = str(s.root / "no-such-key")
    return "api.key_file: cannot read"


def unreadable_key_file(s: Setup) -> str:
    # A directory where the key file should be: unreadable for root too.
    (s.root / "key-dir").mkdir()
    s.settings["api"]["key_file"] = str(s.root / "key-dir")
    return "api.key_file: cannot read"


def no_key_anywhere(s: Setup) -> str:
    del s.env["TWELVELABS_API_KEY"]
    return "api.key_file: no API key found"


def placeholder_index(s: Setup) -> str:
    s.settings["folders"][0]["index_id"] = example_index_id()
    return "folders[0].index_id: "


CASES: list[Callable[[Setup], str]] = [
    missing_folder, folder_is_a_file, missing_key_file, unreadable_key_file, no_key_anywhere,
    placeholder_index]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_a_config_error_at_start_is_exit_78_with_its_key_path_for_both_commands(
        setup, fake_api, command, case):
    expected = case(setup)
    result = setup.watcherd(command)
    assert result.returncode == 78, (result.stdout, result.stderr)
    assert "invalid configuration" in result.stderr
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert fake_api.count("POST", "/tasks") == 0


@pytest.mark.parametrize("command", COMMANDS)
def test_a_key_file_without_read_permission_is_exit_78(setup, command):
    if os.geteuid() == 0:
        pytest.skip("root reads a mode-000 file; the unreadable_key_file case (a directory "
                    "as key file) covers an unreadable key file as root")
    key = setup.root / "api-key"
    key.write_text(TEST_KEY)
    key.chmod(0)
    setup.settings["api"]["key_file"] = str(key)
    result = setup.watcherd(command)
    assert result.returncode == 78 and "api.key_file: cannot read" in result.stderr


def test_every_start_problem_is_reported_at_once(setup):
    missing_folder(setup)
    placeholder_index(setup)
    no_key_anywhere(setup)
    result = setup.watcherd("check-config")
    assert result.returncode == 78
    for expected in ("folders[1].path: ", "does not exist", "folders[0].index_id: ",
                     "placeholder", "api.key_file: no API key found"):
        assert expected in result.stderr, result.stderr


def test_a_valid_config_passes_both_without_asking_the_api_unless_online(setup, fake_api):
    result = setup.watcherd("check-config")
    assert result.returncode == 0, result.stderr
    assert "key: found (environment variable TWELVELABS_API_KEY)" in result.stdout
    assert fake_api.count("GET", "/indexes/idx_test") == 0


def test_check_config_online_asks_for_every_index_like_the_start_checks(setup, fake_api):
    result = setup.watcherd("check-config", "--online")
    assert result.returncode == 0, result.stderr
    assert "index idx_test (idx_test) answers to the key from environment variable" \
        in result.stdout
    assert fake_api.count("GET", "/indexes/idx_test") == 1  # once per index, as at start
    assert TEST_KEY not in result.stdout + result.stderr


def test_check_config_online_exits_78_on_a_refused_key(setup, fake_api):
    setup.env["TWELVELABS_API_KEY"] = "tlk_wrong_0123456789"
    result = setup.watcherd("check-config", "--online")
    assert result.returncode == 78, (result.stdout, result.stderr)
    assert "refused the API key from environment variable TWELVELABS_API_KEY" in result.stderr
    assert "tlk_wrong" not in result.stdout + result.stderr
    assert ": OK" not in result.stdout


def test_check_config_online_exits_78_on_an_unknown_index(setup, fake_api):
    setup.settings["folders"][1]["index_id"] = "idx_typo"
    result = setup.watcherd("check-config", "--online")
    assert result.returncode == 78, (result.stdout, result.stderr)
    assert "folders[1].index_id: index idx_typo cannot be used" in result.stderr


def test_check_config_online_says_when_it_could_not_check(setup, fake_api):
    fake_api.inject("GET", "/indexes/", status=503, times=1)
    result = setup.watcherd("check-config", "--online")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "index idx_test could not be checked" in result.stderr


@pytest.mark.parametrize("command", [["run"], ["check-config", "--online"]])
def test_a_pegasus_only_index_is_exit_78_naming_the_folders_index_id(setup, fake_api, command):
    fake_api.indexes.append("idx_peg")
    fake_api.index_models["idx_peg"] = ["pegasus1.2"]
    setup.settings["folders"][1]["index_id"] = "idx_peg"
    result = setup.watcherd(*command)
    assert result.returncode == 78, (result.stdout, result.stderr)
    assert "folders[1].index_id: index idx_peg has only pegasus1.2, which can no longer take " \
        "new videos" in result.stderr
    assert "watcherd started" not in result.stdout + result.stderr


def test_check_config_online_shows_each_folders_profile_and_its_source(setup, fake_api):
    fake_api.index_models["idx_test"] = ["marengo3.0", "pegasus1.2"]
    setup.settings["folders"][1]["model"] = "marengo"
    result = setup.watcherd("check-config", "--online")
    assert result.returncode == 0, result.stderr
    assert "folders[0] validates with marengo3.0 (from index: marengo3.0, pegasus1.2)" \
        in result.stdout
    assert "folders[1] validates with marengo3.0 (from override)" in result.stdout
    assert "warning: folders[1].model: model 'marengo' is deprecated" in result.stderr
