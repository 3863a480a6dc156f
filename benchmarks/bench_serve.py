"""Latency of `expc serve` under a burst of concurrent clients, run by hand:

    python benchmarks/bench_serve.py [--clients 200] [--requests 10] [DIRECTORY]

Starts `expc serve DIRECTORY --port 0` (default: this repository's generated/) in a
subprocess, releases every client at once, and has each fetch /bundle.json
`--requests` times, one new connection per request (what pollers do). Prints the
latency percentiles of all requests and the throughput. A listen backlog that is too
short shows as a p99 of one second or more: the kernel drops the connections it
cannot queue and the clients' TCP retries them after a second.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def fetch(host: str, port: int, path: str) -> int:
    """One GET on a fresh connection; returns the status code."""
    with socket.create_connection((host, port), timeout=30) as connection:
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode("ascii"))
        response = bytearray()
        while chunk := connection.recv(65536):
            response += chunk
    return int(response.split(b" ", 2)[1])


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", default=str(REPO / "generated"))
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--requests", type=int, default=10, help="per client")
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "expc", "serve", args.directory, "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        url = banner.split(" at ")[1].split()[0]
        host, port_text = url.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)
        host, port = host.strip("[]"), int(port_text)
        latencies: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(args.clients + 1)

        def client() -> None:
            start.wait()
            mine = []
            for _ in range(args.requests):
                began = time.perf_counter()
                try:
                    status = fetch(host, port, "/bundle.json")
                except OSError as error:
                    with lock:
                        failures.append(repr(error))
                    continue
                mine.append(time.perf_counter() - began)
                if status != 200:
                    with lock:
                        failures.append(f"status {status}")
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        for thread in threads:
            thread.start()
        start.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(timeout=10)

    ordered = sorted(latencies)
    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}, {url}")
    print(
        f"{args.clients} concurrent clients x {args.requests} requests: "
        f"{len(ordered)} answered, {len(failures)} failed, {len(ordered) / elapsed:,.0f} req/s"
    )
    if ordered:
        figures = "  ".join(
            f"{name} {percentile(ordered, share) * 1000:7.1f} ms"
            for name, share in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("max", 1.0))
        )
        print(figures)
    for failure in sorted(set(failures))[:5]:
        print(f"failure: {failure}")


if __name__ == "__main__":
    main()
