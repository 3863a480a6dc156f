"""`expc serve` on uvicorn: one ASGI application that answers OFREP from the current
bundle and serves the files of generated/, on uvicorn's httptools protocol with the two
limits uvicorn lacks.

Every request gets an answer in OFREP's shapes (or the file server's) and one log line,
its path escaped; nothing a client sends becomes a traceback. Routing, authentication
and body reading are here; what a body means is `tools/ofrep`; which bundle is current
is `tools/bundle_watch`.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httptools  # noqa: F401  (the protocol below needs it: missing means no OFREP)
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from expc.tools import ofrep
from expc.tools.bundle_watch import BundleWatch
from expc.tools.serve import (
    LOG,
    UNAUTHORIZED,
    BadPathError,
    Token,
    file_answer,
    printable,
    request_segments,
)

# A request's line and headers must arrive within this many seconds of the connection
# (or of the request's first byte on a kept-alive one), and its body within as many
# again: a client that trickles bytes holds a connection for seconds, not for ever.
HEAD_SECONDS = 10
BODY_SECONDS = 10
# Headers beyond this are refused (431): uvicorn would keep collecting them.
MAX_HEAD = 64 * 1024
# An idle kept-alive connection is closed after this.
KEEP_ALIVE_SECONDS = 5
# More open connections than this get 503 at once instead of queueing without bound.
MAX_CONNECTIONS = 2048

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = b"application/json"
EVALUATE = ["v1", "evaluate", "flags"]  # the path below /ofrep/


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Headers
    body: bytes


def json_reply(answer: ofrep.Answer, *extra: tuple[bytes, bytes]) -> Reply:
    headers: Headers = [*extra]
    if answer.etag is not None:
        headers.append((b"etag", answer.etag.encode("ascii")))
    if answer.body is None:
        return Reply(answer.status, headers, b"")
    headers += [(b"content-type", JSON), (b"content-length", b"%d" % len(answer.body))]
    return Reply(answer.status, headers, answer.body)


def text_reply(status: int, message: str, *extra: tuple[bytes, bytes]) -> Reply:
    body = f"{status} {message}\n".encode("ascii", "replace")
    headers: Headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
        *extra,
    ]
    return Reply(status, headers, body)


# Sent with every answer given without reading the request's body: the connection is
# closed rather than kept to drain a body of any size.
CLOSE = (b"connection", b"close")


def header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


class Application:
    """The ASGI application: OFREP under /ofrep/v1/, the files of `root` elsewhere."""

    def __init__(
        self, root: Path, watch: BundleWatch, token: Token | None, bucketing_attribute: str
    ) -> None:
        self.base = root.resolve()
        self.watch = watch
        self.token = token
        self.attribute = bucketing_attribute  # what the targeting key stands for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan and websockets are switched off
            return
        client = scope.get("client")
        address = printable(str(client[0])) if client else "-"
        target = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
        if scope.get("query_string"):
            target += b"?" + scope["query_string"]
        shown = printable(target.decode("latin-1"))
        try:
            reply = await self.answer(scope, receive)
        except Exception as problem:  # a bug: one line, an answer, never a traceback
            LOG.warning("%s request failed: %s", address, printable(repr(problem)))
            reply = json_reply(ofrep.error(500, None, "internal error; see the server log"))
        if reply is None:
            # The client closed mid-body. When it sent garbage, uvicorn has logged the
            # request already: one line per request, so this one is for debugging only.
            LOG.debug('%s "%s %s" closed mid-request', address, scope["method"], shown)
            return
        # Logged before it is sent: whoever has the answer can read its line.
        LOG.info(
            '%s "%s %s HTTP/%s" %d %d',
            address,
            scope["method"],
            shown,
            scope["http_version"],
            reply.status,
            len(reply.body),
        )
        await send(
            {"type": "http.response.start", "status": reply.status, "headers": reply.headers}
        )
        await send({"type": "http.response.body", "body": reply.body})

    async def answer(self, scope: Scope, receive: Receive) -> Reply | None:
        headers: Headers = scope["headers"]
        method: str = scope["method"]
        raw = scope.get("raw_path") or scope["path"].encode("utf-8", "replace")
        path = raw.decode("latin-1")
        try:
            segments = request_segments(path)
        except BadPathError as bad:
            if path.startswith("/ofrep/"):
                return json_reply(ofrep.error(bad.status, None, str(bad)), CLOSE)
            return text_reply(bad.status, str(bad), CLOSE)
        is_ofrep = segments[:1] == ["ofrep"]
        if self.token is not None and not self.token.admits(
            header(headers, b"authorization"), header(headers, b"x-api-key")
        ):
            challenge = (b"www-authenticate", UNAUTHORIZED.encode("ascii"))
            details = "a bearer token is required: Authorization: Bearer TOKEN"
            if is_ofrep:
                return json_reply(ofrep.error(401, None, details), challenge, CLOSE)
            return text_reply(401, details, challenge, CLOSE)
        if is_ofrep:
            return await self.ofrep(method, segments[1:], headers, receive)
        if method not in ("GET", "HEAD"):
            return text_reply(501, f"{printable(method)} is not supported here", CLOSE)
        found = await asyncio.to_thread(
            file_answer, self.base, segments, _text(header(headers, b"if-none-match"))
        )
        if found is None:
            return text_reply(404, "not found")
        encoded = [
            (name.lower().encode("ascii"), value.encode("ascii")) for name, value in found.headers
        ]
        return Reply(found.status, encoded, found.body)

    async def ofrep(
        self, method: str, route: list[str], headers: Headers, receive: Receive
    ) -> Reply | None:
        if route[:3] != EVALUATE:
            details = "OFREP endpoints: POST /ofrep/v1/evaluate/flags[/KEY]"
            return json_reply(ofrep.error(404, None, details), CLOSE)
        if method != "POST":
            details = "OFREP evaluates on POST"
            return json_reply(ofrep.error(405, None, details), (b"allow", b"POST"), CLOSE)
        loaded = self.watch.current
        if loaded is None:
            details = f"no bundle yet at {self.watch.path}; run 'expc compile'"
            return json_reply(ofrep.error(503, None, details), (b"retry-after", b"1"), CLOSE)
        # A key holding "/" (or %2F) names no flag; it is answered FLAG_NOT_FOUND whole.
        key = "/".join(route[3:]) if len(route) > 3 else None
        body = await read_body(receive, headers, key)
        if not isinstance(body, bytes):
            return body
        if key is None:
            if_none_match = _text(header(headers, b"if-none-match"))
            answer = ofrep.evaluate_all(loaded, body, if_none_match, self.attribute)
        else:
            answer = ofrep.evaluate_one(loaded, key, body, self.attribute)
        return json_reply(answer)


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


async def read_body(receive: Receive, headers: Headers, key: str | None) -> bytes | Reply | None:
    """The request body, at most `ofrep.MAX_BODY` bytes within BODY_SECONDS; else the
    reply that refuses it (413, 408), or None when the client went away."""
    declared = header(headers, b"content-length")
    too_large = f"the body is over {ofrep.MAX_BODY} bytes"
    if declared is not None and declared.isdigit() and int(declared) > ofrep.MAX_BODY:
        return json_reply(ofrep.error(413, ofrep.INVALID_CONTEXT, too_large, key), CLOSE)
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_SECONDS):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                body += message.get("body", b"")
                if len(body) > ofrep.MAX_BODY:
                    return json_reply(
                        ofrep.error(413, ofrep.INVALID_CONTEXT, too_large, key), CLOSE
                    )
                if not message.get("more_body", False):
                    return bytes(body)
    except TimeoutError:
        details = f"the body did not arrive within {BODY_SECONDS} s"
        return json_reply(ofrep.error(408, None, details, key), CLOSE)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the two limits it lacks: a request's head (line
    and headers) must arrive within HEAD_SECONDS (uvicorn only times out idle kept-alive
    connections, so a client that trickles a byte at a time would hold its connection
    for ever) and be at most MAX_HEAD bytes (uvicorn would collect any amount)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._begin_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD:
                self._refuse(431, "Request Header Fields Too Large", f"over {MAX_HEAD} bytes")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begin_head()

    def on_headers_complete(self) -> None:
        self._end_head()
        super().on_headers_complete()

    def _begin_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(HEAD_SECONDS, self._head_overdue)

    def _end_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "Request Timeout", f"no complete request head in {HEAD_SECONDS} s")

    def _refuse(self, status: int, phrase: str, why: str) -> None:
        self._end_head()
        address = printable(str(self.client[0])) if self.client else "-"
        LOG.info("%s %d %s", address, status, why)
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            % (status, phrase.encode("ascii"))
        )
        self.transport.close()


def prepare(
    listening: socket.socket,
    root: Path,
    watch: BundleWatch,
    token: Token | None,
    bucketing_attribute: str,
) -> tuple[Callable[[], None], Callable[[], None]]:
    """`run` (blocks until `stop`, SIGINT or SIGTERM) and `stop` for a server on the
    listening socket."""
    config = uvicorn.Config(
        Application(root, watch, token, bucketing_attribute),
        http=GuardedProtocol,
        ws="none",
        lifespan="off",
        interface="asgi3",
        log_config=None,
        access_log=False,  # Application logs each request itself, escaped
        proxy_headers=False,  # the client address in the log is the peer's, not a header's
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        limit_concurrency=MAX_CONNECTIONS,
    )
    server = uvicorn.Server(config)

    def run() -> None:
        watch.start()
        try:
            server.run(sockets=[listening])
        finally:
            watch.stop()
            listening.close()

    def stop() -> None:
        server.should_exit = True

    return run, stop
