"""Atomic writes: a reader sees the old files or the new ones, never half of either.

One file is replaced atomically by writing a temporary file beside it and renaming it
over the old one. A command that writes several files (compile) prepares every
temporary file first and renames only once all of them are written, so a destination
that cannot be written (a file where a folder must be, a read-only folder, a full
disk) stops it before the first rename: every output is replaced, or none is.
Outputs a compile no longer produces are removed after the renames.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path


class OutputError(Exception):
    """An output destination cannot be written; nothing was replaced."""


def _temporary_beside(target: Path, content: str) -> Path:
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        Path(temporary).chmod(0o644)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return Path(temporary)


def write_atomic(target: Path, content: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_beside(target, content)
    try:
        temporary.replace(target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _why(error: OSError) -> str:
    return error.strerror or type(error).__name__


def _check_destination(target: Path) -> None:
    """Refuse a destination that cannot become a file before anything is written."""
    if target.is_dir():
        raise OutputError(f"{target}: is a directory, where expc writes a file; remove it")
    for parent in [target.parent, *target.parent.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(
                    f"{parent}: is a file, where expc needs a directory; remove or move it"
                )
            break


def changed_files(out_dir: Path, files: dict[str, str]) -> dict[str, str]:
    """The files whose content differs from what `out_dir` holds (or that are missing)."""
    changed = {}
    for name, content in sorted(files.items()):
        try:
            if (out_dir / name).read_text(encoding="utf-8") == content:
                continue
        except (OSError, UnicodeDecodeError):
            pass
        changed[name] = content
    return changed


def write_outputs(out_dir: Path, files: dict[str, str], retired: Sequence[str] = ()) -> list[str]:
    """Replace every file that changed, all or none, then remove the `retired` ones
    (outputs no longer produced); return the names written and removed.

    Raises `OutputError` (nothing replaced) when a destination cannot be written, or a
    retired file is in a folder where nothing can be removed.
    """
    changed = changed_files(out_dir, files)
    for name in changed:
        _check_destination(out_dir / name)
    for name in retired:
        folder = (out_dir / name).parent
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"{out_dir / name}: is no longer an output, and cannot be removed")
    prepared: list[tuple[Path, Path]] = []
    try:
        for name, content in changed.items():
            target = out_dir / name
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                prepared.append((_temporary_beside(target, content), target))
            except OSError as error:
                raise OutputError(f"{target}: cannot be written ({_why(error)})") from error
        for temporary, target in prepared:
            temporary.replace(target)
    finally:
        for temporary, _target in prepared:
            temporary.unlink(missing_ok=True)
    for name in retired:
        (out_dir / name).unlink(missing_ok=True)
        _remove_if_empty((out_dir / name).parent, out_dir)
    return [*changed, *retired]


def _remove_if_empty(folder: Path, out_dir: Path) -> None:
    """An environment's folder goes with its last file (`amplitude/` first, then it)."""
    while folder != out_dir and out_dir in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
