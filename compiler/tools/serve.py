"""`expc serve`: the generated/ directory over HTTP with ETags, and OFREP beside it.

With the `serve` extra installed (uvicorn), `open_serving` starts `tools/asgi`: OFREP
on the current bundle plus the files; without it, the standard library's threaded
server below serves the files alone, and expc says how to switch OFREP on. Both bind
loopback by default; anywhere else needs a bearer token (`--token-file`), and a given
token guards every request.

Files: GET and HEAD only. Files are read fresh on every request (so a new `expc compile`
is visible at once); the ETag is the sha256 of the content, and a matching If-None-Match
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
import hmac
import http.server
import ipaddress
import json
import logging
import mimetypes
import re
import socket
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
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
# RFC 6750's token68 characters, at least 16 of them (`openssl rand -hex 32` gives 64).
TOKEN = re.compile(rb"[A-Za-z0-9._~+/-]{16,4096}=*")
EXTRA = "pip install 'expc[serve]'"
# OFREP's general error shape, for an OFREP request to a server without the extra.
OFREP_OFF = json.dumps(
    {"errorDetails": f"OFREP is off on this expc serve: the serve extra is not installed ({EXTRA})"}
).encode("ascii")


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
    # Nearly every request path is plain already: three checks in C spare the pass
    # character by character, which took a tenth of an OFREP request's time (profiled).
    if shown.isascii() and shown.isprintable() and "\\" not in shown:
        return shown
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


@dataclass(frozen=True)
class FileAnswer:
    """A file's answer, 200 or 304, for either server."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def file_answer(base: Path, segments: list[str], if_none_match: str | None) -> FileAnswer | None:
    """The answer for the file `segments` name inside `base` (resolved), or None: 404."""
    target = resolve(base, segments)
    try:
        body = target.read_bytes() if target is not None else None
    except OSError:  # removed or made unreadable since it was resolved
        body = None
    if target is None or body is None:
        return None
    etag = '"' + hashlib.sha256(body).hexdigest() + '"'
    if matches(if_none_match, etag):
        return FileAnswer(304, [("ETag", etag), ("Cache-Control", "no-cache")], b"")
    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    headers = [
        ("Content-Type", kind),
        ("Content-Length", str(len(body))),
        ("ETag", etag),
        ("Cache-Control", "no-cache"),
    ]
    return FileAnswer(200, headers, body)


class Token:
    """The bearer token every request must carry. Only its digest is kept, and offered
    tokens are compared digest to digest with `hmac.compare_digest`: the time taken says
    nothing about how much of a guess was right, nor about the token's length."""

    def __init__(self, secret: bytes) -> None:
        self._digest = hashlib.sha256(secret).digest()

    def admits(self, authorization: bytes | None, api_key: bytes | None) -> bool:
        """Whether `Authorization: Bearer T` (or OFREP's other scheme, `X-API-Key: T`)
        carries the token."""
        offered = b""
        if authorization is not None:
            scheme, _, credentials = authorization.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                offered = credentials.strip()
        if not offered and api_key is not None:
            offered = api_key.strip()
        return hmac.compare_digest(hashlib.sha256(offered).digest(), self._digest)


UNAUTHORIZED = 'Bearer realm="expc serve"'


def read_token(path: Path) -> tuple[Token, str | None]:
    """The token in `path` and a note when others can read the file; raises UsageError.
    The token itself is never shown, in a message or a log."""
    try:
        with path.open("rb") as file:  # at most a little more than a token: not /dev/zero
            secret = file.read(8192).strip()
        mode = path.stat().st_mode
    except OSError as error:
        raise UsageError(f"--token-file {path}: cannot read it: {error.strerror}") from None
    if not TOKEN.fullmatch(secret):
        raise UsageError(
            f"--token-file {path}: a token is one line of 16 to 4,096 characters "
            f"A-Z a-z 0-9 - . _ ~ + / (then any = padding); make one with "
            f"`openssl rand -hex 32 > {path}`"
        )
    note = f"{path} can be read by other users of this machine (chmod 600 it)"
    return Token(secret), note if mode & 0o077 else None


def make_handler(
    root: Path, token: Token | None = None
) -> type[http.server.BaseHTTPRequestHandler]:
    base = root.resolve()

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "expc-serve"
        # A client that connects and then says nothing frees its thread after this.
        timeout = 10

        def do_GET(self) -> None:
            self.answer(with_body=True)

        def do_HEAD(self) -> None:
            self.answer(with_body=False)

        def do_POST(self) -> None:
            if not self.admitted():
                return
            if not self.path.startswith("/ofrep/"):
                self.send_error(501, "POST is not supported here")
                return
            # An OFREP provider shows errorDetails to the application's developer: name
            # what the server lacks rather than answer a bare "unsupported method".
            body = OFREP_OFF
            self.send_response(501, "OFREP is off")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")  # the request body is not read
            self.end_headers()
            self.wfile.write(body)

        def admitted(self) -> bool:
            """Whether the request carries the token (when one is required); if not,
            it has been answered 401."""
            if token is None or token.admits(
                _header(self.headers.get("Authorization")), _header(self.headers.get("X-API-Key"))
            ):
                return True
            self.send_error(401, "a bearer token is required")
            return False

        def answer(self, with_body: bool) -> None:
            if not self.admitted():
                return
            try:
                segments = request_segments(self.path)
            except BadPathError as bad:
                self.send_error(bad.status, str(bad))
                return
            found = file_answer(base, segments, self.headers.get("If-None-Match"))
            if found is None:
                self.send_error(404, "not found")
                return
            self.send_response(found.status)
            for name, value in found.headers:
                self.send_header(name, value)
            self.end_headers()
            if with_body:
                self.wfile.write(found.body)

        def send_error(
            self, code: int, message: str | None = None, explain: str | None = None
        ) -> None:
            """A short plain-text error, logged once (the standard one logs twice and
            answers in HTML). Also used by the request parser (400, 414, 501)."""
            reason = message or self.responses.get(code, ("error",))[0]
            body = f"{code} {reason}\n".encode("ascii", "replace")
            self.send_response(code, reason)
            if code == 401:
                self.send_header("WWW-Authenticate", UNAUTHORIZED)
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


def _header(value: str | None) -> bytes | None:
    return None if value is None else value.encode("latin-1", "replace")


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


class Server6(Server):
    address_family = socket.AF_INET6


def bind_address(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    """The address family and address `host` names for listening. Raises ValueError
    for a port outside 0-65535 and OSError for a host that does not resolve."""
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be 0-65535; got {port}")
    if "\0" in host:
        raise ValueError("host holds a NUL character")
    family, _type, _protocol, _name, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return family, str(address[0])


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:  # a scoped IPv6 address: link-local, not loopback
        return False


def make_server(
    root: Path, host: str = "127.0.0.1", port: int = 8000, token: Token | None = None
) -> Server:
    """The files of `root` on the standard library's server, bound and listening.
    Raises ValueError for a port outside 0-65535 and OSError for a host that does not
    resolve or cannot be bound."""
    family, address = bind_address(host, port)
    server_class = Server6 if family == socket.AF_INET6 else Server
    return server_class((address, port), make_handler(root, token))


def listen(family: socket.AddressFamily, address: str, port: int) -> socket.socket:
    """A listening socket for the asynchronous server (same backlog as `Server`)."""
    listening = socket.socket(family, socket.SOCK_STREAM)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((address, port))
        listening.listen(Server.request_queue_size)
    except OSError:
        listening.close()
        raise
    return listening


def base_url(address: str, port: int) -> str:
    return f"http://{f'[{address}]' if ':' in address else address}:{port}"


@dataclass(frozen=True)
class Serving:
    """A server bound and ready to `run` (until `stop` or a signal), and what the
    operator is told about it."""

    url: str  # where the bundle is, as a poller fetches it
    loopback: bool
    run: Callable[[], None]
    stop: Callable[[], None]
    ofrep_url: str | None = None  # what OFREP providers are given (None: OFREP is off)
    bundle: Path | None = None  # the bundle OFREP evaluates
    content_id: str | None = None  # its content id at start (None: not written yet)
    ofrep_off: str | None = None  # why OFREP is off
    notes: tuple[str, ...] = field(default=())


def _unusable(host: str, port: int, error: Exception) -> UsageError:
    reason = error.strerror if isinstance(error, OSError) and error.strerror else error
    return UsageError(f"--host '{printable(host)}' --port {port}: cannot listen there: {reason}")


def open_serving(
    directory: Path,
    host: str,
    port: int,
    environment: str | None = None,
    token_file: Path | None = None,
    bucketing_attribute: str = "user_id",
) -> Serving:
    """`expc serve`: OFREP and the files of `directory` on `host:port`, or the files
    alone without the `serve` extra; OFREP's targeting key is the value of
    `bucketing_attribute`. Raises UsageError for what is wrong with the call:
    the port, the folder, --env, the token file, a host beyond loopback without a
    token, a host that cannot be bound, a bundle that does not load."""
    from expc.sdk import BundleError
    from expc.tools.bundle_watch import BundleWatch, locate

    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: a port is 0-65535 (0: any free port)")
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such directory; run 'expc compile' first")
    if (directory / "project.yaml").is_file():
        # Definitions hold what bundles never publish (private attributes' values).
        raise UsageError(
            f"{directory} holds definitions (project.yaml), not compiled outputs; "
            "serve the folder `expc compile` writes (generated/ by default)"
        )
    bundle = locate(directory, environment)
    token, note = read_token(token_file) if token_file is not None else (None, None)
    try:
        family, address = bind_address(host, port)
    except (OSError, ValueError) as error:
        raise _unusable(host, port, error) from error
    loopback = is_loopback(address)
    if not loopback and token is None:
        raise UsageError(
            f"--host '{printable(host)}' is not a loopback address: other machines could "
            f"read every flag; give a bearer token with --token-file PATH, or bind 127.0.0.1"
        )
    notes = (note,) if note else ()
    file_path = f"/{environment}/{BUNDLE}" if environment else f"/{BUNDLE}"
    try:
        from expc.tools import asgi
    except ImportError as missing:
        if (missing.name or "").split(".")[0] not in ("uvicorn", "httptools"):
            raise  # not a missing extra: a bug, reported as one
        try:
            server = make_server(directory, host, port, token)
        except (OSError, ValueError) as error:
            raise _unusable(host, port, error) from error
        bound = base_url(address, int(server.server_address[1]))

        def run() -> None:
            try:
                server.serve_forever()
            finally:
                server.server_close()

        return Serving(
            url=bound + file_path,
            loopback=loopback,
            run=run,
            stop=server.shutdown,
            ofrep_off=f"{missing.name} is not installed; {EXTRA}",
            notes=notes,
        )
    watch = BundleWatch(bundle, environment)
    if bundle.is_file():
        try:
            watch.load_now()
        except (OSError, BundleError) as error:
            raise UsageError(f"{bundle}: {error}; fix it or run 'expc compile'") from error
    try:
        listening = listen(family, address, port)
    except OSError as error:
        raise _unusable(host, port, error) from error
    bound = base_url(address, int(listening.getsockname()[1]))
    server_run, server_stop = asgi.prepare(listening, directory, watch, token, bucketing_attribute)
    return Serving(
        url=bound + file_path,
        loopback=loopback,
        run=server_run,
        stop=server_stop,
        ofrep_url=bound,
        bundle=bundle,
        content_id=watch.current.content_id if watch.current else None,
        notes=notes,
    )
