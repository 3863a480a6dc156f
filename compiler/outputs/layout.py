"""Every path under `generated/`, in one place.

The outputs of a compile are named relative to the output folder (`bundle.json`,
`schema/bundle.schema.json`, `amplitude/flags.json`; with declared environments those
of each environment are below its name: `production/bundle.json`); `Layout` knows those names and
where the folder is for a definitions folder: `generated/` beside it, wherever expc is
run from. Paths written into outputs (CODEOWNERS) are relative to the repository.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from expc.reading.model import ENVIRONMENT_PATTERN

FOLDER = "generated"  # beside the definitions folder
BUNDLE = "bundle.json"
VECTORS = "vectors.json"
LEDGER = "ledger.json"
CODEOWNERS = "CODEOWNERS"
SCHEMA_FOLDER = "schema"
TARGETS = {"amplitude": "amplitude/flags.json"}  # one per name of `outputs.targets.NAMES`


def schema_file(name: str) -> str:
    return f"{SCHEMA_FOLDER}/{name}"


def in_environment(environment: str | None, name: str) -> str:
    """An output of one environment: `<env>/<name>`, or `name` itself in a release
    without environments (DESIGN §10: their outputs stay where they always were)."""
    return name if environment is None else f"{environment}/{name}"


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

    def bundle_of(self, environment: str | None) -> Path:
        return self.root / in_environment(environment, BUNDLE)

    def retired(self, produced: Iterable[str]) -> list[str]:
        """Outputs a compile wrote before and no longer writes: an environment's files
        after it was renamed or removed, the top-level bundle after environments were
        declared, a target dropped. Left behind, they would be published as if they
        were current, so a compile removes them; only names expc writes are touched."""
        kept = set(produced)
        folders = [""]
        if self.root.is_dir():
            folders += sorted(
                f"{entry.name}/"
                for entry in self.root.iterdir()
                if entry.is_dir() and re.match(ENVIRONMENT_PATTERN, entry.name)
            )
        per_environment = [BUNDLE, VECTORS, *TARGETS.values()]
        return [
            folder + name
            for folder in folders
            for name in per_environment
            if folder + name not in kept and (self.root / folder / name).is_file()
        ]


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
