"""The systemd unit: what the issue requires, ``systemd-analyze verify`` clean,
and an exposure score of 2.0 or less from ``systemd-analyze security --offline``.

systemd-analyze is required in CI (``.ci/run`` installs it when missing);
elsewhere the two analyzer tests skip when it is absent.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "watcherd.service"
MAX_EXPOSURE = 2.0


def service_section() -> dict[str, list[str]]:
    """Every key of [Service] with all its values (systemd keys may repeat)."""
    values: dict[str, list[str]] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            values.setdefault(key, []).append(value)
    return values


@pytest.fixture
def analyzer() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing; .ci/run should have installed systemd")
        pytest.skip("systemd-analyze is not installed")
    return found


@pytest.fixture
def checkable_unit(tmp_path) -> Path:
    """A copy whose ExecStart names this venv's watcherd: verify checks it exists."""
    watcherd = Path(sys.prefix) / "bin" / "watcherd"
    assert watcherd.exists(), "the project must be installed in this venv"
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={watcherd}", UNIT.read_text(), flags=re.M)
    copy = tmp_path / "watcherd.service"
    copy.write_text(text)
    return copy


def test_the_unit_has_what_the_service_contract_needs():
    service = service_section()
    expected = {
        "Type": "notify", "NotifyAccess": "main", "Restart": "on-failure",
        "RestartPreventExitStatus": "78", "ExecReload": "/bin/kill -HUP $MAINPID",
        "User": "watcherd", "StateDirectory": "watcherd", "ConfigurationDirectory": "watcherd",
        "SyslogIdentifier": "watcherd", "LoadCredential": "api-key:/etc/watcherd/api-key",
        "ProtectSystem": "strict",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], key
    assert "WatchdogSec" in service
    # The key comes only as a credential, never through the environment.
    assert not any("TWELVELABS_API_KEY" in v for v in service.get("Environment", []))
    # Our shutdown grace (20 s) must fit inside systemd's stop timeout.
    from watcherd.service.daemon import SHUTDOWN_GRACE_SECONDS
    assert SHUTDOWN_GRACE_SECONDS + 10 < int(service["TimeoutStopSec"][0].rstrip("s"))
    # HTTPS needs IP sockets; sd_notify needs AF_UNIX.
    assert set(service["RestrictAddressFamilies"][0].split()) == {"AF_UNIX", "AF_INET",
                                                                  "AF_INET6"}


def test_the_service_and_its_operator_derive_one_database_from_the_shipped_config():
    from watcherd.config import DEFAULT_CONFIG_PATH, SYSTEM_CONFIG_DIR, SYSTEM_STATE_DB
    service = service_section()
    # %E is /etc for a system unit: ExecStart reads the commands' default config ...
    config = re.search(r"--config (\S+)", service["ExecStart"][0]).group(1)
    assert config.replace("%E", "/etc") == DEFAULT_CONFIG_PATH
    assert service["ConfigurationDirectory"] == [SYSTEM_CONFIG_DIR.name]
    # ... whose default state_db is in the unit's StateDirectory (the one it may write).
    assert Path("/var/lib") / service["StateDirectory"][0] == SYSTEM_STATE_DB.parent


def test_sysusers_creates_the_service_user():
    fields = (ROOT / "systemd" / "watcherd.sysusers").read_text().split("\n")
    user_lines = [line.split() for line in fields if line.startswith("u ")]
    assert user_lines and user_lines[0][1] == "watcherd"


def test_the_config_parser_can_read_the_unit():
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(re.sub(r"^#.*$", "", UNIT.read_text(), flags=re.M))
    assert {"Unit", "Service", "Install"} <= set(parser.sections())


def test_systemd_analyze_verify_is_clean(analyzer, checkable_unit):
    result = subprocess.run([analyzer, "verify", str(checkable_unit)], capture_output=True,
                            text=True, timeout=60)
    # verify also reports on units it pulls in from the host; only ours matter.
    ours = [line for line in (result.stdout + result.stderr).splitlines()
            if "watcherd.service" in line]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr


def test_systemd_analyze_security_exposure_is_at_most_two(analyzer, checkable_unit):
    result = subprocess.run(
        [analyzer, "security", "--offline=yes", "--no-pager", str(checkable_unit)],
        capture_output=True, text=True, timeout=60)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
