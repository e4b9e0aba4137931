"""The supported Python range is one statement, and everything pinned can install on it.

``pyproject.toml`` says ``requires-python`` and lists the tested versions as
classifiers; the lock must have been resolved for that same range, every locked
package with compiled code must ship a Linux x86-64 wheel for each listed version (or
be pure Python), and the linters must read the code as the lowest version, so nothing
newer creeps in. Running the suite on each listed version is done by hand (README,
"Working on it"); this test keeps the statements true between those runs.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.tags import Tag
from packaging.utils import parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
CLASSIFIER_PREFIX = "Programming Language :: Python :: 3."


def _toml(name: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / name).read_text())


def listed_versions() -> list[Version]:
    """The minor versions the classifiers name, e.g. 3.11, 3.12."""
    classifiers = _toml("pyproject.toml")["project"]["classifiers"]
    return sorted(
        Version("3." + text.removeprefix(CLASSIFIER_PREFIX))
        for text in classifiers
        if text.startswith(CLASSIFIER_PREFIX) and text.removeprefix(CLASSIFIER_PREFIX).isdigit()
    )


def _installs_on(tag: Tag, version: Version) -> bool:
    """Whether a wheel with ``tag`` installs on CPython ``version`` on Linux x86-64."""
    if not (tag.platform == "any" or tag.platform.endswith("x86_64")):
        return False
    if tag.platform != "any" and not tag.platform.startswith(("manylinux", "linux")):
        return False
    digits = f"{version.major}{version.minor}"
    if tag.interpreter in (f"py{version.major}", f"py{digits}"):
        return True
    if tag.interpreter == f"cp{digits}" and tag.abi == f"cp{digits}":
        return True
    # The stable ABI: built for cpXY, usable on every later version.
    return tag.abi == "abi3" and tag.interpreter.startswith("cp") and (
        int(tag.interpreter[3:] or 0) <= version.minor
    )


def test_the_range_is_stated_once_and_the_lock_follows_it() -> None:
    required = _toml("pyproject.toml")["project"]["requires-python"]
    assert _toml("uv.lock")["requires-python"] == required, "run `make lock`"
    specifier = SpecifierSet(required)
    versions = listed_versions()
    assert versions, "pyproject.toml lists no Python version classifiers"
    assert all(str(v) in specifier for v in versions)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in specifier
    lowest = versions[0]
    assert not specifier.contains(f"{lowest.major}.{lowest.minor - 1}"), (
        "requires-python allows a version older than the lowest classifier"
    )


def test_linters_read_the_code_as_the_lowest_version() -> None:
    lowest = listed_versions()[0]
    tools = _toml("pyproject.toml")["tool"]
    assert tools["ruff"]["target-version"] == f"py{lowest.major}{lowest.minor}"
    assert tools["mypy"]["python_version"] == str(lowest)


def test_every_locked_package_installs_on_every_listed_version() -> None:
    missing: list[str] = []
    for package in _toml("uv.lock")["package"]:
        wheels = [wheel["url"].rsplit("/", 1)[1] for wheel in package.get("wheels", [])]
        if not wheels:
            continue  # the project itself, or an sdist-only pure package
        tags = {tag for name in wheels for tag in parse_wheel_filename(name)[3]}
        for version in listed_versions():
            if not any(_installs_on(tag, version) for tag in tags):
                missing.append(f"{package['name']} {package['version']} on {version}")
    assert not missing, f"no Linux x86-64 wheel: {missing}"
