"""Validation profiles: the table, an index's models to a profile, the cache, old spellings."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

import watcherd.media.profiles as profiles
from watcherd.config import parse_config
from watcherd.errors import ConfigError
from watcherd.media.limits import GIB
from watcherd.media.profiles import PROFILES, NoVideoModel
from watcherd.service.folderprofiles import cached_profiles, resolve_profiles
from watcherd.state.store import Store

M30, M27, P12 = (PROFILES[name].limits for name in ("marengo3.0", "marengo2.7", "pegasus1.2"))


def config(*folders: dict, tmp_path: Path = Path("/tmp")):
    return parse_config({"folders": list(folders)}, base_dir=tmp_path, env={"HOME": "/h"})


def test_the_table_holds_each_models_published_limits():
    assert (M30.min_short_side, M30.max_long_side, M30.max_short_side) == (360, 5184, 2160)
    assert M30.max_aspect_ratio == 2.4
    assert (M30.min_duration_seconds, M30.max_duration_seconds) == (4, 4 * 3600)
    assert M30.max_size_bytes == 4 * GIB
    assert (M27.max_long_side, M27.max_short_side, M27.max_duration_seconds) == (3840, 2160, 7200)
    assert M27.max_size_bytes == 2 * GIB
    assert P12.max_duration_seconds == 3600 and not PROFILES["pegasus1.2"].takes_videos
    assert profiles.NEWEST == "marengo3.0"
    for profile in PROFILES.values():
        assert profile.as_of and profile.source  # the README's table shows both


def test_an_index_with_marengo_3_0_gets_its_profile():
    profile = profiles.from_models(("marengo3.0",), source="index", checked_at=5.0)
    assert (profile.name, profile.limits, profile.source) == ("marengo3.0", M30, "index")
    assert profile.describe() == "marengo3.0 (from index: marengo3.0)"


def test_several_models_take_the_strictest_bound_of_each_limit():
    profile = profiles.from_models(("marengo3.0", "marengo2.7"), source="index")
    assert profile.name == "marengo3.0+marengo2.7" and profile.limits == M27
    # Field by field: each side may be the stricter one.
    a = replace(M30, max_size_bytes=1, min_duration_seconds=1.0)
    b = replace(M30, max_long_side=400, min_short_side=380)
    both = profiles.strictest([a, b])
    assert (both.max_size_bytes, both.min_duration_seconds) == (1, 4.0)
    assert (both.max_long_side, both.min_short_side) == (400, 380)


def test_pegasus_1_2_beside_marengo_does_not_restrict_what_marengo_indexes():
    profile = profiles.from_models(("marengo3.0", "pegasus1.2"), source="index")
    assert profile.name == "marengo3.0" and profile.limits == M30
    assert profile.models == ("marengo3.0", "pegasus1.2")
    profiles.check_takes_videos("idx", ("marengo3.0", "pegasus1.2"))  # no error


def test_a_pegasus_1_2_only_index_takes_no_videos():
    with pytest.raises(NoVideoModel) as caught:
        profiles.check_takes_videos("idx_peg", ("pegasus1.2",))
    assert "index idx_peg has only pegasus1.2, which can no longer take new videos" \
        in caught.value.reason
    assert "marengo3.0" in caught.value.reason  # what to do instead


def test_an_unknown_model_gets_the_newest_profile_and_one_warning(caplog):
    caplog.set_level(logging.WARNING, logger="watcherd.media.profiles")
    for _ in range(3):
        profile = profiles.from_models(("marengo9.9-test",), source="index")
        assert (profile.name, profile.limits) == ("marengo3.0", M30)
    warned = [r for r in caplog.records if "marengo9.9-test" in r.getMessage()]
    assert len(warned) == 1 and "newest known profile, marengo3.0" in warned[0].getMessage()
    # Beside a known model it is counted as the newest: the strictest of both still applies.
    assert profiles.from_models(("marengo9.9-test", "marengo2.7"), source="index").limits == M27


def test_index_models_reads_the_v1_3_answer():
    answer = {"models": [{"model_name": "marengo3.0", "model_options": ["visual"]},
                         {"model_name": "pegasus1.2"}]}
    assert profiles.index_models(answer) == ("marengo3.0", "pegasus1.2")
    assert profiles.index_models({}) == ()


def test_model_defaults_to_auto_and_old_spellings_map_with_a_deprecation_warning(tmp_path):
    cfg = config({"path": "/a", "index_id": "i1"},
                 {"path": "/b", "index_id": "i2", "model": "marengo"},
                 {"path": "/c", "index_id": "i3", "model": "pegasus"},
                 {"path": "/d", "index_id": "i4", "model": "marengo2.7",
                  "limits": {"max_duration_seconds": 60}})
    auto, marengo, pegasus, pinned = cfg.folders
    assert auto.model == "auto" and auto.profile.source == "default"
    assert auto.profile.limits == M30
    # An existing config stops refusing 3-hour videos: "marengo" is the newest Marengo.
    assert marengo.model == "marengo3.0" and marengo.profile.limits.max_duration_seconds == 14400
    assert marengo.profile.source == "override"
    assert pegasus.model == "pegasus1.2" and pegasus.profile.limits == P12
    assert pinned.profile.limits == replace(M27, max_duration_seconds=60)
    assert [w.split(":")[0] for w in cfg.warnings] == ["folders[1].model", "folders[2].model"]
    assert "'marengo' is deprecated: it now means marengo3.0; use 'auto'" in cfg.warnings[0]


def test_a_bad_model_lists_every_choice(tmp_path):
    with pytest.raises(ConfigError) as caught:
        config({"path": "/a", "index_id": "i", "model": "gpt"})
    assert caught.value.errors == [("folders[0].model: must be one of auto, marengo3.0, "
                                   "marengo2.7, pegasus1.2, marengo, pegasus (got 'gpt')")]


# -- resolution for a config: fresh answers, the cache, the default -----------------------


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "state.db").open()
    yield store
    store.close()


def test_fresh_models_are_used_and_cached_then_the_cache_answers_without_network(store):
    cfg = config({"path": "/a", "index_id": "idx", "limits": {"max_duration_seconds": 3}},
                 {"path": "/b", "index_id": "other"})
    fresh = resolve_profiles(cfg, {"idx": ("marengo2.7",)}, store)
    a, b = fresh.folders
    assert (a.profile.name, a.profile.source) == ("marengo2.7", "index")
    # The folder's limits still apply on top of the index's profile.
    assert a.profile.limits == replace(M27, max_duration_seconds=3)
    assert (b.profile.name, b.profile.source) == ("marengo3.0", "default")
    assert store.index_models("idx")[0] == ("marengo2.7",)

    offline = resolve_profiles(cfg, {}, store)  # a later start: the API does not answer
    assert (offline.folders[0].profile.source, offline.folders[0].profile.limits) == (
        "cache", replace(M27, max_duration_seconds=3))
    assert offline.folders[0].profile.checked_at == store.index_models("idx")[1]
    assert offline.folders[0] == cfg.folders[0]  # the profile is not configuration


def test_an_override_pins_the_profile_whatever_the_index_says(store):
    cfg = config({"path": "/a", "index_id": "idx", "model": "marengo2.7"})
    profile = resolve_profiles(cfg, {"idx": ("marengo3.0",)}, store).folders[0].profile
    assert (profile.name, profile.source, profile.limits) == ("marengo2.7", "override", M27)


def test_a_pegasus_only_index_is_a_config_error_naming_the_folder(store):
    cfg = config({"path": "/a", "index_id": "idx"}, {"path": "/b", "index_id": "peg",
                                                     "model": "marengo3.0"})
    with pytest.raises(ConfigError) as caught:
        resolve_profiles(cfg, {"idx": ("marengo3.0",), "peg": ("pegasus1.2",)}, store)
    assert caught.value.errors == [
        ("folders[1].index_id: index peg has only pegasus1.2, which can no longer take new "
        "videos (Twelve Labs ended Pegasus 1.2 indexing in 2026): create an index with "
        "marengo3.0 and put its id here")]
    store.save_index_models("peg", ("pegasus1.2",))  # as cached by an older watcherd
    with pytest.raises(ConfigError, match=r"folders\[1\]\.index_id: index peg has only"):
        resolve_profiles(cfg, {}, store)


def test_operator_commands_read_the_cache_without_writing_it(store, tmp_path):
    store.save_index_models("idx", ("marengo2.7",))
    readonly = Store(tmp_path / "state.db", readonly=True)
    try:
        cfg = config({"path": "/a", "index_id": "idx"})
        assert cached_profiles(cfg, readonly).folders[0].profile.limits == M27
        assert cached_profiles(cfg, None).folders[0].profile.limits == M30
    finally:
        readonly.close()

