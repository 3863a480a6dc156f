"""Every path under `generated/`, in one place.

The outputs of a compile are named relative to the output folder (`bundle.json`,
`schema/bundle.schema.json`, `amplitude/flags.json`); `Layout` knows those names and
where the folder is for a definitions folder: `generated/` beside it, wherever expc is
run from. Paths written into outputs (CODEOWNERS) are relative to the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FOLDER = "generated"  # beside the definitions folder
BUNDLE = "bundle.json"
VECTORS = "vectors.json"
LEDGER = "ledger.json"
CODEOWNERS = "CODEOWNERS"
SCHEMA_FOLDER = "schema"
TARGETS = {"amplitude": "amplitude/flags.json"}  # one per name of `outputs.targets.NAMES`


def schema_file(name: str) -> str:
    return f"{SCHEMA_FOLDER}/{name}"


@dataclass(frozen=True)
class Layout:
    """The output folder of one definitions folder."""

    root: Path

    @classmethod
    def beside(cls, definitions: Path) -> Layout:
        """`generated/` beside the definitions folder (resolved: `expc compile .` run
        inside the definitions folder still writes beside it, not into it)."""
        return cls(definitions.resolve().parent / FOLDER)

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def ledger(self) -> Path:
        return self.root / LEDGER

    @property
    def bundle(self) -> Path:
        return self.root / BUNDLE


def repository_root(definitions: Path) -> Path:
    """The nearest folder above the definitions that holds `.git`, else the folder that
    holds the definitions: paths written into outputs (CODEOWNERS) are relative to it,
    so they do not depend on where expc is run from."""
    resolved = definitions.resolve()
    for folder in resolved.parents:
        if (folder / ".git").exists():
            return folder
    return resolved.parent


def in_repository(path: Path, top: Path) -> str:
    """`path` relative to the repository root `top`, as git names it."""
    return path.resolve().relative_to(top.resolve()).as_posix()
