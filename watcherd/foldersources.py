"""The folder keys that say what goes in with a video and what becomes of its source.

``user_metadata``, ``path_metadata``, ``metadata``, ``metadata_suffix`` and
``metadata_wait_seconds`` (the metadata sent with each video) and ``after``
with ``records_dir`` (move, leave or delete the source), read into frozen
dataclasses with every error under its key path, like the rest of the config.
The value rules are Twelve Labs' (``twelvelabs.metadatarules``), the template
syntax intake's (``intake.pathtemplate``); both import nothing from watcherd.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from watcherd.intake.pathtemplate import PathTemplate
from watcherd.intake.pathtemplate import parse as parse_template
from watcherd.twelvelabs.metadatarules import problems as value_problems
from watcherd.yamlreader import Reader, field_default

# The keys watcherd sends itself (``ingest.usermetadata`` builds them): a
# folder, a path template or a metadata file may not set them.
RESERVED_KEYS = ("sha256", "source_path", "watcherd_file_id")
METADATA_MODES = ("optional", "required")
AFTER_MODES = ("move", "leave", "delete")
KEYS = ("user_metadata", "path_metadata", "metadata", "metadata_suffix",
        "metadata_wait_seconds", "after", "records_dir")


def reserved_problem(key: str) -> str | None:
    if key in RESERVED_KEYS:
        return (f"{key!r} is reserved: watcherd sends {', '.join(RESERVED_KEYS)} itself "
                "(so a video can be found again by content and origin)")
    return None


@dataclass(frozen=True)
class MetadataSettings:
    # folders[].user_metadata as (key, value) pairs, lists as tuples: frozen and hashable.
    user_metadata: tuple[tuple[str, Any], ...] = ()
    path_metadata: PathTemplate | None = None
    # "required": a video waits for its metadata file (at most wait_seconds after
    # settling) and fails without it; "optional": it goes without.
    mode: str = "optional"
    suffix: str = ".meta.json"  # clip.mp4 -> clip.mp4.meta.json
    wait_seconds: float = 60.0

    def folder_values(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self.user_metadata}


@dataclass(frozen=True)
class Sources:
    """What the config reads from the new keys, for ``FolderConfig``."""
    metadata: MetadataSettings
    after: str
    records_dir: Path | None


def parse_sources(reader: Reader, raw: dict, key: str, *, path: Path | None,
                  recursive: bool, done_dir: Path | None, failed_dir: Path | None) -> Sources:
    metadata = MetadataSettings(
        user_metadata=_folder_metadata(reader, raw.get("user_metadata"), f"{key}.user_metadata"),
        path_metadata=_template(reader, raw.get("path_metadata"), f"{key}.path_metadata",
                                recursive),
        mode=reader.choice(raw, "metadata", f"{key}.metadata", METADATA_MODES,
                           field_default(MetadataSettings, "mode")),
        suffix=_suffix(reader, raw, f"{key}.metadata_suffix"),
        wait_seconds=reader.number(raw, "metadata_wait_seconds", f"{key}.metadata_wait_seconds",
                                   field_default(MetadataSettings, "wait_seconds"), minimum=0),
    )
    after = reader.choice(raw, "after", f"{key}.after", AFTER_MODES, "move")
    records_dir = reader.path(raw, "records_dir", f"{key}.records_dir")
    if after == "leave":
        for name, given in (("done_dir", done_dir), ("failed_dir", failed_dir)):
            if given is not None:
                reader.errors.add(f"{key}.{name}", "not used with after: leave (files stay "
                                  "where they are; their sidecars go to records_dir)")
        if records_dir is None:
            reader.errors.add(f"{key}.records_dir", "required with after: leave: a writable "
                              "folder for the sidecars (the source may be read-only)")
    elif after == "move" and records_dir is not None:
        reader.errors.add(f"{key}.records_dir", "only used with after: leave or delete "
                          "(with move, sidecars go beside the moved file)")
    if records_dir is not None and path is not None and records_dir == path:
        reader.errors.add(f"{key}.records_dir", "must differ from the folder's path")
    return Sources(metadata, after, records_dir)


def _folder_metadata(reader: Reader, value: Any, key: str) -> tuple[tuple[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        reader.errors.add(key, "must be a mapping of keys to values")
        return ()
    bad = dict(value_problems(value))
    for name in value:
        problem = bad.get(str(name)) or reserved_problem(str(name))
        if problem:
            reader.errors.add(f"{key}.{name}", problem)
    return tuple((str(k), tuple(v) if isinstance(v, list) else v) for k, v in value.items())


def _template(reader: Reader, value: Any, key: str, recursive: bool) -> PathTemplate | None:
    if value is None:
        return None
    if not isinstance(value, str):
        reader.errors.add(key, f"must be a string like \"{{customer}}/{{project}}/*\" "
                          f"(got {value!r})")
        return None
    template = parse_template(value)
    if isinstance(template, str):
        reader.errors.add(key, template)
        return None
    if not recursive:
        reader.errors.add(key, "needs recursive: true (a file directly in the folder has "
                          "no path segments to read)")
    for name in template.keys:
        problem = reserved_problem(name)
        if problem:
            reader.errors.add(key, f"{{{name}}}: {problem}")
    return template


def _suffix(reader: Reader, raw: dict, key: str) -> str:
    default: str = field_default(MetadataSettings, "suffix")
    suffix = reader.string(raw, "metadata_suffix", key, default)
    if suffix is None or (suffix.startswith(".") and len(suffix) > 1 and "/" not in suffix):
        return suffix or default
    reader.errors.add(key, f"must start with a dot and name no folder, like .meta.json "
                      f"(got {suffix!r})")
    return default
