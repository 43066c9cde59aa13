"""The real daemon with metrics on: what /metrics says equals what the simulator saw,
and /healthz follows the watchdog's verdict."""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tests.conftest import wait_for
from tests.metricsread import (
    by_label,
    exposed_names,
    get,
    listener_url,
    promql_metric_names,
    scrape,
    value,
    wait_health,
)
from tests.webhook_receiver import SECRET, Receiver
from watcherd import __version__
from watcherd.twelvelabs.routes import route_template

HERE = Path(__file__).resolve().parent
CONTRIB = HERE.parent / "contrib"
# Series Prometheus records itself for every scrape target.
SYNTHESIZED = {"up"}


def simulator_requests(fake_api) -> Counter:
    """(method, route template) of every request the simulator answered."""
    prefix = "/" + fake_api.api_version
    with fake_api._lock:
        recorded = list(fake_api.requests)
    return Counter((r.method, route_template(r.path.removeprefix(prefix))) for r in recorded)


@pytest.fixture
def receiver():
    with Receiver() as receiver:
        yield receiver


def test_a_burst_is_counted_as_the_simulator_and_the_receiver_saw_it(daemon, fake_api,
                                                                    distinct_clips, receiver):
    secret = daemon.root / "webhook-secret"
    secret.write_bytes(SECRET)
    receiver.answers = [(500, {})]  # the first delivery fails, its retry goes through
    daemon.settings["webhooks"] = [{"url": receiver.url, "secret_file": str(secret),
                                    "events": ["ready"]}]
    daemon.settings["metrics"] = {"listen": "127.0.0.1:0"}
    daemon.settings["upload_method"] = "tasks"  # the path whose requests are counted here
    daemon.start()
    base = listener_url(daemon.log())
    clips = distinct_clips(3)
    for n, clip in enumerate(clips):
        shutil.copy(clip, daemon.inbox / f"burst-{n}.mp4")
    for n in range(len(clips)):
        daemon.wait_done(f"burst-{n}.mp4")

    def requests_agree() -> bool:
        return by_label(scrape(base), "watcherd_api_requests_total", "method", "endpoint") \
            == simulator_requests(fake_api)

    # Equal once no request is in flight (the poller may be between answer and count).
    wait_for(requests_agree, 10, lambda: f"{scrape(base)} vs {simulator_requests(fake_api)}")
    samples = scrape(base)
    uploads = fake_api.uploads()
    assert len(uploads) == 3
    assert value(samples, "watcherd_uploads_started_total") == 3
    assert value(samples, "watcherd_uploads_finished_total") == 3
    assert by_label(samples, "watcherd_uploads_failed_total", "next_state") == Counter()
    assert value(samples, "watcherd_uploaded_bytes_total") == sum(u.file.size for u in uploads)
    assert value(samples, "watcherd_upload_duration_seconds_count") == 3
    assert value(samples, "watcherd_drop_to_ready_seconds_count") == 3
    assert value(samples, "watcherd_files_finished_total", state="done") == 3
    folder = str(daemon.inbox)
    assert value(samples, "watcherd_files", folder=folder, state="done") == 3
    assert value(samples, "watcherd_files", folder=folder, state="failed") == 0
    assert (("watcherd_files", frozenset({"folder": folder, "state": "queued"}.items()))
            in samples)  # every state is there, zeros too
    assert by_label(samples, "watcherd_api_requests_total", "status_class") == \
        Counter({("2xx",): sum(simulator_requests(fake_api).values())})
    assert value(samples, "watcherd_observer_up", folder=folder) == 1
    assert value(samples, "watcherd_queue_depth", queue="upload") == 0
    assert value(samples, "watcherd_uploads_paused", reason="none") == 0
    assert value(samples, "watcherd_backoff_remaining_seconds") == 0
    assert value(samples, "watcherd_healthy") == 1
    assert value(samples, "watcherd_build_info", version=__version__,
                 python=".".join(map(str, sys.version_info[:3]))) == 1
    assert not any("burst-" in str(labels) for _, labels in samples)  # no file names

    def webhooks_counted() -> bool:
        samples = scrape(base)
        return len(receiver.delivered) == 3 and value(
            samples, "watcherd_webhook_deliveries_total") == 3 and value(
            samples, "watcherd_webhook_outbox", status="pending") == 0

    wait_for(webhooks_counted, 20, lambda: f"{receiver.received} vs {scrape(base)}")
    samples = scrape(base)
    assert value(samples, "watcherd_webhook_failures_total") == len(receiver.received) - 3 == 1
    assert value(samples, "watcherd_webhook_dead_lettered_total") == 0
    assert value(samples, "watcherd_webhook_outbox", status="dead") == 0


def test_healthz_turns_503_while_a_thread_is_wedged_and_200_after(daemon, fake_api,
                                                                  valid_clip):
    daemon.command = [sys.executable, str(HERE / "sabotaged_daemon.py"), "stall:upload:9"]
    daemon.settings.update(metrics={"listen": "127.0.0.1:0"}, stall_seconds=5,
                           upload_method="tasks")
    daemon.start()
    base = listener_url(daemon.log())
    assert wait_health(base, 200, 10) == "ok\n"
    shutil.copy(valid_clip, daemon.inbox / "wedged.mp4")
    reason = wait_health(base, 503, 15)
    assert reason.startswith("thread upload-1 has made no progress for ") and \
        reason.count("\n") == 1
    assert value(scrape(base), "watcherd_healthy") == 0
    assert wait_health(base, 200, 15) == "ok\n"  # the upload went on
    daemon.wait_done("wedged.mp4")


def dashboard_queries() -> list[str]:
    dashboard = json.loads((CONTRIB / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    variables = dashboard["templating"]["list"]
    queries += [v["definition"] for v in variables if v["type"] == "query"]
    return queries


def alert_queries() -> dict[str, str]:
    rules = yaml.safe_load((CONTRIB / "alerts.yml").read_text())
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


def test_the_dashboard_and_the_alerts_query_only_what_the_daemon_exports(daemon):
    daemon.settings["metrics"] = {"listen": "127.0.0.1:0"}
    daemon.start()
    status, text = get(listener_url(daemon.log()) + "/metrics")
    assert status == 200
    exposed = exposed_names(text)
    for query in dashboard_queries():
        # label_values(metric, label) names its metric as an argument
        names = promql_metric_names(query.replace("label_values(", "(")) - {"instance"}
        assert names and names <= exposed, f"dashboard: {query}: {names - exposed}"
    alerts = alert_queries()
    assert {"WatcherdUploadsPaused", "WatcherdObserverDead", "WatcherdNothingReady",
            "WatcherdWebhooksDeadLettered"} <= set(alerts)
    for name, query in alerts.items():
        names = promql_metric_names(query)
        assert names and names <= exposed | SYNTHESIZED, f"{name}: {names - exposed}"
