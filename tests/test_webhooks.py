"""Webhooks: the config, the outbox written with the state change, and the delivery
thread against real receivers on 127.0.0.1 (retries, Retry-After, a hung receiver,
order per file, dead letters and replay)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import TEST_KEY, FakeClock, wait_for
from tests.webhook_receiver import SECRET, Receiver
from watcherd.cli.main import main
from watcherd.cli.status import build_status, render_status
from watcherd.config import Config, load_config
from watcherd.errors import AuthError, ConfigError, QuotaError
from watcherd.ingest.gate import UploadGate
from watcherd.ingest.indexpause import IndexPauses
from watcherd.state import outbox as outbox_module
from watcherd.state.outbox import DEAD, DELIVERED, PENDING, Outbox
from watcherd.state.states import State
from watcherd.state.store import StaleState, Store
from watcherd.webhookconfig import read_secret
from watcherd.webhooks.delivery import WebhookSender
from watcherd.webhooks.events import file_events, pause_events
from watcherd.webhooks.pauses import PauseEvents


def write_config(tmp_path: Path, hooks: list[dict], **top: object) -> Path:
    (tmp_path / "inbox").mkdir(parents=True, exist_ok=True)
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET + b"\n")
    for hook in hooks:
        if isinstance(hook, dict):
            hook.setdefault("secret_file", str(secret))
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({
        "state_db": str(tmp_path / "state.db"), "webhooks": hooks, **top,
        "folders": [{"path": str(tmp_path / "inbox"), "index_id": "idx"}]}))
    return path


def config_for(tmp_path: Path, *urls: str, timeout: float = 2.0, **top: object) -> Config:
    return load_config(write_config(tmp_path, [{"url": u, "timeout_seconds": timeout}
                                               for u in urls], **top))


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "state.db").open()
    yield store
    store.close()


def run_sender(sender: WebhookSender):
    sender.start()
    return sender


def stop(sender: WebhookSender) -> None:
    sender.stop()
    sender.join(5)


def pause_event(config: Config, store: Store, what: str = "paused",
                index_id: str | None = None) -> str:
    entries = pause_events(config.webhooks, what, {"scope": "x", "index_id": index_id},
                           store.clock())
    Outbox(store).add(entries)
    return entries[0].event_id


def file_event(config: Config, store: Store, path: str, what: str = "ready") -> str:
    entries = file_events(config.webhooks, what, {"source_path": path, "status": what},
                          store.clock())
    Outbox(store).add(entries)
    return entries[0].event_id


# -- config ----------------------------------------------------------------------------


def test_config_reads_receivers_with_defaults(tmp_path):
    config = load_config(write_config(tmp_path, [
        {"url": "https://mam.example.com/hook", "events": ["ready"]},
        {"url": "http://127.0.0.1:9/hook", "secret_credential": "hook-b"}],
        webhook_retry_hours=2))
    first, second = config.webhooks.receivers
    assert first.events == ("ready",)
    assert first.timeout_seconds == 10.0
    assert second.events == ("ready", "failed", "paused", "resumed")
    assert config.webhooks.retry_hours == 2
    assert config.webhooks.for_event("paused") == (second,)
    assert load_config(write_config(tmp_path / "none", [])).webhooks.receivers == ()


def test_config_errors_name_their_key_path(tmp_path):
    path = write_config(tmp_path, [
        {"url": "http://mam.example.com/hook"},
        {"url": "https://a.example/h", "events": ["ready", "deleted"], "colour": "red"},
        {"url": "https://a.example/h", "timeout_seconds": 0},
        "not a mapping"], webhook_retry_hours=0)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = "\n".join(caught.value.errors)
    assert "webhooks[0].url: must start with https://" in text
    assert "webhooks[1].events: must be a non-empty list of ready, failed" in text
    assert "webhooks[1].colour: unknown key" in text
    assert "webhooks[2].url: same URL as webhooks[1]" in text
    assert "webhooks[2].timeout_seconds: must be between" in text
    assert "webhooks[3]: must be a mapping" in text
    assert "webhook_retry_hours: must be >= 0.01" in text


def test_an_unreadable_secret_stops_check_config_with_78_and_is_never_printed(tmp_path):
    path = write_config(tmp_path, [{"url": "https://a.example/h",
                                    "secret_file": str(tmp_path / "missing")}])
    env = {"PATH": "/usr/bin:/bin", "TWELVELABS_API_KEY": TEST_KEY, "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "watcherd", "check-config", "-c", str(path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 78
    assert f"webhooks[0].secret_file: cannot read {tmp_path / 'missing'}" in done.stderr
    path = write_config(tmp_path, [{"url": "https://a.example/h"}])
    done = subprocess.run([sys.executable, "-m", "watcherd", "check-config", "-c", str(path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "webhooks[0]: https://a.example/h (ready, failed, paused, resumed); secret: found" \
        in done.stdout
    assert SECRET.decode() not in done.stdout + done.stderr
    assert SECRET.decode() not in repr(load_config(path))


def test_the_secret_can_come_from_the_credentials_directory(tmp_path):
    (tmp_path / "hook-b").write_bytes(b"from-systemd\n")
    config = load_config(write_config(tmp_path, [{"url": "https://a.example/h",
                                                  "secret_credential": "hook-b"}]))
    hook = config.webhooks.receivers[0]
    hook = type(hook)(url=hook.url, secret_credential="hook-b")  # no secret_file
    assert read_secret(hook, "webhooks[0]", {"CREDENTIALS_DIRECTORY": str(tmp_path)}) == \
        b"from-systemd"
    with pytest.raises(ConfigError, match=r"webhooks\[0\].secret_file: required"):
        read_secret(hook, "webhooks[0]", {})


# -- the outbox and the state change -----------------------------------------------------


def test_the_event_is_written_in_the_same_transaction_as_the_state_change(tmp_path, store,
                                                                           monkeypatch):
    config = config_for(tmp_path, "https://a.example/h", "https://b.example/h")
    row = store.insert(path="/in/a.mp4", folder="/in", index_id="idx", state=State.FINALIZING)
    events = file_events(config.webhooks, "ready", {"source_path": "/in/a.mp4"}, 1.0)
    with pytest.raises(StaleState):  # the change refused: no event either
        store.transition(row, State.DONE, expect=(State.INDEXING,), events=events)
    assert Outbox(store).counts() == {}

    def broken(*_args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(outbox_module, "insert", broken)
    with pytest.raises(RuntimeError):  # the event refused: no change either
        store.transition(row, State.DONE, events=events)
    assert store.get(row).state == State.FINALIZING
    monkeypatch.undo()
    store.transition(row, State.DONE, events=events)
    pending = Outbox(store).listed(PENDING)
    assert {d.receiver for d in pending} == {"https://a.example/h", "https://b.example/h"}
    assert len({d.event_id for d in pending}) == 1  # one event, one id for every receiver
    assert json.loads(pending[0].body)["file"] == {"source_path": "/in/a.mp4"}


# -- delivery ------------------------------------------------------------------------------


def test_500_then_200_is_retried_with_the_same_id_and_a_valid_signature(tmp_path, store):
    with Receiver() as receiver:
        receiver.answers = [(500, {})]
        config = config_for(tmp_path, receiver.url)
        event_id = pause_event(config, store)
        sender = run_sender(WebhookSender(config=config, store=store, rng=lambda: 0.0))
        try:
            wait_for(lambda: receiver.delivered, 10)
        finally:
            stop(sender)
    assert [r.id for r in receiver.received] == [event_id, event_id]
    assert all(r.valid for r in receiver.received)
    assert receiver.received[0].body == receiver.received[1].body
    [row] = Outbox(store).listed(DELIVERED)
    assert (row.attempts, row.last_error) == (2, None)
    assert sender.totals == {"delivered": 1, "failed": 1, "dead": 0}
    assert Outbox(store).depth() == 0


def test_retry_after_is_honoured(tmp_path, store):
    with Receiver() as receiver:
        receiver.answers = [(503, {"Retry-After": "2"})]
        config = config_for(tmp_path, receiver.url)
        pause_event(config, store)
        sender = run_sender(WebhookSender(config=config, store=store, rng=lambda: 0.0))
        try:
            wait_for(lambda: receiver.delivered, 10)
        finally:
            stop(sender)
    first, second = receiver.received
    assert second.at - first.at >= 1.9


def test_a_hung_receiver_times_out_and_holds_back_no_other(tmp_path, store):
    with Receiver() as hung, Receiver() as healthy:
        hung.hang()
        config = config_for(tmp_path, hung.url, healthy.url, timeout=1.0)
        ids = [pause_event(config, store, what) for what in ("paused", "resumed", "paused")]
        sender = run_sender(WebhookSender(config=config, store=store, rng=lambda: 0.0))
        try:
            wait_for(lambda: healthy.ids() == ids, 5, "the healthy receiver's events")
            # All three while the hung receiver's first attempt was still waiting.
            assert healthy.delivered[-1].at - hung.received[0].at < 1.0
            assert not hung.delivered
            row = wait_for(lambda: [d for d in Outbox(store).listed(PENDING)
                                    if d.receiver == hung.url and d.attempts], 5)[0]
            assert "Timeout" in (row.last_error or "")
            hung.release()
            wait_for(lambda: Outbox(store).depth() == 0, 10, "the hung receiver's events")
        finally:
            stop(sender)
    # The timed-out attempt was sent again with the same id (the receiver, which did
    # take it in the end, dedupes on it); then the rest, in order.
    assert [r.id for r in hung.received[:2]] == [ids[0], ids[0]]
    assert list(dict.fromkeys(hung.ids())) == ids


def test_a_files_events_arrive_in_order_and_other_files_do_not_wait(tmp_path, store):
    with Receiver() as receiver:
        receiver.answers = [(400, {})]  # refuses only the first event
        config = config_for(tmp_path, receiver.url)
        first = file_event(config, store, "/in/x.mp4", "failed")
        other = file_event(config, store, "/in/y.mp4", "ready")
        later = file_event(config, store, "/in/x.mp4", "ready")
        sender = run_sender(WebhookSender(config=config, store=store, rng=lambda: 0.0))
        try:
            wait_for(lambda: len(receiver.delivered) == 3, 10)
        finally:
            stop(sender)
    assert receiver.ids() == [other, first, later]


def test_dead_letter_after_the_retry_window_then_replay(tmp_path, store, capsys):
    clock = FakeClock(time.time())
    store.clock = clock
    with Receiver(tolerance=1e9) as receiver:
        receiver.answers = [(500, {})] * 2
        path = write_config(tmp_path, [{"url": receiver.url, "timeout_seconds": 2}],
                            webhook_retry_hours=1)
        config = load_config(path)
        event_id = pause_event(config, store)
        sender = WebhookSender(config=config, store=store, clock=clock, rng=lambda: 0.0)

        def turn_until(done) -> None:
            wait_for(lambda: (sender.step(), done())[1], 10)

        turn_until(lambda: sender.totals["failed"] == 1)
        clock.now += 3600  # the window is over: the next failure is the last
        turn_until(lambda: sender.totals["dead"] == 1)
        assert Outbox(store).counts() == {DEAD: 1}
        status = build_status(config, store)
        assert status["webhooks"] == {"pending": 0, "dead": 1}
        from rich.console import Console

        console = Console(record=True, width=200)
        render_status(status, console)
        assert "webhooks dead-lettered: 1 event(s)" in console.export_text()

        capsys.readouterr()
        assert main(["webhooks", "--json", "-c", str(path)]) == 0
        listing = json.loads(capsys.readouterr().out)
        assert [(d["event_id"], d["status"], d["attempts"]) for d in listing["deliveries"]] \
            == [(event_id, "dead", 2)]
        assert main(["webhooks", "--replay", "evt_unknown", "-c", str(path)]) == 1
        assert main(["webhooks", "--replay", event_id, "-c", str(path)]) == 0
        turn_until(lambda: sender.totals["delivered"] == 1)
    assert [r.id for r in receiver.received] == [event_id] * 3
    assert receiver.delivered[0].valid
    assert Outbox(store).counts() == {DELIVERED: 1}


# -- pauses --------------------------------------------------------------------------------


def test_pauses_are_told_once_and_a_quota_trial_is_not_a_resume():
    told: list[str] = []
    gate = UploadGate()
    gate.pause(QuotaError(429, "usage_limit_exceeded", "no credit"))  # before anyone listens
    gate.listen(lambda what, _error: told.append(what))
    gate.pause(QuotaError(429, "usage_limit_exceeded", "no credit"))
    gate.resume(trial=True)  # the pause check lets one upload try
    gate.pause(QuotaError(429, "usage_limit_exceeded", "no credit"))  # it failed
    gate.resume(trial=True)
    assert told == ["paused"]
    gate.note_success()  # it went through
    gate.note_success()
    gate.pause(AuthError(401, "api_key_invalid", "expired"))
    gate.resume()  # the check saw the key accepted
    assert told == ["paused", "resumed", "paused", "resumed"]


def test_pause_events_reach_the_outbox_for_the_account_and_an_index(tmp_path, store):
    config = config_for(tmp_path, "https://a.example/h")
    events = PauseEvents(store, lambda: config)
    gate = UploadGate()
    gate.listen(events.account)
    pauses = IndexPauses(lambda: config)
    pauses.listener = events.index
    gate.pause(AuthError(401, "api_key_invalid", "expired"))
    pauses.pause("idx", AuthError(404, "resource_not_exist", "gone"))
    pauses.resume("idx")
    pauses.resume("idx")  # not paused any more: nothing to tell
    bodies = [json.loads(d.body) for d in Outbox(store).listed(PENDING)]
    assert [(b["type"], b["pause"]["scope"], b["pause"]["index_id"]) for b in bodies] == [
        ("paused", "account", None), ("paused", "index", "idx"), ("resumed", "index", "idx")]
    assert bodies[0]["pause"]["kind"] == "AuthError"
    assert bodies[0]["pause"]["fix"]


def test_retention_forgets_delivered_events_only(tmp_path, store):
    clock = FakeClock(1000.0)
    store.clock = clock
    config = config_for(tmp_path, "https://a.example/h")
    outbox = Outbox(store)
    for what in ("paused", "resumed", "paused"):
        pause_event(config, store, what)
    first, second, third = outbox.listed(PENDING)
    outbox.delivered(first.seq)
    outbox.failed(second.seq, "HTTP 500", None)  # dead
    clock.now += 100
    outbox.delivered(third.seq)  # delivered after the cutoff
    assert store.prune(cutoff=1050.0, batch=10) == 1
    assert [(d.seq, d.status) for d in outbox.listed(DELIVERED, DEAD)] == [
        (second.seq, DEAD), (third.seq, DELIVERED)]


def test_events_for_a_receiver_gone_from_the_config_die_after_their_window(tmp_path, store):
    clock = FakeClock(time.time())
    store.clock = clock
    old = config_for(tmp_path / "before", "https://gone.example/h")
    kept = config_for(tmp_path, "https://kept.example/h", webhook_retry_hours=1)
    pause_event(old, store)
    pause_event(kept, store)
    sender = WebhookSender(config=kept, store=store, clock=clock)
    sender._dead_letter_unrouted()
    assert Outbox(store).counts() == {PENDING: 2}  # still within its window
    clock.now += 3601
    sender._dead_letter_unrouted()
    [dead] = Outbox(store).listed(DEAD)
    assert (dead.receiver, dead.last_error) == ("https://gone.example/h",
                                                "receiver no longer in the config")
    assert Outbox(store).counts() == {PENDING: 1, DEAD: 1}
