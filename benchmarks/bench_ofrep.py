"""OFREP throughput and latency of `expc serve`, a bounded load test run by hand:

    python benchmarks/bench_ofrep.py [DIRECTORY] [--clients 50] [--seconds 10]
                                     [--rate N] [--bulk] [--no-pin]

Starts `expc serve DIRECTORY --port 0` (default: a bundle compiled from this
repository's definitions, whatever its layout) and has `--clients` keep-alive
connections send single evaluations (POST /ofrep/v1/evaluate/flags/KEY, a random flag
and one of 10,000 users each time) for `--seconds` after one second of warm-up.
Without `--rate` every client sends its next request as soon as the last is answered
(closed loop: the throughput is the server's ceiling); with `--rate N` the clients
together send N requests a second on a fixed schedule (open loop), and each latency is
counted from when its request was due, so a stalled server shows in the percentiles
instead of slowing the clients down.

The load generator competes with the server for the cores. On Linux the server is
pinned to core 0 and this process to the last core (`--no-pin`: neither), so each has
one; the figures printed include both processes' CPU use, to show which one was the
limit, and the load average before the run: on a machine busy with other work the
latency percentiles measure that work too. Prints the core count, requests, errors,
throughput, the p50/p90/p99/max latency, and the server's CPU per answer beside the
time `expc.sdk` takes in process for the same evaluations (after the load, on the load
generator's core). Nothing here is asserted: it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

REPO = Path(__file__).resolve().parent.parent


def default_directory(scratch: Path) -> Path:
    """generated/ compiled afresh from the repository's definitions into `scratch`."""
    out = scratch / "generated"
    subprocess.run(
        [sys.executable, "-m", "expc", "compile", str(REPO / "definitions"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


def bundle_of(directory: Path) -> tuple[Path, list[str]]:
    """The served bundle (the first environment's when there are several) and the
    --env arguments that choose it."""
    if (directory / "bundle.json").is_file():
        return directory / "bundle.json", []
    for folder in sorted(directory.iterdir()):
        if (folder / "bundle.json").is_file():
            return folder / "bundle.json", ["--env", folder.name]
    raise SystemExit(f"no bundle.json in {directory}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux); 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Client(asyncio.Protocol):
    """One keep-alive connection: send a request, read the whole answer, repeat."""

    def __init__(self, requests: list[bytes], run: Run) -> None:
        self.requests = requests
        self.run = run
        self.buffer = bytearray()
        self.answered: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0 or self.answered is None:
            return
        head = bytes(self.buffer[:head_end]).lower()
        length = 0
        at = head.find(b"content-length:")
        if at >= 0:
            length = int(head[at + 15 :].split(b"\r\n", 1)[0])
        if len(self.buffer) < head_end + 4 + length:
            return
        status = int(self.buffer[9:12])
        del self.buffer[: head_end + 4 + length]
        if not self.answered.done():
            self.answered.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answered is not None and not self.answered.done():
            self.answered.set_exception(ConnectionError("closed"))

    async def exchange(self, request: bytes) -> int:
        assert self.transport is not None
        self.answered = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.answered


class Run:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.measuring = False

    def error(self, what: str) -> None:
        if self.measuring:
            self.errors[what] = self.errors.get(what, 0) + 1


async def client_loop(
    host: str, port: int, requests: list[bytes], run: Run, until: float, interval: float | None
) -> None:
    loop = asyncio.get_running_loop()
    _transport, client = await loop.create_connection(lambda: Client(requests, run), host, port)
    due = time.perf_counter() + (random.random() * interval if interval else 0.0)
    while (now := time.perf_counter()) < until:
        if interval:
            if now < due:
                await asyncio.sleep(due - now)
            began = due  # counted from when it was due: stalls show, not hide
            due += interval
        else:
            began = now
        try:
            status = await client.exchange(random.choice(requests))
        except ConnectionError:
            run.error("connection closed")
            _transport, client = await loop.create_connection(
                lambda: Client(requests, run), host, port
            )
            continue
        if run.measuring:
            run.latencies.append(time.perf_counter() - began)
        if status != 200:
            run.error(f"status {status}")


async def load(
    host: str,
    port: int,
    requests: list[bytes],
    clients: int,
    seconds: float,
    rate: float | None,
    server_pid: int,
) -> tuple[Run, float, float, float]:
    run = Run()
    warmup = 1.0
    start = time.perf_counter()
    until = start + warmup + seconds
    interval = clients / rate if rate else None
    tasks = [
        asyncio.create_task(client_loop(host, port, requests, run, until, interval))
        for _ in range(clients)
    ]
    await asyncio.sleep(warmup)
    run.measuring = True
    measured_from = time.perf_counter()
    own_cpu, server_cpu = time.process_time(), cpu_seconds(server_pid)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - measured_from
    own_cpu, server_cpu = time.process_time() - own_cpu, cpu_seconds(server_pid) - server_cpu
    return run, elapsed, own_cpu, server_cpu


COUNTRIES = ["NO", "SE", "DE", "US", "FR"]
USERS = 10_000


def requests_for(bundle: Path, host: str, bulk: bool) -> list[bytes]:
    keys = [flag["key"] for flag in json.loads(bundle.read_bytes())["flags"]]
    made = []
    for index in range(USERS):
        context = {"targetingKey": f"user-{index}", "country": COUNTRIES[index % 5]}
        body = json.dumps({"context": context}).encode()
        path = "/ofrep/v1/evaluate/flags" + ("" if bulk else f"/{keys[index % len(keys)]}")
        made.append(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
    return made


def in_process(bundle: Path, bulk: bool) -> float:
    """Microseconds per evaluation of the same users and flags by `expc.sdk` in this
    process (the median of 5 rounds): what OFREP adds is the difference."""
    from expc.sdk import Evaluator

    evaluator = Evaluator(bundle.read_bytes())
    keys = [flag["key"] for flag in json.loads(bundle.read_bytes())["flags"]]
    work = [
        ({"user_id": f"user-{index}", "country": COUNTRIES[index % 5]}, keys[index % len(keys)])
        for index in range(USERS)
    ]
    rounds = []
    for _round in range(5):
        began = time.perf_counter()
        for user, key in work:
            evaluator.evaluate(user) if bulk else evaluator.evaluate(user, key)
        rounds.append((time.perf_counter() - began) / len(work) * 1e6)
    return sorted(rounds)[2]


def percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", nargs="?", help="a generated/ folder (default: compiled)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, help="requests per second in all (open loop)")
    parser.add_argument("--bulk", action="store_true", help="bulk evaluations instead")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the processes")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    pin = not args.no_pin and hasattr(os, "sched_setaffinity") and cores >= 2
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(args.directory) if args.directory else default_directory(Path(scratch))
        bundle, env = bundle_of(directory)
        log = Path(scratch) / "serve.log"
        with log.open("w") as log_file:
            server = subprocess.Popen(
                [sys.executable, "-m", "expc", "serve", str(directory), "--port", "0", *env],
                stdout=subprocess.PIPE,
                stderr=log_file,
                text=True,
                preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if pin else None,
            )
            try:
                assert server.stdout is not None
                url = server.stdout.readline().split(" at ")[1].split()[0]
                host, port_text = url.removeprefix("http://").split("/", 1)[0].rsplit(":", 1)
                host, port = host.strip("[]"), int(port_text)
                if pin:
                    os.sched_setaffinity(0, {cores - 1})
                try:
                    import uvloop

                    uvloop.install()
                except ImportError:
                    pass
                requests = requests_for(bundle, host, args.bulk)
                run, elapsed, own_cpu, server_cpu = asyncio.run(
                    load(
                        host,
                        port,
                        requests,
                        args.clients,
                        args.seconds,
                        args.rate,
                        server.pid,
                    )
                )
            finally:
                server.terminate()
                server.wait(timeout=10)
        logged = sum(1 for _ in log.open())
        evaluating = in_process(bundle, args.bulk)

    ordered = sorted(run.latencies)
    kind = "bulk" if args.bulk else "single"
    mode = f"open loop at {args.rate:,.0f}/s" if args.rate else "closed loop"
    placement = "server on core 0, load generator on core 1" if pin else "not pinned"
    print(
        f"cores: {cores} ({placement}); load average {busy:.2f} before the run; "
        f"python {sys.version.split()[0]}; {bundle}"
    )
    print(
        f"{args.clients} clients, {kind} evaluations, {mode}, {elapsed:.1f} s measured: "
        f"{len(ordered):,} answered, {sum(run.errors.values())} errors, "
        f"{len(ordered) / elapsed:,.0f} evaluations/s"
    )
    if ordered:
        print(
            "latency  "
            + "  ".join(
                f"{name} {percentile(ordered, share) * 1000:.2f} ms"
                for name, share in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
            )
        )
    print(
        f"cpu: server {server_cpu / elapsed:.0%} of a core, "
        f"load generator {own_cpu / elapsed:.0%} of a core; {logged:,} log lines"
    )
    if ordered:
        print(
            f"per answer: {server_cpu / len(ordered) * 1e6:.0f} us of the server's CPU; "
            f"expc.sdk in process, same users and flags: {evaluating:.1f} us"
        )
    for what, count in sorted(run.errors.items()):
        print(f"error: {what} x {count}")


if __name__ == "__main__":
    main()
