"""A content-addressed cache of read-and-validated definition files.

Reading YAML is most of the time a release takes, and most files do not change from
one run to the next. The cache maps a key made of a file's path below the definitions
folder, its bytes and the reader's fingerprint (expc's version and the source of its
reading modules, so that a changed reader never trusts an old entry) to the values
YAML gave for that file. A hit skips YAML; the values are still validated into typed
models and checked, exactly as after a parse. Only files that read and validate
without any diagnostic are kept.

The cache is one JSON file per definitions folder, in `.expc-cache/` beside it (or in
`$EXPC_CACHE_DIR`; set it empty to turn the cache off). It is safe to delete, ignored
when corrupt or written by another reader, holds data and never code (JSON, not
pickle: a cache restored in CI must not be able to run anything), and never changes
an output byte: a hit gives the values the parse gave.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

FORMAT = 1
FOLDER = ".expc-cache"
# Exact decimals are written as text after this mark; a string of the file that starts
# with the mark (YAML's "\0" escape can write one) gets the mark twice. No decimal's
# text starts with it, so the two never meet.
_MARK = "\x00"


def _framed(header: dict[str, Any], payload: Any) -> str:
    """A cache file: a header line with the checksum of the payload, then the payload.
    A file cut short or damaged no longer matches its checksum and is ignored."""
    # Key order is kept: the order of a mapping in a definition can matter.
    text = json.dumps(payload, ensure_ascii=False)
    checksum = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return json.dumps({**header, "checksum": checksum}, sort_keys=True) + "\n" + text


def _unframed(path: Path, header: dict[str, Any]) -> Any:
    """The payload of a cache file written with `header`, or None when it is missing,
    damaged, or written by other code or for another key."""
    try:
        first, text = path.read_bytes().split(b"\n", 1)
        found = json.loads(first)
        if not isinstance(found, dict) or {k: found.get(k) for k in header} != header:
            return None
        if found.get("checksum") != hashlib.sha256(text).hexdigest():
            return None
        return json.loads(text)
    except (OSError, ValueError, RecursionError):
        return None


def _reader_fingerprint() -> str:
    """expc's version and the source of every module of the package: any change to the
    code that reads or validates a file (or anything else) retires every entry."""
    from expc import __version__

    digest = hashlib.sha256(f"{FORMAT}/{__version__}".encode())
    package = Path(__file__).resolve().parent.parent
    for module in sorted(package.rglob("*.py")):
        digest.update(module.relative_to(package).as_posix().encode() + b"\0")
        digest.update(module.read_bytes())
    return digest.hexdigest()


def _marked(value: Any) -> bool:
    """Whether a value holds anything `_encode` writes with the mark."""
    if isinstance(value, dict):
        return any(_marked(item) for item in value.values())
    if isinstance(value, list):
        return any(_marked(item) for item in value)
    return isinstance(value, Decimal) or (isinstance(value, str) and value.startswith(_MARK))


def _encode(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_encode(item) for item in value]
    if isinstance(value, Decimal):
        return _MARK + str(value)
    if isinstance(value, str) and value.startswith(_MARK):
        return _MARK + value
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        if not value.startswith(_MARK):
            return value
        rest = value[1:]
        return rest if rest.startswith(_MARK) else Decimal(rest)
    if isinstance(value, dict):
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


class FileCache:
    """The cache of one definitions folder for one run: read once, saved once."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.fingerprint = _reader_fingerprint() if path is not None else ""
        self._entries: dict[str, Any] = self._load() if path is not None else {}
        self._used: dict[str, Any] = {}

    @classmethod
    def for_definitions(cls, root: Path) -> FileCache:
        configured = os.environ.get("EXPC_CACHE_DIR")
        if configured == "":
            return cls(None)
        folder = Path(configured) if configured else root.resolve().parent / FOLDER
        name = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
        return cls(folder / f"{name}.json")

    def _load(self) -> dict[str, Any]:
        assert self.path is not None
        entries = _unframed(self.path, {"reader": self.fingerprint})
        return entries if isinstance(entries, dict) else {}

    def key(self, relative: str, raw: bytes) -> str:
        digest = hashlib.sha256(self.fingerprint.encode())
        digest.update(relative.encode("utf-8", "surrogateescape") + b"\0")
        digest.update(raw)
        return digest.hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        """The values of a file read before, or None."""
        if self.path is None or key not in self._entries:
            return None
        stored = self._entries[key]
        # [whether it holds marked text, the values]: most files hold no decimal, and
        # their values need no second walk after JSON.
        if not (isinstance(stored, list) and len(stored) == 2 and isinstance(stored[1], dict)):
            return None
        self._used[key] = stored
        decoded: dict[str, Any] = _decode(stored[1]) if stored[0] else stored[1]
        return decoded

    def put(self, key: str, values: dict[str, Any]) -> None:
        if self.path is not None:
            marked = _marked(values)
            self._used[key] = [marked, _encode(values) if marked else values]

    def save(self) -> None:
        """Keep what this run read; a cache that cannot be written is simply not kept."""
        if self.path is None or self._used == self._entries:
            return
        from expc.outputs.files import write_atomic

        with contextlib.suppress(OSError, ValueError):
            write_atomic(self.path, _framed({"reader": self.fingerprint}, self._used))


class ReleaseMemo:
    """The last result of one command over a whole release, kept under a key made of
    everything that result depends on (every file's path and bytes, the code, the
    options, and for compile the ledger it appends to). A run whose key is the same
    (nothing changed) takes the result instead of reading anything: that is what makes
    an unchanged run cheap. Like the file cache: safe to delete, ignored when corrupt,
    data and never code."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    @classmethod
    def for_definitions(cls, root: Path, command: str) -> ReleaseMemo:
        files = FileCache.for_definitions(root)
        if files.path is None:
            return cls(None)
        return cls(files.path.with_name(f"{files.path.stem}.{command}.json"))

    @staticmethod
    def key(*parts: str | bytes | None) -> str:
        digest = hashlib.sha256(_reader_fingerprint().encode())
        for part in parts:
            chunk = (
                b"\xff"
                if part is None
                else part
                if isinstance(part, bytes)
                else part.encode("utf-8", "surrogateescape")
            )
            digest.update(len(chunk).to_bytes(8, "big") + chunk)
        return digest.hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        if self.path is None:
            return None
        result = _unframed(self.path, {"key": key})
        return result if isinstance(result, dict) else None

    def put(self, key: str, result: dict[str, Any]) -> None:
        if self.path is None:
            return
        from expc.outputs.files import write_atomic

        with contextlib.suppress(OSError, ValueError):
            write_atomic(self.path, _framed({"key": key}, result))
