"""``watcherd simulator``: its fault switches, its loopback rule, and the package's boundary."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import requests

import watcherd
from watcherd.simulator import FakeTwelveLabs
from watcherd.simulator.switches import SwitchError, Switches, apply

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(watcherd.__file__).resolve().parent
SWITCHES = ("--inject", "--random", "--rate-limit", "--fail-filename", "--ready-after",
            "--redirect-to", "--clock-offset", "--user-metadata-shown", "--throttle",
            "--chunk-size", "--url-ttl", "--session-ttl", "--multipart-forbidden",
            "--tasks-removed")
# The only modules outside the simulator that may import it (inside the command's function).
ALLOWED_IMPORTERS = {"cli/simulator.py", "cli/demo.py"}


def watcherd_command(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "watcherd", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, check=False)


@pytest.fixture
def api() -> Iterator[FakeTwelveLabs]:
    with FakeTwelveLabs(api_key="k1") as fake:
        yield fake
    assert fake.errors == []


def upload(api: FakeTwelveLabs, filename: str = "clip.mp4") -> requests.Response:
    return requests.post(api.base_url + "/tasks", headers={"x-api-key": "k1"},
                         data={"index_id": "idx_test"},
                         files={"video_file": (filename, b"not empty", "video/mp4")}, timeout=10)


def get(api: FakeTwelveLabs, path: str) -> requests.Response:
    return requests.get(api.base_url + path, headers={"x-api-key": "k1"}, timeout=10)


def test_inject_switch_answers_the_next_requests_with_status_headers_and_json_body(api):
    spec = ("POST /tasks 429 times=2 header=Retry-After:7 "
            "body='{\"code\": \"too_many_requests\", \"message\": \"slow down\"}'")
    assert apply(api, Switches(inject=[spec])) == ["--inject " + spec]
    for _ in range(2):
        refused = upload(api)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == "7"
        assert refused.json() == {"code": "too_many_requests", "message": "slow down"}
    assert upload(api).status_code == 200
    assert len(api.uploads()) == 1


def test_inject_switch_with_an_action_drops_the_connection(api):
    apply(api, Switches(inject=["* /indexes reset"]))
    with pytest.raises(requests.ConnectionError):
        get(api, "/indexes/idx_test")
    assert get(api, "/indexes/idx_test").status_code == 200


def test_fail_filename_and_ready_after_switches_shape_the_task(api):
    apply(api, Switches(fail_filename=["broken.mp4"], ready_after=0.2))
    task_id = upload(api, "broken.mp4").json()["_id"]
    ok_id = upload(api, "fine.mp4").json()["_id"]
    time.sleep(0.3)
    failed = get(api, f"/tasks/{task_id}").json()
    assert failed["status"] == "failed" and failed["error_reason"]
    assert get(api, f"/tasks/{ok_id}").json()["status"] == "ready"


def test_rate_limit_and_random_switches(api):
    apply(api, Switches(rate_limit=["GET /indexes 2/60"],
                        random=["POST /tasks 503 p=1 seed=3"]))
    answers = [get(api, "/indexes/idx_test") for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].headers["X-Ratelimit-Limit"] == "2"
    assert upload(api).status_code == 503


def test_other_switches_reach_the_simulator(api):
    apply(api, Switches(clock_offset=-30, user_metadata_shown="nowhere",
                        redirect_to="http://elsewhere.invalid/v1.3"))
    assert api.clock_offset_seconds == -30 and api.user_metadata_shown == "nowhere"
    moved = requests.get(api.base_url + "/indexes/idx_test", allow_redirects=False, timeout=10)
    assert moved.status_code == 302
    assert moved.headers["Location"] == "http://elsewhere.invalid/v1.3/indexes/idx_test"


@pytest.mark.parametrize(("switches", "message"), [
    (Switches(inject=["POST tasks 429"]), "PATH starts with /"),
    (Switches(inject=["POST /tasks teapot"]), "ANSWER is an HTTP status or one of"),
    (Switches(inject=["POST /tasks 429 times=many"]), "times must be a number"),
    (Switches(inject=["POST /tasks 429 tiems=2"]), "unknown option(s) tiems"),
    (Switches(inject=["POST /tasks 429 header=Retry-After"]), "header=NAME:VALUE"),
    (Switches(random=["POST /tasks 500"]), "p=PROBABILITY is required"),
    (Switches(random=["POST /tasks 500 p=2"]), "p must be between 0 and 1"),
    (Switches(rate_limit=["GET /tasks 10"]), "LIMIT/WINDOW_SECONDS"),
    (Switches(ready_after=-1), "--ready-after"),
    (Switches(user_metadata_shown="sometimes"), "--user-metadata-shown"),
])
def test_a_bad_switch_is_refused_by_name_and_turns_nothing_on(api, switches, message):
    # A good switch first: it must not be on either when a later one is refused.
    with pytest.raises(SwitchError, match=re.escape(message)):
        apply(api, replace(switches, inject=["POST /tasks 500", *switches.inject]))
    assert upload(api).status_code == 200


def test_the_command_serves_with_its_switches_and_stops_on_sigterm():
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcherd", "simulator", "--api-key", "k9", "--index", "idx_a",
         "--inject", "GET /indexes 500 times=1", "--fail-filename", "x.mp4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        base_url = proc.stdout.readline().strip()
        assert re.match(r"^http://127\.0\.0\.1:\d+/v1\.3$", base_url)
        banner = proc.stderr.readline()
        assert "key 'k9'" in banner and "idx_a" in banner
        assert "--inject GET /indexes 500 times=1; --fail-filename x.mp4" in banner
        url = base_url + "/indexes/idx_a"
        assert requests.get(url, headers={"x-api-key": "k9"}, timeout=5).status_code == 500
        assert requests.get(url, headers={"x-api-key": "k9"}, timeout=5).status_code == 200
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_a_non_loopback_host_needs_allow_remote():
    refused = watcherd_command("simulator", "--host", "0.0.0.0")
    assert refused.returncode == 2 and refused.stdout == ""
    assert "not a loopback address" in refused.stderr and "--allow-remote" in refused.stderr


def test_a_bad_switch_exits_2_before_serving():
    result = watcherd_command("simulator", "--inject", "POST /tasks 429 tiems=2")
    assert result.returncode == 2 and result.stdout == ""
    assert "--inject 'POST /tasks 429 tiems=2': unknown option(s) tiems" in result.stderr


def test_every_switch_is_in_help_and_in_the_readme():
    help_text = watcherd_command("simulator", "--help").stdout
    readme = (ROOT / "README.md").read_text()
    simulator_section = readme.split("\n## Simulator\n")[1].split("\n## ")[0]
    for switch in SWITCHES:
        assert switch in help_text, switch
        assert f"`{switch}" in simulator_section, switch
    assert "watcherd demo" in readme.split("\n## Quick start\n")[1].split("\n## ")[0]


def test_daemon_code_never_imports_the_simulator():
    importers = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("simulator/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "watcherd.simulator" or n.startswith("watcherd.simulator.")
                   for n in names):
                importers.add(relative)
    assert importers == ALLOWED_IMPORTERS
    # and those two import it only when their command runs:
    modules = sorted(
        "watcherd." + p.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        for p in PACKAGE.rglob("*.py")
        if not p.relative_to(PACKAGE).as_posix().startswith("simulator/")
        and p.name not in ("__main__.py", "__init__.py"))
    script = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
              "print(sorted(m for m in sys.modules if m.startswith('watcherd.simulator')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=60, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
