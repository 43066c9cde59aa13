"""Webhooks from the real daemon against the simulator: what a receiver gets is signed
(checked with the README's snippet), carries the sidecar document, and survives a
kill -9 between the state change and the delivery, while ingest never waits for it."""

from __future__ import annotations

import shutil
import signal

from tests.conftest import TEST_KEY, wait_for
from tests.webhook_receiver import SECRET, Receiver
from watcherd.simulator.clips import make_video
from watcherd.state.outbox import DELIVERED, PENDING, Outbox
from watcherd.state.store import Store


def pending_ids(daemon) -> dict[str, str]:
    store = Store(daemon.root / "state" / "state.db", readonly=True)
    try:
        return {d.event_type: d.event_id for d in Outbox(store).listed(PENDING)}
    finally:
        store.close()


def test_events_survive_kill_9_and_a_hung_receiver_never_holds_ingest(daemon, valid_clip,
                                                                        clip_dir):
    secret = daemon.root / "webhook-secret"
    secret.write_bytes(SECRET)
    small = make_video(clip_dir / "hook-small.mp4", width=320, height=240)
    with Receiver() as receiver:
        receiver.hang()
        daemon.settings["webhooks"] = [{"url": receiver.url, "secret_file": str(secret),
                                        "timeout_seconds": 60}]
        daemon.start()
        shutil.copy(valid_clip, daemon.inbox / "good.mp4")
        shutil.copy(small, daemon.inbox / "small.mp4")
        # Ingest goes on while the receiver holds the first delivery unanswered.
        done = daemon.wait_done("good.mp4")
        failed = daemon.wait_done("small.mp4", where="failed")
        wait_for(lambda: receiver.received, 10, "the first delivery to arrive")
        ids = wait_for(lambda: (found := pending_ids(daemon)) and len(found) == 2 and found,
                       10, "both events in the outbox")
        assert daemon.stop(signal.SIGKILL) == -signal.SIGKILL
        receiver.release(drop=True)  # the killed daemon's request is never answered
        assert not receiver.delivered

        daemon.start()
        wait_for(lambda: len(receiver.delivered) == 2, 15,
                 lambda: f"both events after the restart (log:\n{daemon.log()[-3000:]})")
    by_type = {r.event["type"]: r for r in receiver.delivered}
    assert {t: r.id for t, r in by_type.items()} == ids  # the ids made before the kill
    assert all(r.valid for r in receiver.received)  # the README's verify() says so
    assert by_type["ready"].event["file"] == daemon.sidecar(done)
    assert by_type["failed"].event["file"] == daemon.sidecar(failed)
    listing = daemon.command_json("webhooks")
    assert listing["counts"] == {DELIVERED: 2}
    assert SECRET.decode() not in daemon.log()


def test_a_refused_key_is_told_as_paused_then_resumed(daemon):
    secret = daemon.root / "webhook-secret"
    secret.write_bytes(SECRET)
    key_file = daemon.root / "api-key"
    key_file.write_text("tlk_wrong_key")
    key_file.chmod(0o600)
    with Receiver() as receiver:
        daemon.settings["api"]["key_file"] = str(key_file)
        daemon.settings["webhooks"] = [{"url": receiver.url, "secret_file": str(secret),
                                        "events": ["paused", "resumed"]}]
        daemon.start()
        wait_for(lambda: receiver.delivered, 10, "the paused event")
        key_file.write_text(TEST_KEY)  # fixed: the pause check resumes uploads
        wait_for(lambda: len(receiver.delivered) == 2, 10,
                 lambda: f"the resumed event (log:\n{daemon.log()[-3000:]})")
    paused, resumed = (r.event for r in receiver.delivered)
    assert (paused["type"], resumed["type"]) == ("paused", "resumed")
    assert paused["pause"]["scope"] == "account"
    assert paused["pause"]["kind"] == "AuthError"
    assert all(r.valid for r in receiver.delivered)
