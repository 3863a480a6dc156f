"""The bundle `expc serve` evaluates, kept current: found (the one bundle, or the chosen
environment's), loaded, and replaced when a compile rewrites it.

A watcher thread looks at the file's identity (device, inode, size, modification time)
five times a second, a `stat` call each; when it changes, the file is read and verified
completely before it replaces the served one, so a bad or half-written bundle never
does: it is logged once and the last good bundle keeps answering.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expc.errors import UsageError
from expc.outputs.layout import BUNDLE
from expc.sdk import BundleError, Evaluator
from expc.tools.serve import printable

LOG = logging.getLogger("expc.serve")

# How often the file is looked at: a compile in another terminal shows within this.
INTERVAL = 0.2
# A file that failed to load is read again once after this long, even if it looks the
# same: file times can be coarser than a write (a few milliseconds on some systems), so
# a bundle completed in the same tick as a half-read one keeps its identity.
RETRY_AFTER = 1.0


@dataclass(frozen=True)
class Loaded:
    """One verified bundle, and what OFREP needs to know about it besides evaluating."""

    evaluator: Evaluator
    content_id: str
    keys: frozenset[str]
    bucketing: dict[str, str]  # flag key -> the attribute that assigns its users
    attributes: tuple[str, ...]  # every bucketing attribute, once
    environment: str | None


def environments(root: Path) -> list[str]:
    """The environments `root` holds a bundle for: its folders with a bundle.json."""
    try:
        folders = sorted(entry for entry in root.iterdir() if not entry.name.startswith("."))
    except OSError:
        return []
    return [folder.name for folder in folders if (folder / BUNDLE).is_file()]


def locate(root: Path, environment: str | None) -> Path:
    """The bundle to evaluate: `root/bundle.json`, or `root/ENV/bundle.json` when `root`
    holds one per environment. Raises UsageError when --env is missing, unknown, or
    given where there are no environments. Without environments the file need not exist
    yet: OFREP answers 503 until a compile writes it."""
    single = root / BUNDLE
    names = environments(root)
    listed = ", ".join(names)
    if environment is None:
        if single.is_file() or not names:
            return single
        raise UsageError(
            f"{root} holds a bundle per environment ({listed}): choose one with --env NAME"
        )
    if environment in names:
        return root / environment / BUNDLE
    if not names:
        raise UsageError(
            f"--env {printable(environment)}: {root} has no environments (no folder holds "
            f"a {BUNDLE}); leave out --env"
        )
    raise UsageError(
        f"--env {printable(environment)}: no such environment in {root}; choose one of: {listed}"
    )


def _bucketing(document: Any) -> dict[str, str]:
    """flag key -> its bucketing attribute, read from a bundle already verified."""
    found: dict[str, str] = {}
    for flag in document.get("flags", []):
        bucketing = flag.get("bucketing") if type(flag) is dict else None
        if type(bucketing) is dict and type(bucketing.get("by")) is str:
            found[str(flag.get("key"))] = bucketing["by"]
    return found


def load(data: bytes, environment: str | None) -> Loaded:
    """A verified bundle from its bytes; raises BundleError (and nothing else)."""
    evaluator = Evaluator(data)
    if evaluator.environment != environment:
        # A bundle copied into another environment's folder would answer, and label its
        # answers, as that environment: refused like any bundle that does not verify.
        raise BundleError(
            f"the bundle is for {_named(evaluator.environment)}, not {_named(environment)}"
        )
    try:
        bucketing = _bucketing(json.loads(data))
    except Exception as error:  # verified already; kept as a BundleError all the same
        raise BundleError(f"cannot read the bundle's bucketing: {error!r}") from error
    return Loaded(
        evaluator=evaluator,
        content_id=evaluator.content_id,
        keys=frozenset(evaluator.flag_keys),
        bucketing=bucketing,
        attributes=tuple(dict.fromkeys(bucketing.values())),
        environment=environment,
    )


def _named(environment: str | None) -> str:
    return "no environment" if environment is None else f"the environment '{environment}'"


Identity = tuple[int, int, int, int]


class BundleWatch:
    """The current bundle of one file, replaced when the file changes to a good one."""

    def __init__(self, path: Path, environment: str | None) -> None:
        self.path = path
        self.environment = environment
        self.current: Loaded | None = None
        self._seen: Identity | None = None
        self._failed_at: float | None = None
        self._missing_noted = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load_now(self) -> None:
        """Load the file as it is, for start-up, where a bad bundle stops the command:
        raises OSError or BundleError instead of logging."""
        status = self.path.stat()
        self.current = load(self.path.read_bytes(), self.environment)
        self._seen = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)

    def refresh(self) -> bool:
        """Look at the file once; load it if it changed. True when the served bundle
        was replaced. Never raises: every problem is one log line."""
        try:
            status = self.path.stat()
        except OSError as problem:
            if not self._missing_noted:
                self._missing_noted = True
                kept = f"; still serving {self.current.content_id}" if self.current else ""
                LOG.warning("cannot read %s: %s%s", self.path, problem.strerror, kept)
            return False
        self._missing_noted = False
        identity = (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)
        retrying = identity == self._seen
        if retrying and not self._retry_due():
            return False
        self._seen = identity
        try:
            loaded = load(self.path.read_bytes(), self.environment)
        except (OSError, BundleError) as problem:
            # A retry is made once; one that fails again waits for the file to change.
            self._failed_at = -1.0 if retrying else time.monotonic()
            if not retrying:
                kept = f"; still serving {self.current.content_id}" if self.current else ""
                LOG.warning("%s not loaded: %s%s", self.path, problem, kept)
            return False
        self._failed_at = None
        if self.current is not None and loaded.content_id == self.current.content_id:
            return False
        self.current = loaded
        LOG.info("serving %s (%d flags) from %s", loaded.content_id, len(loaded.keys), self.path)
        return True

    def _retry_due(self) -> bool:
        failed = self._failed_at
        return failed is not None and failed >= 0 and time.monotonic() - failed >= RETRY_AFTER

    def start(self) -> None:
        """Watch the file from a daemon thread until `stop`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="expc-bundle-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(INTERVAL):
            try:
                self.refresh()
            except Exception as problem:  # never let the watcher die of a surprise
                LOG.warning("watching %s failed: %r", self.path, problem)
