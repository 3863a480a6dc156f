"""`expc serve`: the generated/ directory over HTTP with ETags, for local development.

GET and HEAD only. Files are read fresh on every request (so a new `expc compile` is
visible at once); the ETag is the sha256 of the content, and a matching If-None-Match
gets 304 Not Modified. HEAD answers with exactly the headers GET would send.

What is refused, and how: a request path that is not printable ASCII, has a bad
percent escape or is not UTF-8 once decoded gets 400; one longer than `MAX_PATH`
gets 414; anything that is not a regular file inside the directory gets 404: `..`,
names starting with a dot (`.` `..` and the temporary files of an atomic write),
symbolic links that lead out of the directory, and directories (no listings). Each
request is logged as one line on the `expc.serve` logger, with every character a
terminal could act on escaped; a failure is one line, never a traceback.
"""

from __future__ import annotations

import hashlib
import http.server
import ipaddress
import logging
import mimetypes
import re
import socket
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from expc.errors import UsageError
from expc.outputs.layout import BUNDLE

LOG = logging.getLogger("expc.serve")

# A path longer than any file generated/ holds is a mistake or a probe; 414 says which.
MAX_PATH = 1024
# A request path is printable ASCII; clients send everything else percent-encoded.
PRINTABLE_ASCII = re.compile(r"[!-~]+")
BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class BadPathError(ValueError):
    """A request path that cannot name a file: answered with `status`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def printable(text: str, limit: int = 300) -> str:
    """`text` as printable ASCII, everything else (and the backslash) escaped, cut
    after `limit` characters: a request cannot write escape sequences, fake lines or
    megabytes into a log."""
    shown = text if len(text) <= limit else f"{text[:limit]}...({len(text) - limit} more)"
    return "".join(
        character
        if character.isascii() and character.isprintable() and character != "\\"
        else character.encode("unicode_escape").decode("ascii")
        for character in shown
    )


def request_segments(raw: str) -> list[str]:
    """The decoded path segments of a request target; raises BadPathError."""
    if len(raw) > MAX_PATH:
        raise BadPathError(414, f"path longer than {MAX_PATH} characters")
    if not raw.startswith("/") or not PRINTABLE_ASCII.fullmatch(raw):
        raise BadPathError(400, "path is not an absolute path of printable ASCII")
    path = raw.split("?", 1)[0].split("#", 1)[0]
    if BAD_ESCAPE.search(path):
        raise BadPathError(400, "invalid percent escape")
    try:
        decoded = urllib.parse.unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise BadPathError(400, "path is not UTF-8") from None
    if not decoded.isprintable():
        raise BadPathError(400, "path holds control characters")
    # Splitting after decoding makes an escaped slash (%2F) a separator like any other,
    # so `..%2F` or `%2e%2e` is seen as `..` below.
    return [segment for segment in decoded.split("/") if segment]


def resolve(base: Path, segments: list[str]) -> Path | None:
    """The regular file inside `base` that `segments` name, or None."""
    if any(segment.startswith(".") for segment in segments):
        return None
    try:
        target = base.joinpath(*(segments or [BUNDLE])).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, too long, a loop, not a directory
        return None
    if not target.is_relative_to(base) or not target.is_file():
        return None
    return target


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an If-None-Match header (a list of tags, weak or strong, or `*`) holds
    `etag`: the weak comparison RFC 9110 prescribes for this header."""
    if if_none_match is None:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


def make_handler(root: Path) -> type[http.server.BaseHTTPRequestHandler]:
    base = root.resolve()

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "expc-serve"
        # A client that connects and then says nothing frees its thread after this.
        timeout = 10

        def do_GET(self) -> None:
            self.answer(with_body=True)

        def do_HEAD(self) -> None:
            self.answer(with_body=False)

        def answer(self, with_body: bool) -> None:
            try:
                target = resolve(base, request_segments(self.path))
            except BadPathError as bad:
                self.send_error(bad.status, str(bad))
                return
            try:
                body = target.read_bytes() if target is not None else None
            except OSError:  # removed or made unreadable since it was resolved
                body = None
            if target is None or body is None:
                self.send_error(404, "not found")
                return
            etag = '"' + hashlib.sha256(body).hexdigest() + '"'
            if matches(self.headers.get("If-None-Match"), etag):
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                return
            self.send_response(200)
            kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            """A short plain-text error, logged once (the standard one logs twice and
            answers in HTML). Also used by the request parser (400, 414, 501)."""
            reason = message or self.responses.get(code, ("error",))[0]
            body = f"{code} {reason}\n".encode("ascii", "replace")
            self.send_response(code, reason)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            LOG.info("%s %s", self.address_string(), printable(format % args))

        def log_error(self, format: str, *args: Any) -> None:
            LOG.warning("%s %s", self.address_string(), printable(format % args))

    return Handler


class Server(http.server.ThreadingHTTPServer):
    # The listen backlog: the standard 5 makes the kernel drop connections from a burst
    # of clients, which then retry after a second or more (p99 of seconds at 200
    # clients). The kernel caps it at net.core.somaxconn.
    request_queue_size = 1024
    # A client stuck mid-request must not keep Ctrl-C from ending the process.
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line per failed request, not the traceback socketserver prints."""
        error = sys.exc_info()[1]
        LOG.warning(
            "%s request failed: %s", printable(str(client_address[0])), printable(repr(error))
        )

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), int(self.server_address[1])
        return f"http://{f'[{host}]' if ':' in host else host}:{port}/bundle.json"

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(str(self.server_address[0])).is_loopback
        except ValueError:  # a scoped IPv6 address: link-local, not loopback
            return False


class Server6(Server):
    address_family = socket.AF_INET6


def make_server(root: Path, host: str = "127.0.0.1", port: int = 8000) -> Server:
    """A server for `root`, bound and listening. Raises ValueError for a port outside
    0-65535 and OSError for a host that does not resolve or cannot be bound."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0-65535; got {port}")
    if "\0" in host:
        raise ValueError("host holds a NUL character")
    family, _type, _protocol, _name, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    server_class = Server6 if family == socket.AF_INET6 else Server
    return server_class((str(address[0]), port), make_handler(root))


def open_server(directory: Path, host: str, port: int) -> Server:
    """`expc serve`: a server on `host:port` for `directory`, or a `UsageError` saying
    what is wrong with the call (the port range, a missing folder, an unusable host)."""
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: a port is 0-65535 (0: any free port)")
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such directory; run 'expc compile' first")
    try:
        return make_server(directory, host, port)
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise UsageError(
            f"--host '{printable(host)}' --port {port}: cannot listen there: {reason}"
        ) from error
