"""`expc init DIR`: scaffold a configuration repository that validates and compiles
at once, with the pull-request workflow and the pre-commit hooks wired up.

Templates live in `compiler/templates/init/` (package data); `dot-` at the start of a
name stands for `.`. Nothing is overwritten: if any file exists, nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from compiler import __version__
from compiler.api import UsageError
from compiler.files import write_atomic

# Where the reusable action and the package are published; `--action` overrides.
UPSTREAM = "expc-dev/expc"
VERSION = f"v{__version__}"
TEMPLATES = Path(__file__).parent / "templates" / "init"


def planned_files(directory: Path, name: str, action: str) -> dict[Path, str]:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # YAML and markdown, written for people to edit
    )
    context = {"name": name, "action": action, "upstream": UPSTREAM, "version": VERSION}
    files = {}
    for template in sorted(TEMPLATES.rglob("*.j2")):
        relative = template.relative_to(TEMPLATES).as_posix().removesuffix(".j2")
        target = "/".join(
            "." + part.removeprefix("dot-") if part.startswith("dot-") else part
            for part in relative.split("/")
        )
        files[directory / target] = environment.get_template(
            template.relative_to(TEMPLATES).as_posix()
        ).render(**context)
    return files


def init(directory: Path, action: str | None = None) -> list[Path]:
    """Write the scaffold; return the files written. Refuses to overwrite anything."""
    name = directory.resolve().name or "experiments"
    files = planned_files(directory, name, action or f"{UPSTREAM}@{VERSION}")
    existing = [path for path in files if path.exists()]
    if existing:
        listed = ", ".join(str(path) for path in existing)
        raise UsageError(f"not overwriting existing files: {listed}; init writes nothing")
    for path, content in files.items():
        write_atomic(path, content)
    return list(files)
