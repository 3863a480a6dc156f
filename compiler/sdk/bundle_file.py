"""The last good bundle on disk: written atomically, read back only when it verifies.

A poller that persists its bundle can serve from the file when it starts while the
source is unreachable. The file is written beside its destination, flushed to disk and
renamed over it, so a crash leaves the old file or the new one, never half of one; and
it is verified like any bundle (schema version, content id) when read back.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one step; raises OSError when it cannot."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        Path(temporary).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise
    # The rename is durable once the folder is: best effort, not every system allows it.
    with contextlib.suppress(OSError):
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def read_with_age(path: Path, now: float) -> tuple[bytes, float]:
    """The file's bytes and how many seconds ago it was written (`now` is
    `time.time()`); raises OSError when it cannot be read."""
    with path.open("rb") as file:
        data = file.read()
        written = os.fstat(file.fileno()).st_mtime
    return data, max(0.0, now - written)
