"""The README's architecture section is true: every module of compiler/ is in its
table, and every module it names exists."""

from __future__ import annotations

import re

from conftest import REPO


def _table_modules() -> set[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    named: set[str] = set()
    for row in section.splitlines():
        if not row.startswith("| `"):
            continue
        first_cell = row.split("|")[1]
        for name in re.findall(r"`([a-z_/]+)`", first_cell):
            named.add(name.rstrip("/"))
    return named


STAGES = {"", "reading", "pipeline", "check", "outputs", "sdk", "specs", "tools"}


def _package_modules() -> set[str]:
    """Every module of the package, as `stage/module`; the `__init__` of a stage (or of
    the package) is the stage, described by the section around the table."""
    package = REPO / "compiler"
    found = set()
    for path in package.rglob("*.py"):
        module = path.relative_to(package).with_suffix("").as_posix()
        if path.name == "__init__.py":
            module = module.removesuffix("__init__").rstrip("/")
            if module in STAGES:
                continue
        if path.name != "__main__.py":
            found.add(module)
    return found


def test_every_module_is_in_the_architecture_table() -> None:
    named = _table_modules()
    listed_folders = {name for name in named if (REPO / "compiler" / name).is_dir()}
    unlisted = sorted(
        module
        for module in _package_modules()
        if module not in named and not any(module.startswith(f + "/") for f in listed_folders)
    )
    assert unlisted == []


def test_every_module_the_table_names_exists() -> None:
    missing = [
        name
        for name in _table_modules()
        if not (REPO / "compiler" / f"{name}.py").exists()
        and not (REPO / "compiler" / name).is_dir()
    ]
    assert missing == []


def test_every_package_is_installed() -> None:
    """A folder of compiler/ missing from pyproject.toml's `packages` is left out of a
    wheel: `pip install` (the action, pre-commit) would fail where the editable install
    of development works."""
    import tomllib

    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    package = REPO / "compiler"
    found = {
        ".".join(("expc", *init.parent.relative_to(package).parts))
        for init in package.rglob("__init__.py")
    }
    assert found - listed == set()
