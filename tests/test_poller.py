"""The poller against servers that misbehave: a real loopback TCP server, written at the
socket level, answers each request with whatever bytes a test sets. After every kind of
garbage the polling thread is alive, the last good bundle is served, and `state` says
what went wrong and how long the poller now waits."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import CASES, REPO, compiled_bundle

from expc.sdk.evaluate import Evaluator
from expc.sdk.poller import BundlePoller, PollerState, printable

GOOD = (REPO / "generated" / "production" / "bundle.json").read_bytes()
GOOD_ID = json.loads(GOOD)["release"]["content_id"]
OTHER = json.dumps(compiled_bundle(CASES / "evaluate" / "prerequisites" / "definitions")).encode()
OTHER_ID = json.loads(OTHER)["release"]["content_id"]

Answer = bytes | Callable[[socket.socket], None]


def ok(body: bytes, *headers: str) -> bytes:
    """A well-formed 200 response."""
    head = ["HTTP/1.1 200 OK", f"Content-Length: {len(body)}", *headers, "Connection: close"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class RawServer:
    """A TCP server on 127.0.0.1: reads each request's head, answers with `answer`
    (bytes sent as they are, or a function given the socket), then closes."""

    def __init__(self, answer: Answer = b"") -> None:
        self.answer: Answer = answer
        self.served = 0
        self.requests: list[bytes] = []
        self.closing = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/bundle.json"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self.closing.is_set():
            try:
                connection, _address = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with connection:
                self._answer(connection)

    def _answer(self, connection: socket.socket) -> None:
        connection.settimeout(5)
        head = b""
        try:
            while b"\r\n\r\n" not in head:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                head += chunk
            self.requests.append(head)
            answer = self.answer
            if callable(answer):
                answer(connection)
            else:
                connection.sendall(answer)
        except OSError:
            pass  # the poller hung up first (a body over max_bytes, a timeout)
        finally:
            self.served += 1

    def close(self) -> None:
        self.closing.set()
        self._thread.join(timeout=10)
        self._listener.close()


@pytest.fixture
def server() -> Iterator[RawServer]:
    running = RawServer(ok(GOOD))
    yield running
    running.close()


def wait_until(condition: Callable[[], bool], what: str, limit: float = 30) -> None:
    """Wait for something the poller thread does; the limit only keeps a broken build
    from hanging, it measures nothing."""
    give_up = time.monotonic() + limit
    while not condition():
        if time.monotonic() > give_up:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.005)


def _stall(seconds: float) -> Callable[[socket.socket], None]:
    """Send a status line, then nothing for `seconds` (longer than the poll timeout)."""

    def answer(connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n")
        threading.Event().wait(seconds)

    return answer


def _hang_up(connection: socket.socket) -> None:
    """Close at once: no status line at all."""


def _stream(size: int) -> Callable[[socket.socket], None]:
    """A body of `size` bytes with no Content-Length, ended by closing."""

    def answer(connection: socket.socket) -> None:
        connection.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        block = b"x" * 65536
        for _ in range(size // len(block)):
            connection.sendall(block)

    return answer


MAX_BYTES = 200_000
GARBAGE: dict[str, tuple[Answer, str]] = {
    "truncated-body": (
        (f"HTTP/1.1 200 OK\r\nContent-Length: {len(GOOD)}\r\n\r\n").encode() + GOOD[:500],
        f"ended after 500 of its {len(GOOD)} bytes",
    ),
    "garbage-status-line": (b"SPAM \x1b[31mEGGS\x07\r\n\r\n", "BadStatusLine: SPAM \\x1b[31mEGGS"),
    "header-line-of-70000-bytes": (
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n" + GOOD,
        "LineTooLong",
    ),
    "200-headers": (
        b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(200)) + b"\r\n",
        "got more than 100 headers",
    ),
    "broken-chunked-encoding": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n",
        "IncompleteRead",
    ),
    "immediate-close": (_hang_up, "RemoteDisconnected"),
    "slower-than-the-timeout": (_stall(1.5), "timed out"),
    "oversized-body-announced": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 900000000\r\n\r\n" + GOOD,
        f"900000000 bytes, over max_bytes {MAX_BYTES}",
    ),
    "oversized-body-streamed": (_stream(2_000_000), f"larger than max_bytes {MAX_BYTES}"),
    "not-a-bundle": (ok(b'{"schema_version": "1.0", "flags": []}'), "lacks its release"),
    "server-error-with-control-characters": (
        b"HTTP/1.1 503 Down\x1b[2J\x1b]0;owned\x07\r\nContent-Length: 0\r\n\r\n",
        "HTTP 503 Down\\x1b[2J\\x1b]0;owned\\x07",
    ),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_polling_thread_survives_garbage_and_keeps_the_last_good_bundle(
    server: RawServer, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    garbage, expected_error = GARBAGE[kind]
    poller = BundlePoller(
        server.url, interval=0.02, max_interval=0.16, timeout=0.5, max_bytes=MAX_BYTES
    )
    with caplog.at_level(logging.INFO, logger="expc.poller"):
        poller.start()
        try:
            wait_until(lambda: poller.state.content_id == GOOD_ID, "the first bundle")
            server.answer = garbage
            wait_until(lambda: poller.state.consecutive_failures >= 2, "two failed polls")
            state = poller.state
            assert state.running
            assert state.content_id == GOOD_ID
            assert poller.evaluator is not None
            assert poller.evaluator.evaluate({"user_id": "qa-anna"})[
                "checkout-one-page"
            ].reason == ("override")
            assert state.last_error is not None and expected_error in state.last_error
            assert state.last_error.isprintable()
            # Backing off: the wait doubles with each failure in a row, up to the cap.
            assert state.next_wait == min(0.02 * 2**state.consecutive_failures, 0.16)
            assert state.next_wait > poller.interval
            # The server heals: the poller takes the next bundle and forgets the back-off.
            server.answer = ok(OTHER)
            wait_until(lambda: poller.state.content_id == OTHER_ID, "the next bundle")
            assert poller.state.consecutive_failures == 0
            assert poller.state.running
        finally:
            poller.stop()
    messages = [record.getMessage() for record in caplog.records]
    assert any("failed" in message for message in messages)
    assert all(message.isprintable() for message in messages)


def test_unchanged_bundle_from_a_server_without_etags_is_not_swapped_or_logged(
    server: RawServer, caplog: pytest.LogCaptureFixture
) -> None:
    poller = BundlePoller(server.url)
    with caplog.at_level(logging.INFO, logger="expc.poller"):
        assert poller.poll_once() is True
        assert poller.evaluator is not None
        prepared = poller.evaluator.prepared_flags
        for _ in range(3):
            assert poller.poll_once() is False
    assert poller.evaluator.prepared_flags is prepared  # the same program: no swap
    assert [r.getMessage() for r in caplog.records] == [
        f"expc bundle updated from {server.url} ({GOOD_ID})"
    ]
    assert b"If-None-Match" not in b"".join(server.requests)
    server.answer = ok(OTHER)
    with caplog.at_level(logging.INFO, logger="expc.poller"):
        assert poller.poll_once() is True
    assert poller.evaluator.content_id == OTHER_ID


def test_etag_is_sent_back_and_a_304_confirms_the_bundle(server: RawServer) -> None:
    server.answer = ok(GOOD, 'ETag: "v1"')
    poller = BundlePoller(server.url)
    assert poller.poll_once() is True
    server.answer = b"HTTP/1.1 304 Not Modified\r\n\r\n"
    time.sleep(0.3)
    aged = poller.state.age
    assert aged is not None and aged >= 0.3
    assert poller.poll_once() is False
    assert b'If-None-Match: "v1"' in server.requests[-1]
    state = poller.state
    assert state.age is not None and state.age < aged  # confirmed current just now
    assert (state.content_id, state.consecutive_failures) == (GOOD_ID, 0)


def test_a_hostile_etag_is_never_sent_back(server: RawServer) -> None:
    server.answer = ok(GOOD, "ETag: " + "e" * 5000)
    poller = BundlePoller(server.url)
    assert poller.poll_once() is True
    assert poller.etag is None
    poller.poll_once()
    assert b"If-None-Match" not in server.requests[-1]


def test_state_before_and_after_the_first_poll(server: RawServer) -> None:
    poller = BundlePoller(server.url, interval=5)
    assert poller.state == PollerState(
        content_id=None,
        age=None,
        last_success=None,
        last_error=None,
        consecutive_failures=0,
        next_wait=5.0,
        polls=0,
        running=False,
    )
    before = time.time()
    poller.poll_once()
    state = poller.state
    assert state.content_id == GOOD_ID and state.polls == 1
    assert state.last_success is not None and state.last_success >= before
    with pytest.raises(AttributeError):
        state.consecutive_failures = 7  # type: ignore[misc]  # a snapshot, read-only
    given = BundlePoller(server.url, Evaluator(GOOD))
    assert given.state.content_id == GOOD_ID and given.state.age is not None


def test_failures_are_reported_in_state_and_logged_on_one_escaped_line(
    server: RawServer, caplog: pytest.LogCaptureFixture
) -> None:
    poller = BundlePoller(server.url, interval=1, max_interval=8)
    assert poller.poll_once() is True
    forged = {**json.loads(GOOD), "release": {"content_id": "x\n\x1b[1mFAKE LOG LINE"}}
    server.answer = ok(json.dumps(forged).encode())
    with caplog.at_level(logging.WARNING, logger="expc.poller"):
        assert poller.poll_once() is False
    state = poller.state
    assert (state.consecutive_failures, state.next_wait) == (1, 2.0)
    assert state.last_error is not None
    assert "content id mismatch: the bundle says x\\n\\x1b[1mFAKE LOG LINE" in state.last_error
    server.answer = ok(GOOD[:-30])
    with caplog.at_level(logging.WARNING, logger="expc.poller"):
        assert poller.poll_once() is False
    assert poller.state.consecutive_failures == 2 and poller.state.next_wait == 4.0
    assert len(caplog.records) == 2
    for record in caplog.records:
        assert record.getMessage().isprintable()
        assert f"keeping {GOOD_ID}" in record.getMessage()
    assert poller.state.content_id == GOOD_ID


def test_an_unexpected_error_is_a_failed_poll_not_a_crash(
    server: RawServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    poller = BundlePoller(server.url, interval=1)
    assert poller.poll_once() is True
    assert poller.evaluator is not None

    def broken(self: Evaluator, bundle: Any) -> bool:
        raise RuntimeError("something nobody expected\nsecond line")

    monkeypatch.setattr(Evaluator, "update", broken)
    assert poller.poll_once() is False
    state = poller.state
    assert state.last_error == "RuntimeError: something nobody expected\\nsecond line"
    assert state.content_id == GOOD_ID


def test_thread_outlives_a_poll_that_raises(
    server: RawServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def raising(self: BundlePoller) -> bool:
        calls.append(1)
        raise RuntimeError("bug")

    poller = BundlePoller(server.url, interval=0.01, max_interval=0.01)
    monkeypatch.setattr(BundlePoller, "poll_once", raising)
    with caplog.at_level(logging.ERROR, logger="expc.poller"):
        poller.start()
        try:
            wait_until(lambda: len(calls) >= 3, "three polls")
            assert poller.state.running
        finally:
            poller.stop()
    assert "unexpected RuntimeError: bug; polling goes on" in caplog.records[0].getMessage()
    assert not poller.state.running


def test_back_off_stays_capped_after_years_of_failures() -> None:
    poller = BundlePoller("http://127.0.0.1:9/bundle.json", interval=30, max_interval=600)
    poller.failures = 100_000  # 2**100000 seconds would not even fit in a float
    assert poller.next_wait == 600.0
    assert poller.poll_once() is False
    assert poller.state.next_wait == 600.0 and poller.state.consecutive_failures == 100_001


def test_printable_escapes_control_characters_and_cuts_long_text() -> None:
    assert printable("plain text, é and ü") == "plain text, é and ü"
    assert printable("a\nb\r\x1b[31m\u2028\x00") == "a\\nb\\r\\x1b[31m\\u2028\\x00"
    cut = printable("x" * 1000)
    assert cut.startswith("x" * 300) and cut.endswith("(700 more characters)")


# --- the last good bundle, exposures and listeners (issue 12) -------------------------


def test_every_new_bundle_is_kept_in_the_cache_file_written_atomically(
    server: RawServer, tmp_path: Path
) -> None:
    cache = tmp_path / "state" / "bundle.json"
    poller = BundlePoller(server.url, cache_file=cache)
    assert poller.poll_once() is True
    assert cache.read_bytes() == GOOD
    written = cache.stat().st_mtime_ns
    assert poller.poll_once() is False  # the same bundle: not written again
    assert cache.stat().st_mtime_ns == written
    server.answer = ok(OTHER)
    assert poller.poll_once() is True
    assert cache.read_bytes() == OTHER
    server.answer = ok(b"{broken")  # refused: the cache keeps the last good one
    assert poller.poll_once() is False
    assert cache.read_bytes() == OTHER
    assert sorted(p.name for p in cache.parent.iterdir()) == ["bundle.json"]  # no leftovers


def test_a_cache_write_cut_short_leaves_the_last_good_bundle_whole(
    server: RawServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails half-way (here, the disk refusing to sync) replaces nothing:
    the file still holds the previous bundle, whole, and no partial file is left."""
    cache = tmp_path / "bundle.json"
    poller = BundlePoller(server.url, cache_file=cache)
    assert poller.poll_once() is True
    server.answer = ok(OTHER)

    def disk_full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    assert poller.poll_once() is True  # served all the same
    assert poller.state.content_id == OTHER_ID
    assert poller.state.cache_error is not None and "No space left" in poller.state.cache_error
    assert cache.read_bytes() == GOOD
    assert [p.name for p in tmp_path.iterdir()] == ["bundle.json"]
    monkeypatch.undo()
    server.answer = ok(GOOD)
    assert poller.poll_once() is True
    assert poller.state.cache_error is None and cache.read_bytes() == GOOD


def test_a_poller_that_cannot_reach_its_source_at_boot_starts_from_the_cache_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "bundle.json"
    cache.write_bytes(GOOD)
    ten_minutes_ago = time.time() - 600
    os.utime(cache, (ten_minutes_ago, ten_minutes_ago))
    down = RawServer(_hang_up)
    try:
        poller = BundlePoller(down.url, cache_file=cache, interval=0.02, max_interval=0.05)
        with caplog.at_level(logging.WARNING, logger="expc.poller"):
            assert poller.poll_once() is True  # served from the file
        state = poller.state
        assert (state.content_id, state.source, state.consecutive_failures) == (
            GOOD_ID,
            "file",
            1,
        )
        assert state.age is not None and 599 < state.age < 700
        assert poller.evaluator is not None
        assert poller.evaluator.evaluate({"user_id": "qa-anna"}, "checkout-one-page").enrolled
        assert any(
            "from" in r.getMessage() and "written 600 s ago" in r.getMessage()
            for r in caplog.records
        )
        # Polling goes on, and the source's bundle replaces the file's when it answers.
        down.answer = ok(OTHER)
        poller.start()
        wait_until(lambda: poller.state.content_id == OTHER_ID, "the source's bundle")
        assert poller.state.source == "url" and poller.state.age is not None
        assert poller.state.age < 60
        poller.stop()
        assert cache.read_bytes() == OTHER
    finally:
        down.close()


def test_a_damaged_cache_file_is_never_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "bundle.json"
    cache.write_bytes(GOOD.replace(b'"traffic":20', b'"traffic":90'))  # content id fails
    with caplog.at_level(logging.WARNING, logger="expc.poller"):
        poller = BundlePoller("http://127.0.0.1:9/bundle.json", cache_file=cache, timeout=2)
        assert poller.poll_once() is False
    assert poller.evaluator is None and poller.state.source is None
    assert any("content id mismatch" in r.getMessage() for r in caplog.records)
    missing = BundlePoller("http://127.0.0.1:9/b.json", cache_file=tmp_path / "none.json")
    assert missing.poll_once() is False and missing.evaluator is None


def test_a_cache_file_that_cannot_be_written_is_reported_and_serving_goes_on(
    server: RawServer, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    poller = BundlePoller(server.url, cache_file=blocker / "bundle.json")
    assert poller.poll_once() is True
    state = poller.state
    assert state.content_id == GOOD_ID and state.consecutive_failures == 0
    assert state.cache_error is not None and "Error" in state.cache_error


def test_listeners_hear_every_poll_and_one_that_raises_stops_nothing(
    server: RawServer, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[PollerState] = []
    poller = BundlePoller(server.url)
    poller.subscribe(heard.append)

    def broken(state: PollerState) -> None:
        raise ZeroDivisionError("a listener's bug")

    poller.subscribe(broken)
    with caplog.at_level(logging.ERROR, logger="expc.poller"):
        poller.poll_once()
        server.answer = b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n"
        poller.poll_once()
    assert [(s.content_id, s.consecutive_failures) for s in heard] == [(GOOD_ID, 0), (GOOD_ID, 1)]
    assert "ZeroDivisionError" in caplog.records[0].getMessage()


def test_a_poller_gives_its_exposures_to_the_evaluator_it_makes_and_close_delivers_them(
    server: RawServer,
) -> None:
    events: list[dict[str, Any]] = []
    with BundlePoller(server.url, exposures=events.extend) as poller:
        poller.poll_once()
        assert poller.evaluator is not None
        poller.evaluator.evaluate({"user_id": "qa-anna"}, "checkout-one-page")
    assert [(e["flag"], e["bucketing_value"]) for e in events] == [("checkout-one-page", "qa-anna")]
    given = Evaluator(GOOD)
    also: list[dict[str, Any]] = []
    with BundlePoller(server.url, given, exposures=also.extend):
        given.evaluate({"user_id": "qa-anna"}, "checkout-one-page")
    assert len(also) == 1
    with pytest.raises(ValueError, match="already records exposures"):
        BundlePoller(server.url, given, exposures=also.extend)


@pytest.mark.parametrize(
    "setting",
    [
        {"interval": float("inf")},
        {"interval": 0},
        {"max_interval": float("nan")},
        {"timeout": -1},
        {"deadline": float("inf")},
        {"max_bytes": 0},
        {"max_bytes": 1.5},
    ],
)
def test_settings_a_polling_thread_could_not_live_with_are_refused_when_made(
    setting: dict[str, Any],
) -> None:
    """An infinite wait would end the polling thread (Event.wait overflows): refused in
    the application's own code instead, naming the setting."""
    name = next(iter(setting))
    with pytest.raises(ValueError, match=f"BundlePoller: {name} must be"):
        BundlePoller("http://127.0.0.1:9/bundle.json", **setting)
