"""`expc serve` as a client and its operator see it: GET and HEAD with ETags, odd
request paths answered and logged on one escaped line, nothing outside the directory,
a burst of clients queued, and usage errors for an unusable port or host.

The files are served by the standard library's threads without the `serve` extra and by
uvicorn with it: every test of the files, and of the command's usage errors, runs
against both."""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CASES, compiled_bundle
from ofrep_support import hiding_the_extra, serving_here

from expc.tools.serve import listen, make_server

BUNDLE = json.dumps(compiled_bundle(CASES / "evaluate" / "prerequisites" / "definitions"))


@dataclass
class Served:
    root: Path
    port: int


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


@pytest.fixture(params=["threads", "uvicorn"])
def served(
    request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> Iterator[Served]:
    caplog.set_level(logging.INFO, logger="expc.serve")
    (tmp_path / "secret.txt").write_text("outside the served directory\n")
    root = tmp_path / "generated"
    (root / "schema").mkdir(parents=True)
    (root / "bundle.json").write_text(BUNDLE)
    (root / "schema" / "bundle.schema.json").write_text('{"type": "object"}\n')
    (root / "a b.json").write_text("[]\n")
    (root / ".bundle.json.tmp").write_text("half written\n")
    (root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (root / "latest.json").symlink_to(root / "bundle.json")
    if request.param == "uvicorn":
        with serving_here(root) as (_serving, port):
            yield Served(root, port)
        return
    server = make_server(root, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Served(root, int(server.server_address[1]))
    server.shutdown()
    server.server_close()


def exchange(port: int, request: bytes) -> Response:
    """Send raw bytes, read the whole answer (the server closes after each one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        answer = bytearray()
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = bytes(answer).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    # Names in lower case: uvicorn writes them so, the threads capitalised.
    headers = {
        name.lower(): value for name, value in (line.split(": ", 1) for line in header_lines)
    }
    return Response(int(status_line.split()[1]), headers, body)


def request(port: int, method: str, path: str, *headers: str) -> Response:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return exchange(port, "\r\n".join(lines).encode("latin-1"))


def test_head_answers_like_get_without_a_body(served: Served) -> None:
    got = request(served.port, "GET", "/bundle.json")
    head = request(served.port, "HEAD", "/bundle.json")
    assert head.status == got.status == 200
    assert head.body == b"" and got.body == (served.root / "bundle.json").read_bytes()
    for name in ("etag", "content-length", "content-type", "cache-control"):
        assert head.headers[name] == got.headers[name]
    assert int(head.headers["content-length"]) == len(got.body)
    unchanged = request(
        served.port, "HEAD", "/bundle.json", f"If-None-Match: {got.headers['etag']}"
    )
    assert unchanged.status == 304 and unchanged.body == b""
    assert unchanged.headers["etag"] == got.headers["etag"]
    missing = request(served.port, "HEAD", "/nothing-here.json")
    assert missing.status == 404 and missing.body == b""


def test_etags_follow_the_file_and_match_any_listed_tag(served: Served) -> None:
    first = request(served.port, "GET", "/bundle.json")
    etag = first.headers["etag"]
    listed = request(served.port, "GET", "/bundle.json", f'If-None-Match: "other", W/{etag}')
    assert listed.status == 304 and listed.body == b""
    (served.root / "bundle.json").write_text('{"changed": true}\n')  # a new compile
    fresh = request(served.port, "GET", "/bundle.json", f"If-None-Match: {etag}")
    assert fresh.status == 200 and fresh.body == b'{"changed": true}\n'
    assert fresh.headers["etag"] != etag


def test_nul_byte_in_the_path_is_refused_and_logged_on_one_escaped_line(
    served: Served, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    answer = exchange(served.port, b"GET /bundle\x00.json HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.status == 400
    assert request(served.port, "GET", "/bundle.json").status == 200  # still serving
    lines = [record.getMessage() for record in caplog.records]
    # The threads log the path escaped; uvicorn's parser refuses it before any path.
    assert lines[0] in (
        '127.0.0.1 "GET /bundle\\x00.json HTTP/1.1" 400 -',
        "Invalid HTTP request received.",
    ), lines
    assert len(lines) == 2 and not any(record.exc_info for record in caplog.records)
    assert "Traceback" not in capfd.readouterr().err


ODD_PATHS = {
    "escaped NUL": (b"/%00", 400),
    "terminal escape": (b"/\x1b[2J\x1b[31mred", 400),
    "carriage return": (b"/a\rb", 400),
    "invalid percent escape": (b"/%zz.json", 400),
    "truncated percent escape": (b"/bundle.json%2", 400),
    "not UTF-8 once decoded": (b"/%ff%fe", 400),
    "raw non-ASCII": ("/caf\u00e9".encode(), 400),
    "C1 control": (b"/\x9b31m", 400),
    "over-long": (b"/" + b"a" * 5000, 414),
    "not a path": (b"bundle.json", 400),
}


@pytest.mark.parametrize("path,status", ODD_PATHS.values(), ids=ODD_PATHS.keys())
def test_odd_request_paths_get_a_client_error_and_an_escaped_log_line(
    served: Served,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    path: bytes,
    status: int,
) -> None:
    assert exchange(served.port, b"GET " + path + b" HTTP/1.1\r\n\r\n").status == status
    (line,) = [record.getMessage() for record in caplog.records]
    assert line.isascii() and line.isprintable(), line
    assert len(line) < 400  # a megabyte of path does not become a megabyte of log
    assert "Traceback" not in capfd.readouterr().err


TRAVERSALS = [
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/%2E%2E%2Fsecret.txt",
    "/schema/..%2f..%2fsecret.txt",
    "/schema/%2e%2e/%2e%2e/secret.txt",
    "/./bundle.json",
    "/leak.txt",  # a symbolic link that leads out of the directory
    "/.bundle.json.tmp",  # the temporary file of an atomic write
    "/schema",  # directories are not listed
    "/schema/",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_nothing_outside_the_directory_and_no_listings(served: Served, path: str) -> None:
    answer = request(served.port, "GET", path)
    assert answer.status == 404
    assert b"outside the served directory" not in answer.body
    assert b"bundle.schema.json" not in answer.body


def test_paths_are_percent_decoded_and_links_inside_are_followed(served: Served) -> None:
    assert request(served.port, "GET", "/a%20b.json").body == b"[]\n"
    assert request(served.port, "GET", "/schema%2Fbundle.schema.json").status == 200
    assert (
        request(served.port, "GET", "/latest.json?cache=no").body
        == (served.root / "bundle.json").read_bytes()
    )
    assert request(served.port, "GET", "/").body == (served.root / "bundle.json").read_bytes()
    assert request(served.port, "POST", "/bundle.json").status == 501


@pytest.mark.parametrize("kind", ["threads", "uvicorn"])
def test_a_burst_of_200_connections_is_queued_not_dropped(tmp_path: Path, kind: str) -> None:
    """The server is busy (not accepting) while 200 clients connect: the kernel must
    queue every one. With the standard backlog of 5 it queues 6 and drops the rest,
    whose TCP then retries after one second, three, seven: seconds of p99 latency."""
    if kind == "threads":
        listening = make_server(tmp_path, "127.0.0.1", 0).socket
    else:
        listening = listen(socket.AF_INET, "127.0.0.1", 0)
    clients = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(200)]
    try:
        for client in clients:
            client.setblocking(False)
            client.connect_ex(listening.getsockname())
        pending = set(clients)
        # Queued connections complete at once; the deadline only bounds a failing run.
        while pending:
            _, writable, _ = select.select([], list(pending), [], 3)
            if not writable:
                break
            pending -= set(writable)
        connected = [
            c
            for c in clients
            if c not in pending and not c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        ]
        assert len(connected) == 200
    finally:
        for client in clients:
            client.close()
        listening.close()


def expc(*arguments: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "expc", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def finished(*arguments: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    process = expc(*arguments, env=env)
    _out, err = process.communicate(timeout=60)
    return process.returncode, err


@pytest.fixture(params=["with the extra", "without the extra"])
def extra(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The command's environment: with the `serve` extra (uvicorn) or as if without it,
    where the standard library's server runs the files alone; errors must not differ."""
    if request.param == "with the extra":
        return {}
    return hiding_the_extra(tmp_path_factory.mktemp("shim"))


@pytest.mark.parametrize("port", ["99999", "65536", "-1"])
def test_a_port_out_of_range_is_a_usage_error(
    tmp_path: Path, port: str, extra: dict[str, str]
) -> None:
    status, err = finished("serve", str(tmp_path), "--port", port, env=extra)
    assert status == 2
    assert f"--port {port}: a port is 0-65535" in err and "Traceback" not in err


def test_an_unusable_host_or_a_taken_port_is_a_usage_error(
    tmp_path: Path, extra: dict[str, str]
) -> None:
    token = tmp_path / "token"
    token.write_text("a" * 32)
    token.chmod(0o600)
    # 192.0.2.1 is reserved for documentation: no machine has it, so binding fails.
    status, err = finished(
        "serve",
        str(tmp_path),
        *("--host", "192.0.2.1", "--port", "0", "--token-file", str(token)),
        env=extra,
    )
    assert status == 2 and "--host '192.0.2.1'" in err and "cannot listen there" in err
    status, err = finished("serve", str(tmp_path), "--host", "no-such-host.invalid", env=extra)
    assert status == 2 and "--host 'no-such-host.invalid'" in err and "Traceback" not in err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        status, err = finished("serve", str(tmp_path), "--port", port, env=extra)
    assert status == 2 and "Address already in use" in err and "Traceback" not in err


def test_serve_command_listens_on_loopback_and_answers_head(
    tmp_path: Path, extra: dict[str, str]
) -> None:
    (tmp_path / "bundle.json").write_text(BUNDLE)
    process = expc("serve", str(tmp_path), "--port", "0", env=extra)
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert banner.startswith(f"serving {tmp_path} at http://127.0.0.1:"), banner
        url = banner.split(" at ")[1].split()[0]
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as response:
            assert response.status == 200
            assert response.headers["content-length"] == str(len(BUNDLE))
            assert response.read() == b""
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=10)
    assert '"HEAD /bundle.json HTTP/1.1" 200' in err  # the operator sees each request


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_serve_listens_on_an_ipv6_loopback(tmp_path: Path) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured")
    (tmp_path / "bundle.json").write_text(BUNDLE)
    process = expc("serve", str(tmp_path), "--host", "::1", "--port", "0")
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split(" at ")[1].split()[0]
        assert url.startswith("http://[::1]:")
        with urllib.request.urlopen(url) as response:
            assert response.read() == BUNDLE.encode()
    finally:
        process.terminate()
        process.communicate(timeout=10)
