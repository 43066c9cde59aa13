"""Metadata sources, checked without a daemon: config rules at load, path templates, the merge,
the settler's wait for a metadata file."""

from __future__ import annotations

import json
import queue
from pathlib import Path

import pytest

from tests.conftest import FakeClock
from watcherd.config import parse_config
from watcherd.errors import ConfigError, MediaRejected
from watcherd.ingest.usermetadata import RESERVED_KEYS, user_metadata_for, user_metadata_sources
from watcherd.intake.filters import name_reason
from watcherd.intake.metadata import gather
from watcherd.intake.pathtemplate import parse
from watcherd.intake.settle import Hint, Settler
from watcherd.simulator.usermetadata import checked, from_text
from watcherd.state.store import Store
from watcherd.twelvelabs.metadatarules import MAX_SAFE_INTEGER, value_problem


def folder_config(tmp_path: Path, **keys):
    raw = {"folders": [{"path": str(tmp_path), "index_id": "idx", **keys}]}
    return parse_config(raw, base_dir=tmp_path, env={}).folders[0]


def config_errors(tmp_path: Path, **keys) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        folder_config(tmp_path, **keys)
    return caught.value.errors


def test_folder_metadata_breaking_twelve_labs_rules_is_refused_at_load_with_its_key(tmp_path):
    errors = config_errors(tmp_path, user_metadata={
        "ok": "x", 7: "number key", "big": 2**60, "mixed": ["a", 1], "nested": {"a": 1},
        "nothing": None, "sha256": "mine", "source_path": "mine"})
    assert len(errors) == 7, errors
    assert "folders[0].user_metadata.7: keys must be strings" in errors[0]
    assert "folders[0].user_metadata.big: the integer 1152921504606846976 is wider than 53 " \
        "bits" in errors[1] and '"1152921504606846976"' in errors[1]
    assert errors[2].startswith("folders[0].user_metadata.mixed: a list must hold only strings")
    assert errors[3].startswith("folders[0].user_metadata.nested: must be a string, a number")
    assert errors[4].endswith("(got null)")
    for line, key in zip(errors[5:], ("sha256", "source_path"), strict=True):
        assert line.startswith(f"folders[0].user_metadata.{key}: '{key}' is reserved: "
                               "watcherd sends sha256, source_path, watcherd_file_id itself")


def test_values_twelve_labs_takes_pass(tmp_path):
    folder = folder_config(tmp_path, user_metadata={
        "team": "news", "year": 2026, "score": 0.5, "public": False, "tags": ["a", "b"],
        "id": str(2**60), "edge": MAX_SAFE_INTEGER})
    assert folder.metadata.folder_values()["tags"] == ["a", "b"]
    assert value_problem(-MAX_SAFE_INTEGER) is None and value_problem(float("nan"))


def test_path_metadata_is_checked_at_load(tmp_path):
    assert config_errors(tmp_path, path_metadata="{customer}/*") == [
        "folders[0].path_metadata: needs recursive: true (a file directly in the folder has "
        "no path segments to read)"]
    errors = config_errors(tmp_path, recursive=True, path_metadata="{sha256}/*")
    assert errors[0].startswith("folders[0].path_metadata: {sha256}: 'sha256' is reserved")
    for bad, why in (("x{a}/*", "must be a whole segment"), ("{a}/{a}/*", "appears twice"),
                     ("a//b", "empty segment"), ("*/*", "names no {key}"),
                     ("**/{a}/**", "at most one **")):
        assert why in config_errors(tmp_path, recursive=True, path_metadata=bad)[0], bad


def test_after_modes_need_what_they_use(tmp_path):
    assert config_errors(tmp_path, after="leave")[0].startswith(
        "folders[0].records_dir: required with after: leave")
    assert "not used with after: leave" in config_errors(
        tmp_path, after="leave", records_dir=str(tmp_path / "r"), done_dir="d")[0]
    assert "only used with after: leave or delete" in config_errors(
        tmp_path, records_dir=str(tmp_path / "r"))[0]
    assert config_errors(tmp_path, after="keep")[0].startswith(
        "folders[0].after: must be one of move, leave, delete")
    left = folder_config(tmp_path, after="leave", records_dir="records")
    assert left.records_dir == left.done_dir == left.failed_dir == tmp_path / "records"
    deleted = folder_config(tmp_path, after="delete")
    assert deleted.records_dir == deleted.done_dir == tmp_path / "done"
    assert config_errors(tmp_path, metadata_suffix="meta")[0].startswith(
        "folders[0].metadata_suffix: must start with a dot")


def test_a_template_matches_segments_and_says_why_not():
    template = parse("{customer}/{project}/*")
    assert not isinstance(template, str)
    assert template.match(("acme", "launch", "clip.mp4")) == {"customer": "acme",
                                                              "project": "launch"}
    assert template.match(("acme", "clip.mp4")) is None
    assert "has 2 path segments" in template.why_not(("acme", "clip.mp4"))
    deep = parse("{customer}/**")
    assert not isinstance(deep, str)
    assert deep.match(("acme", "a", "b", "c.mp4")) == {"customer": "acme"}
    literal = parse("shoots/{day}/*.mp4")
    assert not isinstance(literal, str)
    assert literal.match(("shoots", "mon", "c.mp4")) == {"day": "mon"}
    assert literal.match(("other", "mon", "c.mp4")) is None


def test_merge_order_is_file_over_path_over_folder(tmp_path):
    folder = folder_config(tmp_path, recursive=True, path_metadata="{customer}/{project}/*",
                           user_metadata={"customer": "folder", "project": "folder",
                                          "team": "news"})
    video = tmp_path / "acme" / "launch" / "clip.mp4"
    video.parent.mkdir(parents=True)
    video.write_bytes(b"x")
    Path(f"{video}.meta.json").write_text(json.dumps({"project": "file", "rights": ["web"]}))
    found = gather(str(video), folder)
    assert found.values == {"customer": "acme", "project": "file", "team": "news",
                            "rights": ["web"]}
    assert found.origins == {"customer": "path", "project": "file", "team": "folder",
                             "rights": "file"}
    elsewhere = tmp_path / "flat.mp4"
    elsewhere.write_bytes(b"x")
    found = gather(str(elsewhere), folder)
    assert found.values == {"customer": "folder", "project": "folder", "team": "news"}
    assert any("has 1 path segments" in note for note in found.notes)


@pytest.mark.parametrize("text, why", [
    ("{not json", "is not valid JSON"), ("[1, 2]", "must hold a JSON object"),
    ('{"n": NaN}', "is not valid JSON"), ('{"big": 9007199254740993}', "wider than 53 bits"),
    ('{"sha256": "x"}', "'sha256' is reserved"), ('{"a": {"b": 1}}', "must be a string"),
])
def test_a_metadata_file_that_cannot_be_sent_rejects_the_video(tmp_path, text, why):
    folder = folder_config(tmp_path)
    (tmp_path / "clip.mp4.meta.json").write_text(text)
    with pytest.raises(MediaRejected) as caught:
        gather(str(tmp_path / "clip.mp4"), folder)
    assert caught.value.rule == "metadata" and why in caught.value.reason


def test_required_metadata_missing_rejects_and_optional_goes_without(tmp_path):
    with pytest.raises(MediaRejected, match="did not arrive within 5s"):
        gather(str(tmp_path / "clip.mp4"),
               folder_config(tmp_path, metadata="required", metadata_wait_seconds=5))
    assert gather(str(tmp_path / "clip.mp4"), folder_config(tmp_path)).values == {}


def test_metadata_files_are_never_candidates(tmp_path):
    folder = folder_config(tmp_path, extensions=[".mp4", ".json"])
    assert name_reason(("clip.mp4.meta.json",), folder) == \
        "metadata file of clip.mp4 (read and moved with it, never uploaded itself)"
    assert name_reason(("notes.json",), folder) is None  # only the metadata suffix


def test_the_simulator_parses_user_metadata_strictly():
    assert from_text('{"a": "x", "b": "", "c": [], "d": null, "n": 1}') == {"a": "x", "n": 1}
    for bad in ('"text"', '{"big": 9007199254740993}', '{"a": [1]}', '{"a": {}}',
                '{"a": NaN}', "not json"):
        with pytest.raises(Exception, match="user_metadata"):
            from_text(bad)
    with pytest.raises(Exception, match="user_metadata"):
        checked({"": "x"})


def test_watcherd_sends_exactly_its_reserved_keys_on_top_of_the_gathered_ones(tmp_path):
    store = Store(tmp_path / "state.db").open()
    record = store.add(path="/in/clip.mp4", folder="/in", index_id="idx", sha256="ab",
                       metadata_json={"values": {"team": "news"}, "origins": {"team": "folder"}})
    sent = user_metadata_for(record)
    assert set(sent) - {"team"} == set(RESERVED_KEYS)
    assert sent == {"team": "news", "sha256": "ab", "source_path": "/in/clip.mp4",
                    "watcherd_file_id": record.id}
    assert user_metadata_sources(record) == {"team": "folder", **dict.fromkeys(RESERVED_KEYS,
                                                                               "watcherd")}
    store.close()


def settler_rig(tmp_path: Path, **keys):
    inbox = tmp_path / "inbox"
    (inbox / "done").mkdir(parents=True)
    config = parse_config({"settle_seconds": 5, "folders": [
        {"path": str(inbox), "index_id": "idx", **keys}]}, base_dir=tmp_path, env={})
    store = Store(tmp_path / "state.db").open()
    released: list[int] = []
    clock = FakeClock()
    settler = Settler(config=config, store=store, intake=queue.SimpleQueue(),
                      release=released.append, clock=clock)
    return settler, inbox, released, clock, store


def step(settler, clock: FakeClock, seconds: float) -> None:
    clock.now += seconds
    settler.tick()


def test_required_metadata_is_waited_for_exactly_the_wait_never_longer(tmp_path):
    settler, inbox, released, clock, store = settler_rig(
        tmp_path, metadata="required", metadata_wait_seconds=30)
    (inbox / "clip.mp4").write_bytes(b"x")
    settler.offer(Hint(str(inbox / "clip.mp4"), "event"))
    step(settler, clock, 5.01)  # settled: the wait for its metadata file begins
    step(settler, clock, 29.9)
    assert released == []
    step(settler, clock, 0.2)  # 30 s after settling: it goes on, without one
    assert len(released) == 1
    store.close()


def test_a_metadata_file_written_late_or_changing_restarts_the_quiet_period(tmp_path):
    settler, inbox, released, clock, store = settler_rig(tmp_path)  # metadata: optional
    (inbox / "clip.mp4").write_bytes(b"x")
    settler.offer(Hint(str(inbox / "clip.mp4"), "event"))
    step(settler, clock, 4)
    (inbox / "clip.mp4.meta.json").write_text('{"a": ')  # being written
    step(settler, clock, 1.01)  # the video is quiet, its metadata file is new
    assert released == []
    (inbox / "clip.mp4.meta.json").write_text('{"a": "b"}')
    step(settler, clock, 5.01)
    assert released == []  # it changed again
    step(settler, clock, 5.01)
    assert len(released) == 1
    store.close()
