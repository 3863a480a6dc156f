"""Keep an evaluator's bundle current from a URL (standard library only).

    poller = BundlePoller(
        "https://example.github.io/config/bundle.json",
        cache_file="/var/lib/app/expc-bundle.json",      # the last good bundle
        exposures=JsonLinesSink("exposures.jsonl"),      # or any callable
    )
    poller.start()               # a daemon thread: polls now, then every `interval`
    poller.evaluator             # None until a bundle is known (from the URL or the file)
    poller.state                 # what is served, from where, its age, errors
    poller.close()               # stop polling, deliver the exposures (or `with poller:`)

Each poll sends the last ETag as If-None-Match; a 304 costs nothing. The body is read
up to `max_bytes` (64 MiB by default) and within `deadline` seconds, and must be as
long as its Content-Length says. A bundle is verified (schema version and content id)
and replaces the current one only when its content id differs (`Evaluator.update`), so
a server without ETags causes neither swaps nor log lines.

Any failure (network, HTTP status, a malformed or truncated response, bad JSON, wrong
content id, anything unexpected) logs one line, keeps serving the last good bundle and
doubles the wait before the next poll, up to `max_interval`; a success returns it to
`interval`. The poll after a failure is unconditional (no If-None-Match). Nothing a
server sends can stop the polling thread, and text from the server reaches the log and
`state.last_error` only escaped (`printable`), on one line.

With `cache_file`, every new verified bundle is also written there atomically, and a
poller that has no bundle yet and cannot reach the URL starts from that file (verified
again; its age is the file's). Polling goes on: the first success replaces it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expc.sdk.bundle_file import read_with_age, write_atomically
from expc.sdk.evaluate import BundleError, Evaluator
from expc.sdk.exposures import Exposures, Sink, count_setting, seconds_setting

log = logging.getLogger("expc.poller")

MAX_BYTES = 64 * 1024 * 1024
_READ_SIZE = 64 * 1024
_TEXT_LIMIT = 300  # characters of an error message kept and logged
_ETAG_LIMIT = 256


def printable(text: str, limit: int = _TEXT_LIMIT) -> str:
    """`text` safe for one log line: every character that is not printable (newlines,
    escape sequences, other control and format characters) written as its Python
    escape, and the whole cut at `limit` characters."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    return text


def _describe(error: BaseException) -> str:
    """An exception as one line of text, its type first; never raises."""
    try:
        reason = (
            getattr(error, "reason", None) if isinstance(error, urllib.error.URLError) else None
        )
        detail = str(error if reason is None else reason)
    except Exception:
        detail = ""
    name = type(error).__name__
    return printable(f"{name}: {detail}" if detail else name)


class _PollError(Exception):
    """A poll that failed for a reason found here, not raised by a library."""


@dataclass(frozen=True, slots=True)
class PollerState:
    """A snapshot of a poller (`BundlePoller.state`); every field is read at once.

    - `content_id`: the bundle being served, None while there is none. A new bundle
      shows here when the poll that brought it ends, with its `source` and `age`.
    - `age`: seconds since that bundle was last loaded or confirmed current by the
      server (a 304, or the same content id again); None while there is none. It grows
      while polls fail: alert on it.
    - `last_success`: when a poll last succeeded, as `time.time()`; None before the first.
    - `last_error`: why the most recent failed poll failed (escaped, one line); it stays
      after later successes, so read it with `consecutive_failures`.
    - `consecutive_failures`: failed polls since the last success (0: healthy).
    - `next_wait`: the back-off, seconds from the end of a poll to the next one.
    - `polls`: polls made so far; `running`: the polling thread is alive.
    - `source`: where the served bundle came from: "url", "file" (the `cache_file`, while
      the URL has not answered since the start), "given" (the evaluator passed in), or
      None while there is none.
    - `cache_error`: why the last write of `cache_file` failed; None once one succeeds.
    """

    content_id: str | None
    age: float | None
    last_success: float | None
    last_error: str | None
    consecutive_failures: int
    next_wait: float
    polls: int
    running: bool
    source: str | None = None
    cache_error: str | None = None


Listener = Callable[[PollerState], None]


class BundlePoller:
    def __init__(
        self,
        url: str,
        evaluator: Evaluator | None = None,
        interval: float = 30.0,
        max_interval: float = 600.0,
        timeout: float = 10.0,
        max_bytes: int = MAX_BYTES,
        deadline: float = 300.0,
        *,
        cache_file: str | os.PathLike[str] | None = None,
        exposures: Exposures | Sink | None = None,
    ) -> None:
        """`timeout` bounds connecting and every wait for data; `deadline` a whole
        response however slowly it trickles in; `max_bytes` its body. `cache_file`
        keeps the last good bundle; `exposures` (an `Exposures` or a sink) go with the
        evaluator, the one given or the one the poller makes."""
        self.url = url
        self.evaluator = evaluator
        # Checked here, in the application's own code: a wait the polling thread cannot
        # make (infinity, NaN) would end it, and a poller must never stop.
        self.interval = seconds_setting("BundlePoller", "interval", interval, positive=True)
        self.max_interval = seconds_setting(
            "BundlePoller", "max_interval", max_interval, positive=True
        )
        self.timeout = seconds_setting("BundlePoller", "timeout", timeout, positive=True)
        self.max_bytes = count_setting("BundlePoller", "max_bytes", max_bytes, least=1)
        self.deadline = seconds_setting("BundlePoller", "deadline", deadline, positive=True)
        self.cache_file = None if cache_file is None else Path(cache_file)
        self.exposures = None if evaluator is None else evaluator.exposures
        if exposures is not None:
            self.attach_exposures(exposures)
        self.etag: str | None = None
        self.failures = 0
        self._confirmed: float | None = None if evaluator is None else time.monotonic()
        # What `state` reports as served: set with the source and the age, under the lock,
        # so that a snapshot never pairs a new bundle with the old one's source.
        self._content_id: str | None = None if evaluator is None else evaluator.content_id
        self._source: str | None = None if evaluator is None else "given"
        self._last_success: float | None = None
        self._last_error: str | None = None
        self._cache_error: str | None = None
        self._polls = 0
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()  # the fields above, between the thread and `state`
        self._polling = threading.Lock()  # one poll at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def next_wait(self) -> float:
        """Seconds until the next poll: doubled for each failure in a row, capped."""
        return float(min(self.interval * 2 ** min(self.failures, 64), self.max_interval))

    @property
    def state(self) -> PollerState:
        with self._lock:
            confirmed = self._confirmed
            return PollerState(
                content_id=self._content_id,
                age=None if confirmed is None else time.monotonic() - confirmed,
                last_success=self._last_success,
                last_error=self._last_error,
                consecutive_failures=self.failures,
                next_wait=self.next_wait,
                polls=self._polls,
                running=self._thread is not None and self._thread.is_alive(),
                source=self._source,
                cache_error=self._cache_error,
            )

    def attach_exposures(self, exposures: Exposures | Sink) -> Exposures:
        """Record exposures with the evaluator, now or once the first bundle arrives;
        returns the `Exposures`. There is at most one."""
        if self.exposures is not None:
            raise ValueError("this poller's evaluator already records exposures")
        if self.evaluator is not None:
            self.exposures = self.evaluator.attach_exposures(exposures)
        else:
            self.exposures = exposures if isinstance(exposures, Exposures) else Exposures(exposures)
        return self.exposures

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(state)` after every poll, on the polling thread. A listener
        that raises is logged and kept."""
        self._listeners.append(listener)

    def poll_once(self) -> bool:
        """Fetch once; True when a new bundle was swapped in (from the URL, or from
        `cache_file` when the URL fails and there was none). Never raises."""
        with self._polling:
            try:
                changed = self._poll()
            except _PollError as failure:
                changed = self._failed(str(failure))
            except Exception as error:  # whatever a server or a library does: a failure
                changed = self._failed(_describe(error))
            with self._lock:
                self._polls += 1
        self._tell_listeners()
        return changed

    def _tell_listeners(self) -> None:
        state = self.state
        for listener in list(self._listeners):
            try:
                listener(state)
            except Exception as error:  # a listener's bug must not stop the polling
                log.error("expc bundle poller: a listener raised %s", _describe(error))

    def _poll(self) -> bool:
        request = urllib.request.Request(self.url)
        if self.etag is not None:
            request.add_header("If-None-Match", self.etag)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                etag = response.headers.get("ETag")
                body = self._read_body(response)
        except urllib.error.HTTPError as error:
            error.close()
            if error.code == 304 and self.evaluator is not None:
                return self._succeeded(self.etag, changed=False)
            raise _PollError(printable(f"HTTP {error.code} {error.reason}")) from error
        try:
            if self.evaluator is None:
                self.evaluator = Evaluator(body, exposures=self.exposures)
                changed = True
            else:
                changed = self.evaluator.update(body)
        except BundleError as error:
            raise _PollError(printable(str(error))) from error
        if changed:
            self._persist(bytes(body))
        return self._succeeded(etag, changed)

    def _persist(self, body: bytes) -> None:
        """Keep a verified bundle as the last good one; a failure is logged and shown
        in `state.cache_error`, and serving goes on."""
        if self.cache_file is None:
            return
        try:
            write_atomically(self.cache_file, body)
            error = None
        except OSError as failure:
            error = _describe(failure)
            log.warning(
                "expc bundle poller cannot write %s: %s", printable(str(self.cache_file)), error
            )
        with self._lock:
            self._cache_error = error

    def _start_from_file(self) -> bool:
        """With no bundle yet and the URL failing: the last good bundle, if it verifies."""
        if self.cache_file is None or self.evaluator is not None:
            return False
        try:
            body, age = read_with_age(self.cache_file, time.time())
            evaluator = Evaluator(body, exposures=self.exposures)
        except (OSError, BundleError) as error:
            if not isinstance(error, FileNotFoundError):
                log.warning(
                    "expc bundle poller cannot start from %s: %s",
                    printable(str(self.cache_file)),
                    _describe(error),
                )
            return False
        with self._lock:
            self.evaluator = evaluator
            self._content_id = evaluator.content_id
            self._confirmed = time.monotonic() - age
            self._source = "file"
        log.warning(
            "expc bundle poller serves %s from %s, written %.0f s ago, until %s answers",
            evaluator.content_id,
            printable(str(self.cache_file)),
            age,
            printable(self.url),
        )
        return True

    def _read_body(self, response: Any) -> bytearray:
        # http.client's reading of Content-Length; None when chunked or absent.
        declared = getattr(response, "length", None)
        if isinstance(declared, int) and declared > self.max_bytes:
            raise _PollError(f"the response has {declared} bytes, over max_bytes {self.max_bytes}")
        read = getattr(response, "read1", None) or response.read
        body = bytearray()
        give_up = time.monotonic() + self.deadline
        while part := read(_READ_SIZE):
            body += part
            if len(body) > self.max_bytes:
                raise _PollError(f"the response is larger than max_bytes {self.max_bytes}")
            if time.monotonic() > give_up:
                raise _PollError(f"the response took longer than the deadline of {self.deadline} s")
        # A body cut short reads as a shorter one: compare with what the server announced.
        if isinstance(declared, int) and len(body) < declared:
            raise _PollError(f"the response ended after {len(body)} of its {declared} bytes")
        return body

    def _succeeded(self, etag: str | None, changed: bool) -> bool:
        # An ETag is sent back verbatim: keep only a short, printable ASCII one.
        if etag is not None and not (len(etag) <= _ETAG_LIMIT and etag.isascii()):
            etag = None
        with self._lock:
            self.etag = etag if etag is None or etag.isprintable() else None
            self.failures = 0
            self._confirmed = time.monotonic()
            self._last_success = time.time()
            self._source = "url"
            self._content_id = None if self.evaluator is None else self.evaluator.content_id
        if changed and self.evaluator is not None:
            log.info(
                "expc bundle updated from %s (%s)", printable(self.url), self.evaluator.content_id
            )
        return changed

    def _failed(self, why: str) -> bool:
        with self._lock:
            self.failures += 1
            self._last_error = why
            # A stored ETag may be what the server chokes on: the next poll goes without.
            self.etag = None
        started = self._start_from_file()
        kept = self.evaluator.content_id if self.evaluator else "none yet"
        log.warning(
            "expc bundle poll of %s failed: %s; keeping %s; next try in %.0f s",
            printable(self.url),
            why,
            kept,
            self.next_wait,
        )
        return started

    def start(self, first_wait: float = 0.0) -> None:
        """Poll in a daemon thread until `stop`: after `first_wait` seconds (now, unless
        a poll was just made), then after every `next_wait`."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, args=(first_wait,), name="expc-poller", daemon=True
        )
        self._thread.start()

    def _loop(self, first_wait: float) -> None:
        self._stop.wait(first_wait)
        while not self._stop.is_set():
            wait = self.max_interval
            try:
                self.poll_once()
                wait = self.next_wait
            except Exception as error:  # poll_once does not raise; the thread must not die
                log.error("expc bundle poller: unexpected %s; polling goes on", _describe(error))
            self._stop.wait(wait)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 1)

    def close(self) -> None:
        """Stop polling and deliver the evaluator's queued exposures."""
        self.stop()
        if self.evaluator is not None:
            self.evaluator.close()
        elif self.exposures is not None:
            self.exposures.close()

    def __enter__(self) -> BundlePoller:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
