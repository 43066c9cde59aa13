"""SIGHUP reloads, one step at a time: what changed, what is refused, what is kept."""

from __future__ import annotations

import queue
from typing import ClassVar

import pytest
import yaml

from tests.conftest import TEST_KEY
from watcherd.config import load_config
from watcherd.errors import ConfigError
from watcherd.intake.watcher import Scanner, Watcher
from watcherd.service.folderprofiles import resolve_profiles
from watcherd.service.reload import describe_changes, prepare_reload
from watcherd.state.states import State
from watcherd.state.store import Store


@pytest.fixture
def setup(tmp_path, monkeypatch, fake_api):
    monkeypatch.setenv("TWELVELABS_API_KEY", TEST_KEY)
    folders = {name: tmp_path / name for name in ("a", "b", "c")}
    for path in folders.values():
        path.mkdir()
    settings = {"api": {"base_url": fake_api.base_url}, "state_db": str(tmp_path / "s.db"),
                "folders": [{"path": str(folders["a"]), "index_id": "idx_test"},
                            {"path": str(folders["b"]), "index_id": "idx_test"}]}
    config_path = tmp_path / "config.yaml"

    def write(load=True, **changes):
        config_path.write_text(yaml.safe_dump({**settings, **changes}))
        return load_config(config_path) if load else None

    store = Store(tmp_path / "s.db").open()
    yield write, folders, store
    store.close()


def test_changes_are_described_folder_by_folder_and_setting_by_setting(setup):
    write, folders, _ = setup
    old = write()
    new = write(settle_seconds=9, folders=[
        {"path": str(folders["a"]), "index_id": "idx_test", "recursive": True},
        {"path": str(folders["c"]), "index_id": "idx_test"}])
    assert describe_changes(old, new) == [
        f"added folder {folders['c']}", f"removed folder {folders['b']}",
        f"changed folder {folders['a']}", "settle_seconds changed"]


def test_a_bad_config_is_refused_with_every_error(setup):
    write, _, store = setup
    current = write()
    write(load=False, settle_seconds=-1, upload_workers=99)
    with pytest.raises(ConfigError) as caught:
        prepare_reload(current, store)
    assert any(e.startswith("settle_seconds:") for e in caught.value.errors)
    assert any(e.startswith("upload_workers:") for e in caught.value.errors)


def test_a_new_folder_with_an_unknown_index_is_refused(setup):
    write, folders, store = setup
    current = write()
    write(folders=[{"path": str(folders["a"]), "index_id": "idx_test"},
                   {"path": str(folders["c"]), "index_id": "idx_nope"}])
    with pytest.raises(ConfigError) as caught:
        prepare_reload(current, store)
    assert caught.value.errors[0].startswith("folders[1].index_id: index idx_nope")


def test_a_reload_asks_every_index_again_and_follows_its_models(setup, fake_api):
    write, folders, store = setup
    current = resolve_profiles(write(), {"idx_test": ("marengo3.0",)}, store)
    fake_api.index_models["idx_test"] = ["marengo2.7"]  # say, an index moved back (a test)
    new, changes = prepare_reload(current, store)
    assert [(f.profile.name, f.profile.source) for f in new.folders] == [
        ("marengo2.7", "index"), ("marengo2.7", "index")]
    assert fake_api.count("GET", "/indexes/idx_test") == 1  # once per index, not per folder
    assert f"folder {folders['a']} now validates with marengo2.7 (from index: marengo2.7) " \
        "(was marengo3.0 (from index: marengo3.0))" in changes
    assert store.index_models("idx_test")[0] == ("marengo2.7",)


def test_a_reload_without_network_keeps_the_cached_profile(setup, fake_api):
    write, folders, store = setup
    fake_api.indexes.append("idx_other")
    both = [{"path": str(folders["a"]), "index_id": "idx_test"},
            {"path": str(folders["b"]), "index_id": "idx_other"}]
    current = resolve_profiles(write(folders=both), {"idx_test": ("marengo2.7",),
                                                     "idx_other": ("marengo2.7",)}, store)
    fake_api.inject("GET", "/indexes/", status=503, times=5)
    new, _ = prepare_reload(current, store)
    assert [(f.profile.name, f.profile.source) for f in new.folders] == [
        ("marengo2.7", "cache"), ("marengo2.7", "cache")]
    # The first index that does not answer ends the round: no timeout per index.
    assert fake_api.count("GET", "/indexes/") == 1


def test_a_new_folder_on_a_pegasus_only_index_refuses_the_reload(setup, fake_api):
    write, folders, store = setup
    current = write()
    fake_api.indexes.append("idx_peg")
    fake_api.index_models["idx_peg"] = ["pegasus1.2"]
    write(load=False, folders=[{"path": str(folders["a"]), "index_id": "idx_test"},
                               {"path": str(folders["c"]), "index_id": "idx_peg"}])
    with pytest.raises(ConfigError) as caught:
        prepare_reload(current, store)
    assert caught.value.errors == [
        ("folders[1].index_id: index idx_peg has only pegasus1.2, which can no longer take new "
        "videos (Twelve Labs ended Pegasus 1.2 indexing in 2026): create an index with "
        "marengo3.0 and put its id here")]


def test_restart_only_settings_are_kept_and_named(setup, tmp_path):
    write, _, store = setup
    current = write()
    write(state_db=str(tmp_path / "other.db"), upload_workers=4, poll_interval_seconds=3)
    new, changes = prepare_reload(current, store)
    assert (new.state_db, new.upload_workers) == (current.state_db, current.upload_workers)
    assert new.poll_interval_seconds == 3
    assert any(c.startswith("upload_workers changes only on restart") for c in changes)
    assert any(c.startswith("state_db changes only on restart") for c in changes)


def test_a_removed_folder_with_files_in_flight_is_retired_not_forgotten(setup):
    write, folders, store = setup
    current = write()
    busy = store.add(path=str(folders["b"] / "x.mp4"), folder=str(folders["b"]),
                     index_id="idx_test", size=1, mtime_ns=1)
    store.transition(busy.id, State.QUEUED)
    write(folders=[{"path": str(folders["a"]), "index_id": "idx_test"}])
    new, _ = prepare_reload(current, store)
    assert [f.path for f in new.folders] == [folders["a"]]
    assert [f.path for f in new.retired] == [folders["b"]]
    assert new.folder_for(folders["b"] / "x.mp4").path == folders["b"]
    # Once its files are finished, a later reload forgets it.
    store.transition(busy.id, State.VANISHED)
    newer, _ = prepare_reload(new, store)
    assert newer.retired == ()


def test_the_watcher_follows_the_folders_of_a_reload(setup):
    write, folders, _ = setup
    old = write()
    intake: queue.SimpleQueue = queue.SimpleQueue()
    scanner = Scanner(old, intake)
    watcher = Watcher(old, intake, scanner)
    watcher.start()
    kept = watcher.watches[0]
    try:
        new = write(folders=[
            {"path": str(folders["a"]), "index_id": "idx_test", "model": "marengo2.7"},
            {"path": str(folders["c"]), "index_id": "idx_test"}])
        watcher.reconfigure(new)
        assert [w.folder.path for w in watcher.watches] == [folders["a"], folders["c"]]
        assert watcher.watches[0] is kept and kept.folder.model == "marengo2.7"
        assert all(w.healthy for w in watcher.watches)
        (folders["c"] / "new.mp4").write_bytes(b"x")
        hints = []
        while not hints or hints[-1].path != str(folders["c"] / "new.mp4"):
            hints.append(intake.get(timeout=5))
    finally:
        watcher.stop()


def test_an_unexpected_reload_failure_keeps_the_daemon_and_its_config(setup, monkeypatch,
                                                                      caplog):
    import watcherd.service.daemon as daemon_module
    from watcherd.service.daemon import Daemon

    write, _, store = setup
    config = write()

    class Quiet:
        sent: ClassVar[list[str]] = []

        def reloading(self):
            self.sent.append("RELOADING=1")

        def ready(self, status=None):
            self.sent.append("READY=1")

    def broken(*_args):
        raise OSError("disk on fire")

    monkeypatch.setattr(daemon_module, "prepare_reload", broken)
    d = Daemon(config, store=store, notifier=Quiet())
    d.monitor.summary = lambda: "status"
    d.reload()
    assert d.config is config and Quiet.sent == ["RELOADING=1", "READY=1"]
    assert "reload failed" in caplog.text and "disk on fire" in caplog.text
    d.api.close()
