"""Which files are definitions, and their bytes: the definitions folder on disk.

Only regular `*.yaml` files below the folder are read. Whatever could smuggle in a file
that is not reviewed with the definitions (a link leading outside), hang a reader (a
pipe), or exhaust memory (a huge file) is refused with a located diagnostic, and so is
a name that would otherwise be skipped silently (`*.yml`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from expc import codes
from expc.diagnostics import Diagnostic, Span, make

# A definition is a few kilobytes; a cohort of 100,000 ids (the node limit) a few
# megabytes. Anything larger is not a definition, and is refused before it is read.
MAX_FILE_BYTES = 10 * 1024 * 1024
SUFFIX = ".yaml"


def definition_files(root: Path) -> Iterator[tuple[Path, str]]:
    """Every `*.yaml` below `root` with its '/'-separated path relative to `root`, in a
    stable order; hidden folders and files are skipped.

    Also listed, for `read_source` to refuse with a located error: files named `*.yml`
    (or `*.YAML`), links that lead outside `root` (to a file or a folder), and folders
    that cannot be listed (their relative path ends in '/'). A file link that stays
    inside is listed as the real path it leads to, so `read_source` never sees a link
    that stays inside; a folder link that stays inside is not followed, because the
    files it leads to are listed where they really are.
    """
    real_root = Path(os.path.realpath(root))
    pending = [(str(root), "")]
    while pending:  # a stack, not recursion: folders may nest deeper than Python recurses
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(
                    (entry for entry in listing if not entry.name.startswith(".")),
                    key=lambda entry: entry.name,
                )
        except OSError:
            if prefix:  # the root's own problem is the caller's: it found no files
                yield Path(directory), prefix
            continue
        folders = []
        for entry in entries:
            if entry.is_symlink():
                listed = _link(entry, real_root)
                if listed is not None:
                    yield listed, prefix + entry.name
            elif entry.is_dir():
                folders.append((entry.path, prefix + entry.name + "/"))
            elif _is_yaml_name(entry.name):
                yield Path(entry.path), prefix + entry.name
        pending.extend(reversed(folders))


def _link(entry: os.DirEntry[str], real_root: Path) -> Path | None:
    """What to list for a link: see `definition_files`."""
    try:
        folder = entry.is_dir()
    except OSError:  # a circle of links: listed, so that reading it says so
        folder = False
    try:
        target = Path(os.path.realpath(entry.path))
        inside = target.is_relative_to(real_root) and target.exists()
    except OSError:  # a link into what may not be read (/proc/1/cwd): listed, refused
        return Path(entry.path)
    if inside:
        return None if folder or not _is_yaml_name(entry.name) else target
    return Path(entry.path) if folder or _is_yaml_name(entry.name) else None


def _is_yaml_name(name: str) -> bool:
    return name.lower().endswith((".yaml", ".yml"))


def key_of(relative: str) -> str:
    """The key a listed file's name declares: the name without `.yaml` (or `.yml`)."""
    name = relative.rsplit("/", 1)[-1]
    for suffix in (SUFFIX, ".yml"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# Opening a link fails (a link that stays inside is listed as its target), and opening
# a pipe does not wait for a writer.
_OPEN_FLAGS = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0)


def read_raw(path: Path, display: str) -> bytes | Diagnostic:
    """The bytes of a listed file, or the diagnostic that refuses it: a folder that
    cannot be listed, a link (listed only when it leads outside), a name other than
    `*.yaml`, anything but a regular file, a file too large to be a definition."""
    span = Span(display)
    if display.endswith("/"):
        return make(codes.UNREADABLE, f"cannot list this folder: {_listing_problem(path)}", span)
    if not display.endswith(SUFFIX) or not _NOFOLLOW:
        if _is_live_link(path):
            return _outside(path, span)
        if not display.endswith(SUFFIX):
            return _not_yaml(display, span)
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as error:
        if _is_live_link(path):
            return _outside(path, span)
        return make(codes.UNREADABLE, f"cannot read the file: {_open_problem(path, error)}", span)
    with os.fdopen(descriptor, "rb", buffering=0) as stream:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            return make(
                codes.UNREADABLE,
                "not a regular file (a pipe, socket or device); definitions are plain files",
                span,
            )
        if info.st_size > MAX_FILE_BYTES:
            return too_large(span)
        return stream.read()  # decode_source refuses it if it grew past the limit


def refuse_name(display: str) -> Diagnostic | None:
    """E013 for a file that is listed but not named `*.yaml` (read from git, say)."""
    return None if display.endswith(SUFFIX) else _not_yaml(display, Span(display))


def _not_yaml(display: str, span: Span) -> Diagnostic:
    name = display.rsplit("/", 1)[-1]
    return make(
        codes.NOT_YAML_EXTENSION,
        f"expc reads only files named *.yaml; rename this one to '{key_of(name)}.yaml' "
        "(its key must be its name without '.yaml')",
        span,
    )


def _listing_problem(folder: Path) -> str:
    try:
        os.scandir(folder).close()
    except OSError as error:
        return str(error.strerror)
    return "it changed while it was being read"


def _open_problem(path: Path, error: OSError) -> str:
    if path.is_symlink():  # a dangling link: say what is missing, not O_NOFOLLOW's ELOOP
        try:
            path.stat()
        except OSError as followed:
            error = followed
    return str(error.strerror)


def _is_live_link(path: Path) -> bool:
    """A link that leads to something, also to what this process may not look at."""
    try:
        return path.is_symlink() and path.exists()
    except OSError:  # EACCES past the link (/proc/1/cwd): it leads somewhere
        return True


def link_noun(link: Path) -> str:
    """What a link leads to, in a message: a folder, a file, or an entry that cannot be
    looked at."""
    try:
        return "folder" if link.is_dir() else "file"
    except OSError:
        return "entry"


def _outside(link: Path, span: Span) -> Diagnostic:
    what = link_noun(link)
    return make(
        codes.OUTSIDE_DEFINITIONS,
        f"this {what} is a link to '{link.readlink().as_posix()}', outside the definitions "
        f"directory, where changes are not reviewed with the definitions; move the {what} "
        "into the definitions directory instead of linking to it",
        span,
    )


def too_large(span: Span) -> Diagnostic:
    return make(
        codes.UNREADABLE,
        f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, the most a "
        "definition may be; move it out of the definitions directory, or split a large "
        "cohort into several",
        span,
    )
