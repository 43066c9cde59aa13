"""constraints.txt stays in step with pyproject.toml.

Every dependency pyproject.toml declares (the project's and every extra's) is
pinned there, inside its declared range; every package an install of
``watcherd[test]`` brings in, directly or not, is pinned; and nothing else is.
The dependency tree is read from the installed packages' metadata, so no
network is needed.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def pinned() -> dict[NormalizedName, Version]:
    pins: dict[NormalizedName, Version] = {}
    for n, line in enumerate((ROOT / "constraints.txt").read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        req = Requirement(text)
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and not req.extras \
            and req.marker is None, f"constraints.txt:{n}: {line!r} is not a plain name==version"
        name = canonicalize_name(req.name)
        assert name not in pins, f"constraints.txt:{n}: {req.name} is pinned twice"
        pins[name] = Version(specs[0].version)
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return [Requirement(r) for r in [*project["dependencies"], *extras]]


def installed_closure(roots: list[Requirement]) -> set[NormalizedName]:
    """Names of every package that installing ``roots`` brings, for this interpreter."""
    names: set[NormalizedName] = set()
    seen: set[tuple[NormalizedName, str]] = set()
    todo = [(req, extra) for req in roots for extra in ("", *req.extras)]
    while todo:
        req, extra = todo.pop()
        name = canonicalize_name(req.name)
        if (name, extra) in seen:
            continue
        seen.add((name, extra))
        names.add(name)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            raise AssertionError(f"{req.name} is not installed: reinstall with "
                                 "`pip install -c constraints.txt -e '.[test]'`") from None
        for line in dist.requires or []:
            sub = Requirement(line)
            if sub.marker is None or sub.marker.evaluate({"extra": extra}):
                todo.extend((sub, e) for e in ("", *sub.extras))
    return names


def test_every_declared_dependency_is_pinned_inside_its_range():
    pins = pinned()
    for req in declared():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} (pyproject.toml) has no pin in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"constraints.txt pins {req.name}=={pins[name]}, outside pyproject.toml's {req}"


def test_constraints_pin_exactly_what_an_install_brings():
    roots = [r for r in declared() if r.marker is None or r.marker.evaluate({"extra": ""})]
    needed = installed_closure(roots)
    pins = set(pinned())
    assert sorted(needed - pins) == [], "installed but not pinned in constraints.txt"
    assert sorted(pins - needed) == [], "pinned in constraints.txt but nothing installs it"


def test_every_install_uses_the_constraints():
    # Named where each install happens: CI's venv, the dev venv, production.
    for script in (".ci/run", "dev.sh"):
        assert "-c constraints.txt -e '.[test]'" in (ROOT / script).read_text(), script
    assert "pip install -c constraints.txt ." in (ROOT / "README.md").read_text()
