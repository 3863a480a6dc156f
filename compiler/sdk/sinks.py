"""Exposure sinks that ship with expc: a JSON-lines file that rotates.

    exposures = Exposures(JsonLinesSink("/var/log/app/exposures.jsonl"))

A sink is any callable that takes a list of events (plain JSON data,
docs/exposures.md); `Exposures` calls it from one thread at a time and calls its
`close()`, when it has one, on shutdown.
"""

from __future__ import annotations

import contextlib
import os
import threading
from io import FileIO
from pathlib import Path
from typing import Any

from expc.sdk.exposure_events import json_line


class JsonLinesSink:
    """Appends each event as one line of compact JSON (keys sorted, UTF-8) to `path`.

    Before a batch would take the file past `max_bytes`, the file is rotated as
    logging's rotating handler does: `path` becomes `path.1`, `path.1` becomes
    `path.2`, ... up to `backups` old files (0 keeps none). A batch is never split
    between files, and every batch is flushed to the operating system before the call
    returns (`fsync=True` also forces it to disk). The file is opened on first use and
    created with its folder when missing.

    A batch is written whole or not at all: when writing it fails (a full disk, a file
    size limit), the file is cut back to where the batch began and reopened by the next
    batch, and the error is raised. So a batch counted as failed is not in the file, and
    a later batch never carries it in.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = 64 * 1024 * 1024,
        backups: int = 5,
        fsync: bool = False,
    ) -> None:
        # Whole numbers only: a NaN or infinite size would never rotate the file.
        if not _whole(max_bytes, least=1) or not _whole(backups, least=0):
            raise ValueError(
                "JsonLinesSink: max_bytes must be a whole number of at least 1 and backups "
                f"one of at least 0; got max_bytes={max_bytes!r}, backups={backups!r}"
            )
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        # Unbuffered: a batch is handed to the operating system in full here, so bytes of
        # a failed batch can never wait in a buffer and go out with the next one.
        self._file: FileIO | None = None
        self._size = 0
        self._lock = threading.Lock()  # a sink may also be called by flush() and close()

    def __call__(self, events: list[Any]) -> None:
        self.write_lines([json_line(event) for event in events])

    def write_lines(self, lines: list[str]) -> None:
        """Append lines of JSON, each ending in a newline, as one batch."""
        data = "".join(lines).encode("utf-8")
        with self._lock:
            if self._file is None:
                self._open()
            if self._size and self._size + len(data) > self.max_bytes:
                self._rotate()
            assert self._file is not None
            try:
                _write_all(self._file, data)
                if self.fsync:
                    os.fsync(self._file.fileno())
            except BaseException:
                self._take_back()
                raise
            self._size += len(data)

    def _take_back(self) -> None:
        """After a failed write: cut the file back to the batches written before, so no
        part of this one stays, and close it; the next batch reopens it."""
        file, self._file = self._file, None
        assert file is not None
        # Errors here are not raised: the write's own error is the one that explains.
        with contextlib.suppress(OSError):
            os.ftruncate(file.fileno(), self._size)
        with contextlib.suppress(OSError):
            file.close()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab", buffering=0)
        self._size = self._file.seek(0, os.SEEK_END)

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.backups:
            for number in range(self.backups - 1, 0, -1):
                older = self._backup(number)
                if older.exists():
                    older.replace(self._backup(number + 1))
            self.path.replace(self._backup(1))
        else:
            self.path.unlink(missing_ok=True)
        self._open()

    def _backup(self, number: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{number}")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _write_all(file: FileIO, data: bytes) -> None:
    """Write all of `data`: a raw file may take part of it (a write that reaches a file
    size limit does), and then the rest fails or goes on."""
    view = memoryview(data)
    while view:
        written = file.write(view)
        if written is None:  # only for non-blocking files, which this never opens
            raise BlockingIOError("the exposure file took no bytes")
        view = view[written:]


def _whole(value: object, *, least: int) -> bool:
    return type(value) is int and value >= least
