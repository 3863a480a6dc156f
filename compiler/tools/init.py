"""`expc init DIR`: scaffold a configuration repository, compiled at once, with
starter specs that pass, and the pull-request workflow and the pre-commit hooks wired
up.

Templates live in `compiler/templates/init/` (package data); `dot-` at the start of a
name stands for `.`. The scaffold is compiled in memory before anything is written,
so `generated/` is part of one plan: every file is new (nothing is ever overwritten)
and written, or none is: a write that fails half way removes what was written.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from expc import __version__
from expc.errors import UsageError
from expc.outputs.layout import FOLDER, Layout
from expc.outputs.ledger import Ledger
from expc.outputs.release import release_files
from expc.pipeline.snapshot import Rejected, read_blobs

# Where the reusable action and the package are published; `--action` overrides both.
DEFAULT_ACTION = f"expc-dev/expc@v{__version__}"
TEMPLATES = Path(__file__).parent.parent / "templates" / "init"
DEFINITIONS = "definitions"

# GitHub's rules: an owner is up to 39 letters, digits and single inner hyphens; a
# repository name up to 100 letters, digits, `.`, `_` and `-`. The ref is a tag, a
# branch or a commit, limited to characters that need no quoting in YAML, a shell
# command or a URL (`uses:`, `pip install git+...`, `.pre-commit-config.yaml`).
ACTION = re.compile(
    r"(?P<owner>[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38})"
    r"/(?P<repository>[A-Za-z0-9._-]{1,100})"
    r"@(?P<ref>[A-Za-z0-9._/-]{1,255})"
)
ACTION_FORM = "owner/repo@ref, e.g. myorg/expc@v1.2.0"


@dataclass(frozen=True)
class Source:
    """Where the scaffold takes expc from: the action, the package and the hooks."""

    repository: str  # owner/repo on GitHub
    ref: str

    @property
    def action(self) -> str:
        return f"{self.repository}@{self.ref}"


def parse_action(text: str) -> Source:
    """`owner/repo@ref` as a Source; raises UsageError naming the expected form."""
    match = ACTION.fullmatch(text)
    ref = match["ref"] if match else ""
    bad_ref = (
        ref.startswith(("-", "/"))
        or ref.endswith(("/", ".", ".lock"))
        or ".." in ref
        or "//" in ref
        or "/." in ref
    )
    if match is None or match["repository"] in (".", "..") or bad_ref:
        shown = text.encode("unicode_escape").decode("ascii")
        raise UsageError(f"--action '{shown}': expected {ACTION_FORM}; nothing written")
    return Source(f"{match['owner']}/{match['repository']}", ref)


@dataclass(frozen=True)
class Written:
    scaffold: list[Path]  # definitions, specs, workflow, pre-commit config, README
    generated: list[Path]  # what `expc compile` writes
    flags: int
    out: Path  # the folder they are in


def render(name: str, source: Source) -> dict[str, str]:
    """Path relative to the new repository -> content, for every template."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # YAML and markdown, written for people to edit
    )
    context = {"name": name, "action": source.action, "repository": source.repository}
    context["ref"] = source.ref
    files = {}
    for template in sorted(TEMPLATES.rglob("*.j2")):
        relative = template.relative_to(TEMPLATES).as_posix()
        target = "/".join(
            "." + part.removeprefix("dot-") if part.startswith("dot-") else part
            for part in relative.removesuffix(".j2").split("/")
        )
        files[target] = environment.get_template(relative).render(**context)
    return files


def compiled(directory: Path, scaffold: dict[str, str]) -> tuple[dict[str, str], int]:
    """What `expc compile` will write into generated/ for the scaffold (relative path
    under generated/ -> content), and how many flags it holds."""
    prefix = DEFINITIONS + "/"
    definitions = directory / DEFINITIONS
    blobs = [
        (relative.removeprefix(prefix), (directory / relative).as_posix(), content.encode())
        for relative, content in scaffold.items()
        if relative.startswith(prefix)
    ]
    snapshot = read_blobs(definitions, blobs)
    if isinstance(snapshot, Rejected):  # the templates are ours: a bug, not a usage error
        raise RuntimeError(f"the scaffold does not validate: {snapshot.diagnostics[0].message}")
    return release_files(snapshot, Ledger.new()), snapshot.flag_count


def _writable(path: Path) -> None:
    """Refuse, before writing anything, a destination that cannot be created."""
    for folder in path.parents:
        if folder.exists() or folder.is_symlink():
            if not folder.is_dir():
                raise UsageError(
                    f"{folder}: is a file, where init needs a directory; init wrote nothing"
                )
            if not os.access(folder, os.W_OK | os.X_OK):
                raise UsageError(f"{folder}: not writable; init wrote nothing")
            return


def _write_all(files: dict[Path, str]) -> None:
    """Create every file (none may exist), or on any failure remove what was created."""
    created_files: list[Path] = []
    created_folders: list[Path] = []
    current = next(iter(files))
    try:
        for current, content in files.items():
            missing = [folder for folder in current.parents if not folder.exists()]
            for folder in reversed(missing):
                folder.mkdir()
                created_folders.append(folder)
            with current.open("x", encoding="utf-8", newline="\n") as stream:
                created_files.append(current)
                stream.write(content)
    except BaseException as error:
        for created in reversed(created_files):
            created.unlink(missing_ok=True)
        for folder in reversed(created_folders):
            # A folder something else wrote into meanwhile stays, with that content.
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(error, OSError):
            where = error.filename or current  # a failed write names no file
            why = error.strerror or type(error).__name__
            message = f"{where}: cannot be written ({why}); init wrote nothing"
            raise UsageError(message) from error
        raise


def init(directory: Path, action: str | None = None) -> Written:
    """Write the scaffold and its compiled outputs; refuse to overwrite anything."""
    source = parse_action(action if action is not None else DEFAULT_ACTION)
    name = directory.resolve().name or "experiments"
    scaffold = render(name, source)
    outputs, flags = compiled(directory, scaffold)
    planned = {directory / relative: content for relative, content in scaffold.items()}
    out = directory / FOLDER
    generated = {out / file: text for file, text in sorted(outputs.items())}
    # An output the scaffold would not write (a released top-level bundle, where the
    # scaffold writes one per environment) would be left stale: refused like the rest.
    retired = [out / name for name in Layout(out).retired(outputs)]
    existing = [
        path for path in [*planned, *generated, *retired] if path.exists() or path.is_symlink()
    ]
    if existing:
        listed = ", ".join(str(path) for path in existing)
        raise UsageError(f"not overwriting existing files: {listed}; init writes nothing")
    for path in [*planned, *generated]:
        _writable(path)
    _write_all({**planned, **generated})
    return Written(list(planned), list(generated), flags, directory / FOLDER)
