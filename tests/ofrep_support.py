"""What the OFREP tests share: a small company's definitions (one of each outcome),
their bundles, an `expc serve` in this process or as a command, and HTTP by hand."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import compiled_bundle

from expc.tools.serve import Serving, open_serving

DEFINITIONS = {
    "project.yaml": "kind: project\nkey: project\nbucketing: {by: user_id}\n",
    # Running, targeted to two countries, a payload on one variant, a tester override.
    "banner.yaml": """\
kind: experiment
key: banner
state: running
traffic: 100
variants:
  - key: control
  - key: blue
    payload: {color: blue, size: 2}
targeting:
  all:
    - {attribute: country, op: in, values: [NO, SE]}
overrides:
  blue: [qa-anna]
""",
    "draft-idea.yaml": """\
kind: experiment
key: draft-idea
variants: [{key: control}, {key: idea}]
""",
    "old-test.yaml": """\
kind: experiment
key: old-test
state: concluded
rollout: winner
variants: [{key: control}, {key: winner}]
""",
    "by-account.yaml": """\
kind: experiment
key: by-account
state: running
bucketing: {by: account_id}
variants: [{key: control}, {key: treatment}]
""",
    "hold.yaml": """\
kind: holdout
key: hold
percent: 10
members: {experiments: [banner]}
""",
}


def write_definitions(folder: Path, **replaced: str) -> Path:
    """The definitions above in `folder`, with some files' text replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {**DEFINITIONS, **replaced}.items():
        (folder / name).write_text(text)
    return folder


def hiding_the_extra(folder: Path) -> dict[str, str]:
    """Environment variables under which `import uvicorn` fails in a child process, as
    where the `serve` extra is not installed (a module in `folder` shadows it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "uvicorn.py").write_text("raise ImportError('not installed', name='uvicorn')\n")
    return {"PYTHONPATH": os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])}


def bundle_bytes(definitions: Path) -> bytes:
    return json.dumps(compiled_bundle(definitions)).encode()


def content_id(bundle: bytes) -> str:
    identifier: str = json.loads(bundle)["release"]["content_id"]
    return identifier


def replace_atomically(path: Path, data: bytes) -> None:
    """What a compile does: write beside, then rename over."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    temporary.replace(path)


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def post(
    port: int, path: str, body: bytes | dict[str, Any] | None = None, **headers: str
) -> Response:
    """One request on a fresh connection (header names with _ for -)."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        sent = {name.replace("_", "-"): value for name, value in headers.items()}
        method = sent.pop("method", "POST")
        connection.request(method, path, body=data, headers=sent)
        answer = connection.getresponse()
        return Response(
            answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        )
    finally:
        connection.close()


def exchange(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Raw bytes in, everything the server sends until it closes, out."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        connection.sendall(request)
        answer = bytearray()
        while chunk := connection.recv(65536):
            answer += chunk
    return bytes(answer)


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


@contextmanager
def serving_here(root: Path, **options: Any) -> Iterator[tuple[Serving, int]]:
    """`expc serve ROOT` in a thread of this process, on a free loopback port."""
    serving = open_serving(root, "127.0.0.1", 0, **options)
    thread = threading.Thread(target=serving.run, daemon=True)
    thread.start()
    try:
        yield serving, int(serving.url.split(":")[2].split("/")[0])
    finally:
        serving.stop()
        thread.join(timeout=10)


@dataclass
class Command:
    process: subprocess.Popen[str]
    banner: list[str]  # the lines printed before serving
    port: int
    log: Path  # what it writes on stderr (a file: a pipe nobody reads would fill and stall it)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        """Stop it; everything it wrote on stderr."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.communicate(timeout=15)
        return self.log.read_text()


@contextmanager
def serving_command(*arguments: str, env: dict[str, str] | None = None) -> Iterator[Command]:
    """`expc serve ARGUMENTS --port 0` as a separate process, as a user runs it."""
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "stderr"
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "expc", "serve", *arguments, "--port", "0"],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env={**os.environ, **(env or {})},
            )
        assert process.stdout is not None
        banner = [process.stdout.readline(), process.stdout.readline()]
        if not banner[0]:
            process.wait(timeout=15)
            raise AssertionError(f"expc serve did not start: {log.read_text()}")
        url = banner[0].split(" at ")[1].split()[0]
        command = Command(process, banner, int(url.split(":")[2].split("/")[0]), log)
        try:
            yield command
        finally:
            command.stop()
