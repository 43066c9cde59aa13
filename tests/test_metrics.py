"""Metrics without a daemon: the config, what each event counts, the listener and /healthz."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from tests.conftest import TEST_KEY, FakeClock
from tests.metricsread import get, promql_metric_names, scrape, value
from tests.test_health import Blocker, make_monitor
from watcherd.config import parse_config
from watcherd.errors import ApiRejected, AuthError, ConfigError, QuotaError, TransientError
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.indexpause import IndexPauses
from watcherd.metricsconfig import MetricsConfig
from watcherd.service.metrics import DaemonGauges, Metrics
from watcherd.service.metricsserver import ListenError, MetricsServer
from watcherd.state.outbox import Outbox, OutboxEntry
from watcherd.state.states import State
from watcherd.state.store import Store
from watcherd.twelvelabs.client import TwelveLabsClient
from watcherd.twelvelabs.routes import route_template

FOLDERS = [{"path": "/in", "index_id": "idx"}]


def config_with(metrics: object):
    return parse_config({"folders": FOLDERS, "metrics": metrics}, base_dir=Path("/"), env={})


@pytest.mark.parametrize(("text", "listen"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    ("localhost:0", ("localhost", 0)),
    ("[::1]:9464", ("::1", 9464)),
    ("0.0.0.0:80", ("0.0.0.0", 80)),
])
def test_metrics_listen_takes_host_and_port(text, listen):
    assert config_with({"listen": text}).metrics == MetricsConfig(listen=listen)


def test_metrics_are_off_unless_listen_is_set():
    assert parse_config({"folders": FOLDERS}, base_dir=Path("/"), env={}).metrics.listen is None


@pytest.mark.parametrize(("metrics", "error"), [
    ({"listen": "9464"}, "metrics.listen: must be host:port"),
    ({"listen": "::1:9464"}, "metrics.listen: must be host:port"),
    ({"listen": "127.0.0.1:99999"}, "metrics.listen: must be host:port"),
    ({"listen": ":9464"}, "metrics.listen: must be host:port"),
    ({"listen": 9464}, "metrics.listen: must be a non-empty string"),
    ({}, "metrics.listen: required"),
    ({"listen": "127.0.0.1:9464", "port": 1}, "metrics.port: unknown key"),
    ("127.0.0.1:9464", "metrics: must be a mapping"),
])
def test_a_bad_metrics_section_is_refused_with_its_key_path(metrics, error):
    with pytest.raises(ConfigError) as caught:
        config_with(metrics)
    assert any(line.startswith(error) for line in caught.value.errors), caught.value.errors


@pytest.mark.parametrize(("listen", "code", "said"), [
    ("localhost", 78, "metrics.listen: must be host:port"),
    ("'[::1]:9464'", 0, "  metrics: http://[::1]:9464/metrics and /healthz"),
])
def test_check_config_checks_and_shows_the_listener(tmp_path, listen, code, said):
    path = tmp_path / "config.yaml"
    path.write_text(f"folders: [{{path: {tmp_path}, index_id: idx}}]\n"
                    f"metrics: {{listen: {listen}}}\n")
    result = subprocess.run([sys.executable, "-m", "watcherd", "check-config", "-c", str(path)],
                            capture_output=True, text=True, timeout=60,
                            env={"TWELVELABS_API_KEY": TEST_KEY, "PATH": "/usr/bin"})
    assert result.returncode == code
    assert said in (result.stderr if code else result.stdout)


@pytest.mark.parametrize(("path", "template"), [
    ("/tasks", "/tasks"),
    ("/tasks/6650f3a1b2c3", "/tasks/{id}"),
    ("/indexes/idx_1/videos/vid_2?x=1", "/indexes/{id}/videos/{id}"),
    ("/assets/multipart-uploads/up_1/presigned-urls",
     "/assets/multipart-uploads/{id}/presigned-urls"),
    ("/indexes/i/indexed-assets/a", "/indexes/{id}/indexed-assets/{id}"),
])
def test_routes_name_no_ids(path, template):
    assert route_template(path) == template


@pytest.mark.parametrize(("query", "names"), [
    ('sum by (le) (rate(a_bucket{x="y",z=~"$v"}[5m]))', {"a_bucket"}),
    ("histogram_quantile(0.95, sum by (le) (rate(b_bucket[30m]))) * 60", {"b_bucket"}),
    ('x == 0 and on (instance) sum without (f) (y{s="a b"}) > 0 or vector(0)', {"x", "y"}),
    ('count(c{label="rate(d)"} offset 5m)', {"c"}),
])
def test_the_metric_names_a_query_selects(query, names):
    assert promql_metric_names(query) == names


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "state.db", clock=FakeClock()).open()
    yield store
    store.close()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_state_changes_count_uploads_bytes_and_durations(store):
    metrics = Metrics()
    store.telemetry = metrics
    clock = store.clock
    record = store.add(path="/in/a.mp4", folder="/in", index_id="idx", size=1000, mtime_ns=1)
    store.transition(record.id, State.QUEUED)
    store.transition(record.id, State.UPLOADING, upload_started_at=clock())
    store.transition(record.id, State.QUEUED, "retrying")  # a failed attempt
    store.transition(record.id, State.UPLOADING, upload_started_at=clock())
    clock.now += 42
    store.transition(record.id, State.INDEXING, uploaded_at=clock())
    clock.now += 100
    store.transition(record.id, State.FINALIZING, outcome="ready")
    store.transition(record.id, State.DONE, finished_at=clock())
    assert sample(metrics, "watcherd_uploads_started_total") == 2
    assert sample(metrics, "watcherd_uploads_failed_total", next_state="queued") == 1
    assert sample(metrics, "watcherd_uploads_finished_total") == 1
    assert sample(metrics, "watcherd_uploaded_bytes_total") == 1000
    assert sample(metrics, "watcherd_upload_duration_seconds_sum") == 42
    assert sample(metrics, "watcherd_upload_duration_seconds_bucket", le="30.0") == 0
    assert sample(metrics, "watcherd_upload_duration_seconds_bucket", le="60.0") == 1
    assert sample(metrics, "watcherd_drop_to_ready_seconds_sum") == 142
    assert sample(metrics, "watcherd_files_finished_total", state="done") == 1


def test_a_fault_in_counting_never_reaches_the_file(store, caplog):
    metrics = Metrics()
    store.telemetry = metrics

    def broken(*_args: object) -> None:
        raise ValueError("a bug in counting")

    metrics.uploads_started.inc = broken  # type: ignore[method-assign]
    record = store.add(path="/in/a.mp4", folder="/in", index_id="idx", size=1, mtime_ns=1)
    assert store.transition(record.id, State.UPLOADING).state == State.UPLOADING
    assert "metrics: transition failed; that event is not counted" in caplog.text


def test_retries_and_pauses_are_counted_by_reason():
    metrics = Metrics()
    gate = UploadGate(telemetry=metrics, cap=1)
    gate.note_failure(TransientError(429, None, "slow down"))
    gate.note_failure(TransientError(503, None, "down"))
    gate.note_failure(TransientError(None, None, "connection reset"))
    gate.note_failure(TransientError(None, "rate_limit_used_up", "window closed"))
    assert gate.pause(AuthError(401, None, "bad key"))
    gate.pause(QuotaError(429, "usage_limit_exceeded", "out of credits"))  # no new pause
    pauses = IndexPauses(lambda: config_with({"listen": "127.0.0.1:0"}), metrics)
    gone = ApiRejected(404, "resource_not_exist", "no such index")
    pauses.pause("idx", gone)
    pauses.pause("idx", gone)
    for reason in ("http_429", "http_5xx", "no_answer", "rate_limit_window"):
        assert sample(metrics, "watcherd_upload_retries_total", reason=reason) == 1
    assert sample(metrics, "watcherd_upload_pauses_total", reason="auth_error") == 1
    assert sample(metrics, "watcherd_upload_pauses_total", reason="quota_error") == 0
    assert sample(metrics, "watcherd_upload_pauses_total", reason="index_gone") == 1


def test_the_client_counts_each_request_by_route_and_status_class(fake_api):
    metrics = Metrics()
    with socket.socket() as unused:  # a port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    clients = [TwelveLabsClient(url, lambda: TEST_KEY, connect_timeout=2, io_timeout=2)
               for url in (fake_api.base_url, f"http://127.0.0.1:{port}/v1.3")]
    try:
        for client in clients:
            client.telemetry = metrics
        clients[0].get_index("idx_test")
        with pytest.raises(ApiRejected):
            clients[0].get_task("0123456789abcdef01234567")
        with pytest.raises(TransientError):
            clients[1].get_task("abc")
    finally:
        for client in clients:
            client.close()

    def requests(**labels: str) -> float:
        return sample(metrics, "watcherd_api_requests_total", **labels)

    assert requests(method="GET", endpoint="/indexes/{id}", status_class="2xx") == 1
    assert requests(method="GET", endpoint="/tasks/{id}", status_class="4xx") == 1
    assert requests(method="GET", endpoint="/tasks/{id}", status_class="error") == 1
    assert len(fake_api.requests) == 2


class OneWatch:
    class Watch:
        folder = config_with(None).folders[0]
        healthy = False

    watches: ClassVar[list] = [Watch()]


def test_a_scrape_reads_pauses_backoff_queues_and_observers(store):
    metrics = Metrics()
    gate = UploadGate()
    pauses = IndexPauses(lambda: config_with(None))
    metrics.watch(DaemonGauges(store=store, gate=gate, index_pauses=pauses, watcher=OneWatch(),
                               queues={"upload": lambda: 7}, folders=lambda: [Path("/in")],
                               verdict=lambda: "thread poller is dead"))
    store.add(path="/in/a.mp4", folder="/in", index_id="idx", size=1, mtime_ns=1)
    assert sample(metrics, "watcherd_files", folder="/in", state="settling") == 1
    assert sample(metrics, "watcherd_files", folder="/in", state="done") == 0
    assert sample(metrics, "watcherd_queue_depth", queue="upload") == 7
    assert sample(metrics, "watcherd_observer_up", folder="/in") == 0
    assert sample(metrics, "watcherd_healthy") == 0
    assert sample(metrics, "watcherd_uploads_paused", reason="none") == 0
    gate.note_failure(TransientError(None, None, "reset"))
    assert 0 < sample(metrics, "watcherd_backoff_remaining_seconds") <= 300
    gate.pause(AuthError(401, None, "bad key"))
    assert sample(metrics, "watcherd_uploads_paused", reason="auth_error") == 1
    pauses.pause("idx", ApiRejected(404, None, "gone"))
    assert sample(metrics, "watcherd_indexes_paused") == 1


def test_a_scrape_reads_the_webhook_totals_and_the_outbox(store):
    metrics = Metrics()
    gate = UploadGate()
    pauses = IndexPauses(lambda: config_with(None))
    outbox = Outbox(store)
    metrics.watch(DaemonGauges(store=store, gate=gate, index_pauses=pauses, watcher=OneWatch(),
                               queues={}, folders=list, verdict=lambda: None,
                               webhook_totals=lambda: {"delivered": 5, "failed": 2, "dead": 1},
                               outbox_counts=outbox.counts))
    outbox.add([OutboxEntry(f"ev{n}", "ready", "http://127.0.0.1/hook", "f1", "{}")
                for n in range(3)])
    first = outbox.next_due("http://127.0.0.1/hook", store.clock())
    assert first is not None
    outbox.failed(first.seq, "HTTP 500", None)  # dead-lettered
    assert sample(metrics, "watcherd_webhook_deliveries_total") == 5
    assert sample(metrics, "watcherd_webhook_failures_total") == 2
    assert sample(metrics, "watcherd_webhook_dead_lettered_total") == 1
    assert sample(metrics, "watcherd_webhook_outbox", status="pending") == 2
    assert sample(metrics, "watcherd_webhook_outbox", status="dead") == 1


@pytest.fixture
def served(store):
    """A listener on a free port with a monitor over one thread it can wedge."""
    blocker = Blocker()
    blocker.start()
    monitor, _, clock, _ = make_monitor(store, [blocker])
    server = MetricsServer(MetricsConfig(listen=("127.0.0.1", 0)), Metrics().registry,
                           monitor.verdict)
    server.start()
    yield server.url, monitor, blocker, clock
    server.close()
    blocker.stop()
    blocker.join(2)


def test_healthz_says_what_the_watchdog_would_do(served):
    url, monitor, blocker, clock = served
    assert get(url + "/healthz") == (503, "starting: no health check yet\n")
    monitor.tick()
    assert get(url + "/healthz") == (200, "ok\n")
    blocker.heartbeat -= 60  # wedged: no progress for a minute
    monitor.tick()
    status, body = get(url + "/healthz")
    assert status == 503 and body.startswith("thread blocker has made no progress for 60s")
    assert body.count("\n") == 1
    blocker.heartbeat += 60
    monitor.tick()
    assert get(url + "/healthz") == (200, "ok\n")
    clock.now += 20  # the main loop stopped checking: it pings nobody either
    assert get(url + "/healthz") == (503, "the main loop has not checked health for 20s\n")


def test_metrics_parse_and_other_paths_are_not_found(served):
    url = served[0]
    assert value(scrape(url), "watcherd_uploads_started_total") == 0
    assert ("watcherd_build_info", frozenset()) not in scrape(url)  # it carries labels
    assert get(url + "/")[0] == 404


def test_a_port_in_use_stops_the_start(served):
    port = int(served[0].rsplit(":", 1)[1])
    with pytest.raises(ListenError, match=rf"^metrics.listen http://127.0.0.1:{port}: cannot "
                                          "listen there"):
        MetricsServer(MetricsConfig(listen=("127.0.0.1", port)), Metrics().registry,
                      lambda: None)
