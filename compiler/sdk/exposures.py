"""Exposure events, from the evaluating thread to a sink, without ever holding it up.

    exposures = Exposures(JsonLinesSink("exposures.jsonl"))   # or any callable
    evaluator = Evaluator.load("bundle.json", exposures=exposures)
    ...
    exposures.counters        # exposures, deduplicated, dropped, delivered, ...
    evaluator.close()         # or `with evaluator:`; atexit does it too

The evaluating thread does as little as it can: under one short lock it asks the
de-duplication window whether this user had these exposures lately (then it is done),
else appends `(bucketing value, the time, the exposure templates)` to a queue; it
builds no event and never adds to the window. A daemon thread wakes every
`flush_interval` seconds, or as soon as `batch_size` evaluations wait, passes what
waits through the window (a user it has not seen is remembered there: that is most of
a new user's cost, and it is paid off the evaluating thread), builds the events
(docs/exposures.md) and hands them to the sink in batches. The sink never runs on an
evaluating thread, so a slow or failing sink costs events, never latency: when
`capacity` evaluations wait, the exposures of further ones are dropped and counted, and
a batch whose sink call raises is counted as failed and logged.

De-duplication: one event per bucketing value, flag and variant within `ttl` seconds.
The window remembers the `window` most recently evaluated users (bucketing values),
each with the flags and variants they were exposed to and when; a user forgotten
(least recently evaluated first), or an event older than `ttl`, makes a new event. A
remembered user costs about 400 bytes.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import math
import numbers
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from expc.sdk.exposure_events import ExposureTemplate, event_of, line_of
from expc.sdk.sinks import JsonLinesSink

log = logging.getLogger("expc.exposures")

Event = dict[str, Any]
Sink = Callable[[list[Event]], object]


@dataclass(frozen=True, slots=True)
class ExposureCounters:
    """A snapshot of an `Exposures`' counts since it was made.

    - `exposures`: exposures evaluations made (each enrolment or holding out of a user
      with a bucketing value), before de-duplication;
    - `deduplicated`: of those, the ones inside the window, which make no event
      (decided on the evaluating thread for users the window holds, else when the
      delivery thread takes them);
    - `anonymous`: the exposures of users without a bucketing value (a rollout, or an
      override by attributes): nobody an event could name, so none is made;
    - `dropped`: exposures refused because `capacity` evaluations were waiting, or
      after `close()`; they are not remembered, so a later evaluation tries again;
    - `delivered`: events in batches the sink accepted (returned from);
    - `failed`: events in batches whose sink call raised: lost, and logged;
    - `waiting`: evaluations queued for the delivery thread (each one or more events,
      or none once the window has had its say).

    Once nothing waits, `exposures == deduplicated + dropped + delivered + failed`.
    """

    exposures: int
    deduplicated: int
    anonymous: int
    dropped: int
    delivered: int
    failed: int
    waiting: int


# Keys of a user's entry in the window besides flags and variants, which start with a
# digit (`ExposureTemplate.dedup`).
LAST, LAST_UNTIL = "last", "last-until"
# Positions in `Exposures._counted`. Exposures are not counted as they come: they are
# the deduplicated, dropped and queued ones, and one count less on every evaluation shows.
# QUEUED counts exposures waiting or handed to the sink; the window moves some of them
# to DEDUPLICATED when the delivery thread takes them.
QUEUED, DEDUPLICATED, ANONYMOUS, DROPPED, DELIVERED, FAILED, WAITING = range(7)
# Records the delivery thread passes through the window per taking of its lock.
_SLICE = 256
# Seconds the delivery thread rests after an unexpected error before it tries again.
_PAUSE_AFTER_ERROR = 1.0


class Exposures:
    """Collects exposure events and delivers them to `sink` on a background thread.

    Raises ValueError, naming the setting, for a setting delivery could not live with
    (docs/exposures.md lists what each takes)."""

    def __init__(
        self,
        sink: Sink,
        *,
        window: int = 100_000,
        ttl: float = 3600.0,
        capacity: int = 100_000,
        batch_size: int = 1_000,
        flush_interval: float = 1.0,
    ) -> None:
        if not callable(sink):
            raise TypeError("an exposure sink is a callable taking a list of events")
        # Checked here, in the application's own code, because later they are used only
        # on the delivery thread and in evaluations, which must never raise (an infinite
        # interval would make the thread's wait fail, and delivery stop for good).
        self.sink = sink
        self.window = count_setting("Exposures", "window", window, least=0)
        self.ttl = seconds_setting("Exposures", "ttl", ttl, positive=False, waited=False)
        self.capacity = count_setting("Exposures", "capacity", capacity, least=1)
        self.batch_size = count_setting("Exposures", "batch_size", batch_size, least=1)
        self.flush_interval = seconds_setting(
            "Exposures", "flush_interval", flush_interval, positive=True
        )
        # Each evaluation's exposures, flat: value, time, how many templates, templates.
        # No container per evaluation outlives the call: a tuple or a list would wait
        # here for up to a second and be promoted by the garbage collector, which then
        # walks the whole heap more often (that was most of a new user's cost).
        self._queue: deque[Any] = deque()
        # bucketing value -> {flag and variant (`ExposureTemplate.dedup`) -> when its event
        # was made; LAST -> the bits of the last exposures that passed; LAST_UNTIL -> until
        # when all of those are inside the window}. Read by evaluating threads, written
        # by the delivery thread (and `recent`, the LRU order, by both). Times are
        # `time.monotonic()`, so the window does not move with the wall clock. Only text
        # and numbers: CPython's garbage collector does not track these dicts, so a large
        # window costs it nothing.
        self._users: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._window_lock = threading.Lock()  # the window, the queue's limit, the counts
        self._counted = [0] * 7
        self._delivering = threading.Lock()  # one batch at a time: sinks need no locks
        self._wake = threading.Event()
        # How many waiting evaluations make the queue full; 0 once closed.
        self._limit = [capacity]
        self._closed = False
        self.record = self._recorder()
        self._thread = threading.Thread(target=self._deliver_forever, name="expc-exposures")
        self._thread.daemon = True  # never keeps the process alive; atexit flushes
        self._thread.start()
        reference = weakref.ref(self)

        def close_at_exit() -> None:
            exposures = reference()
            if exposures is not None:
                exposures.close()

        self._at_exit = close_at_exit
        atexit.register(close_at_exit)

    # --- the evaluating thread ------------------------------------------------------

    def _recorder(self) -> Callable[[str, list[ExposureTemplate], int], None]:
        """The function evaluations call with a user's exposures: their templates, and
        the sum of the templates' bits (one per flag and variant, `bit_of`). What it uses
        is bound in a closure and its counts are kept in a list: it runs once per
        evaluation that exposes anybody, and every attribute lookup shows."""
        users = self._users
        push, limit, clock = self._queue.extend, self._limit, time.monotonic
        batch, wake, counts = self.batch_size, self._wake.set, self._counted
        acquire, release = self._window_lock.acquire, self._window_lock.release
        known, recent = users.get, users.move_to_end

        def record(value: str, templates: list[ExposureTemplate], bits: int) -> None:
            try:
                now = clock()
                acquire()
                try:
                    if not value:  # a rollout or an override by attributes, to nobody
                        counts[ANONYMOUS] += len(templates)
                        return
                    seen = known(value)
                    if seen is not None:
                        recent(value)
                        # The same flags and variants as last time, all still inside the
                        # window: the usual case, decided by comparing two integers.
                        if seen[LAST] == bits and now < seen[LAST_UNTIL]:
                            counts[DEDUPLICATED] += len(templates)
                            return
                    waiting = counts[WAITING]
                    if waiting >= limit[0]:
                        # Not remembered either: the next evaluation tries again.
                        counts[DROPPED] += len(templates)
                        return
                    # Anything else (a new user, another variant, an old event) is for the
                    # delivery thread to sort out against the window (`_through_window`).
                    push((value, now, len(templates), *templates))
                    counts[WAITING] = waiting + 1
                    counts[QUEUED] += len(templates)
                finally:
                    release()
                if waiting + 1 == batch:  # once per batch: setting an Event is slow
                    wake()
            except Exception:  # nothing here should raise; if it does, evaluation goes on
                pass

        return record

    # --- the delivery thread --------------------------------------------------------

    def _deliver_forever(self) -> None:
        reported = False
        while not self._closed:
            # Everything inside: a dead delivery thread would lose every later event
            # silently (the queue fills, then drops), so nothing may end it but close().
            try:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                self.flush()
            except BaseException as error:  # a sink's sys.exit() too: only close() stops it
                # Logged once: whatever failed is likely to fail again at every interval.
                level = logging.DEBUG if reported else logging.ERROR
                log.log(level, "expc exposures: unexpected %s; delivery goes on", _one_line(error))
                reported = True
                time.sleep(_PAUSE_AFTER_ERROR)  # never a busy loop, should the wait fail

    def flush(self) -> None:
        """Deliver every exposure queued so far, in this thread; returns when the sink
        has had them. Never raises."""
        with self._delivering:
            with self._window_lock:  # a copy in C, so evaluations wait microseconds
                queued = list(self._queue)
                self._queue.clear()
                self._counted[WAITING] = 0
            queued = self._through_window(queued)
            # Batches of `batch_size` evaluations, read straight from the flat records.
            start = position = evaluations = 0
            while position < len(queued):
                position += 3 + queued[position + 2]
                evaluations += 1
                if evaluations == self.batch_size or position == len(queued):
                    self._deliver(queued, start, position)
                    start, evaluations = position, 0

    def _through_window(self, queued: list[Any]) -> list[Any]:
        """The flat records of `queued` with only the exposures the window lets pass
        (one per user, flag and variant within `ttl`, by the time of the evaluation),
        remembering them. The lock is taken per slice of records, so that evaluations
        never wait for more than a few hundred of them."""
        users, window, ttl = self._users, self.window, self.ttl
        counts, lock = self._counted, self._window_lock
        passed: list[Any] = []
        position = 0
        while position < len(queued):
            with lock:
                for _ in range(_SLICE):
                    if position >= len(queued):
                        break
                    value, now, count = queued[position : position + 3]
                    templates = queued[position + 3 : position + 3 + count]
                    position += 3 + count
                    bits = sum(template.bit for template in templates)
                    seen = users.get(value)
                    if seen is None:
                        fresh = templates
                        if window:
                            seen = users[value] = {LAST: bits, LAST_UNTIL: now + ttl}
                            for template in templates:
                                seen[template.dedup] = now
                            if len(users) > window:
                                users.popitem(last=False)  # the least recently evaluated
                    else:
                        users.move_to_end(value)  # as it was evaluated: recently
                        fresh = []
                        until = now + ttl
                        for template in templates:
                            first = seen.get(template.dedup)
                            if first is None or now - first >= ttl:
                                seen[template.dedup] = first = now
                                fresh.append(template)
                            elif first + ttl < until:
                                until = first + ttl
                        seen[LAST], seen[LAST_UNTIL] = bits, until
                    if len(fresh) < count:
                        counts[DEDUPLICATED] += count - len(fresh)
                        counts[QUEUED] -= count - len(fresh)
                    if fresh:
                        passed += (value, now, len(fresh), *fresh)
        return passed

    def _deliver(self, queued: list[Any], start: int, end: int) -> None:
        """Build the events of the flat records `queued[start:end]` and hand them over."""
        as_lines = isinstance(self.sink, JsonLinesSink)
        # Lines from each template's prepared text cost a quarter of encoding events.
        build = line_of if as_lines else event_of
        # Times are monotonic (the window must not move with the wall clock); events
        # carry the wall clock, read now: they waited at most a flush interval.
        offset = time.time() - time.monotonic()
        built: list[Any] = []
        position = start
        while position < end:
            value, when, count = queued[position : position + 3]
            milliseconds = int((when + offset) * 1000)
            for template in queued[position + 3 : position + 3 + count]:
                built.append(build(value, template, milliseconds))
            position += 3 + count
        try:
            if as_lines:
                self.sink.write_lines(built)  # type: ignore[attr-defined]
            else:
                self.sink(built)
        except BaseException as error:
            with self._window_lock:
                self._counted[FAILED] += len(built)
            log.warning(
                "expc exposure sink failed (%s); %d events lost", _one_line(error), len(built)
            )
            # A sink's sys.exit() or a Ctrl-C while the application itself flushes or
            # closes is the application's to handle; on the delivery thread it is just
            # a failed batch, and the rest of the flush goes on.
            if not isinstance(error, Exception) and threading.current_thread() is not self._thread:
                raise
        else:
            with self._window_lock:
                self._counted[DELIVERED] += len(built)

    # --- the application ------------------------------------------------------------

    @property
    def counters(self) -> ExposureCounters:
        with self._window_lock:
            queued, deduplicated, anonymous, dropped, delivered, failed, waiting = self._counted
        return ExposureCounters(
            exposures=queued + deduplicated + dropped,
            deduplicated=deduplicated,
            anonymous=anonymous,
            dropped=dropped,
            delivered=delivered,
            failed=failed,
            waiting=waiting,
        )

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking exposures, deliver what is queued, and close the sink when it has
        a `close`. Waits at most about `timeout` seconds for a batch under way. Safe to
        call more than once."""
        timeout = seconds_setting(
            "Exposures", "timeout", timeout, positive=False
        )  # before anything changes
        with self._window_lock:
            if self._closed:
                return
            self._closed = True
            self._limit[0] = 0
        atexit.unregister(self._at_exit)
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.flush()
        closing = getattr(self.sink, "close", None)
        if callable(closing):
            try:
                closing()
            except Exception as error:
                log.warning("expc exposure sink failed to close: %s", _one_line(error))

    def __enter__(self) -> Exposures:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def count_setting(owner: str, name: str, value: object, *, least: int) -> int:
    """`value` as a whole number of at least `least`, else a ValueError naming it."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and int(value) >= least:
        return int(value)
    raise ValueError(f"{owner}: {name} must be a whole number, at least {least}; got {value!r}")


def seconds_setting(
    owner: str, name: str, value: object, *, positive: bool, waited: bool = True
) -> float:
    """`value` as a finite number of seconds, more than 0 when `positive` (else at least
    0) and, when it is `waited` for, at most what `threading` can wait; else a
    ValueError naming it."""
    seconds = math.nan
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an int too large for a float
            seconds = float(value)
    most = threading.TIMEOUT_MAX if waited else math.inf
    if math.isfinite(seconds) and (seconds > 0 if positive else seconds >= 0) and seconds <= most:
        return seconds
    bounds = "more than 0" if positive else "at least 0"
    if waited:
        bounds += f" and at most threading.TIMEOUT_MAX ({threading.TIMEOUT_MAX:g})"
    raise ValueError(f"{owner}: {name} must be a finite number of seconds, {bounds}; got {value!r}")


def _one_line(error: BaseException) -> str:
    """An exception as one printable line, its type first; never raises."""
    try:
        text = str(error)
    except Exception:
        text = ""
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text[:300]
