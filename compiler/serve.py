"""`expc serve`: the generated/ directory over HTTP with ETags, for local development.

Only files directly under the directory and its subdirectories are served, read fresh
on every request (so a new `expc compile` is visible at once); the ETag is the
sha256 of the content, and a matching If-None-Match gets 304 Not Modified.
"""

from __future__ import annotations

import hashlib
import http.server
import mimetypes
from pathlib import Path
from typing import Any


def make_handler(root: Path) -> type[http.server.BaseHTTPRequestHandler]:
    base = root.resolve()

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "expc-serve"

        def do_GET(self) -> None:
            relative = self.path.split("?", 1)[0].lstrip("/") or "bundle.json"
            target = (base / relative).resolve()
            if base not in target.parents or not target.is_file():
                self.send_error(404, "not found")
                return
            body = target.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest() + '"'
            if self.headers.get("If-None-Match") == etag:
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            self.send_response(200)
            kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            if getattr(self.server, "quiet", False):
                return
            super().log_message(format, *args)

    return Handler


def make_server(
    root: Path, host: str = "127.0.0.1", port: int = 8000
) -> http.server.ThreadingHTTPServer:
    return http.server.ThreadingHTTPServer((host, port), make_handler(root))
