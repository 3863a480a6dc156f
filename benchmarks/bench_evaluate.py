"""Evaluation speed on the standard scenario (benchmarks/scenario.py), in one run:

- expc's evaluator: microseconds per user (all 10 flags) and per flag;
- the same with exposures on, into a JSON-lines file: users seen before (the window
  de-duplicates their events; delivery included) and users seen for the first time
  (every exposure becomes an event), with the time on the evaluating thread and the
  time the delivery thread then takes to write their events, apart;
- Eppo's SDK (`eppo-server-sdk`, a Rust core, if installed) on the same scenario in
  its own configuration, without and with assignment logging;
- Amplitude's Python engine (`amplitude-experiment`, if installed) on the equivalent
  config written by the `amplitude` target, and the ratio;
- the numpy batch path (`expc[batch]`, if installed) on 1,000,000 users, in order and
  shuffled, and on 200,000 short ids with one of 3,000 bytes.

    python benchmarks/bench_evaluate.py [--users 100000] [--batch-users 1000000]

For the memory of the batch path, one assignment alone in its own process, to run
under `/usr/bin/time -v` (peak memory is its "Maximum resident set size"):

    /usr/bin/time -v python benchmarks/bench_evaluate.py --batch-only short
    /usr/bin/time -v python benchmarks/bench_evaluate.py --batch-only wide

`short` is 200,000 ids `user-N`; `wide` the same with the last one replaced by an id
of 3,000 bytes.

Times are the best of several rounds, to keep the machine's noise out.
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from scenario import scenario_bundle, scenario_eppo_configuration

from expc.outputs.targets.amplitude import export
from expc.sdk.evaluate import Evaluator
from expc.sdk.exposures import Exposures
from expc.sdk.sinks import JsonLinesSink

FLAGS = 10


def best_of(rounds: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def line(name: str, per_user: float, note: str = "") -> None:
    print(f"{name:34} {per_user:7.2f} us/user {per_user / FLAGS:7.3f} us/flag  {note}".rstrip())


def evaluator_figures(users: list[dict[str, Any]], rounds: int) -> float:
    bundle = scenario_bundle()
    evaluate = Evaluator(bundle).evaluate

    def every_user() -> None:
        # Results are dropped as an application drops them: keeping 100,000 of them
        # would time the garbage collector walking them.
        for user in users:
            evaluate(user)

    plain = best_of(rounds, every_user) / len(users) * 1e6
    line("expc evaluator", plain)
    with tempfile.TemporaryDirectory() as folder:
        sink = JsonLinesSink(Path(folder) / "exposures.jsonl", max_bytes=1 << 40)
        # Delivery only when this benchmark flushes (no batch fills, no interval ends),
        # so that the evaluating thread and the delivery are timed apart.
        exposures = Exposures(
            sink,
            window=len(users) * (rounds + 2),
            capacity=len(users) + 1,
            batch_size=len(users) + 1,
            flush_interval=3600.0,
        )
        exposing = Evaluator(bundle, exposures=exposures)

        def seen_before() -> None:
            for user in users:
                exposing.evaluate(user)
            exposures.flush()  # delivery counts: nothing is left for later

        seen_before()  # the first round makes the events; the rest find them in the window
        repeat = best_of(rounds, seen_before) / len(users) * 1e6
        line("  with exposures, users seen", repeat, f"+{repeat - plain:.2f} us/user")
        fresh = [[{"user_id": f"r{n}-{u['user_id']}"} for u in users] for n in range(rounds)]
        evaluating, delivering = [], []
        for batch in fresh:
            start = time.perf_counter()
            for user in batch:
                exposing.evaluate(user)
            middle = time.perf_counter()
            exposures.flush()
            evaluating.append(middle - start)
            delivering.append(time.perf_counter() - middle)
        events = exposures.counters.delivered
        per_user = 1e6 / len(users)
        new = min(evaluating) * per_user
        delivery = min(delivering) * per_user
        line("  with exposures, users new", new, f"+{new - plain:.2f} us/user, evaluating thread")
        line(
            "    their delivery (JSON lines)",
            delivery,
            f"on the delivery thread ({events:,} events in all)",
        )
        exposing.close()
    return plain


def eppo_figures(users: list[dict[str, Any]], rounds: int, expc: float) -> None:
    try:
        # Imported by name: it is no dependency of expc, and type checking runs without it.
        eppo_client: Any = importlib.import_module("eppo_client")
    except ImportError:
        print("eppo                               not installed (pip install eppo-server-sdk)")
        return

    class Discard(eppo_client.AssignmentLogger):  # type: ignore[misc]
        def log_assignment(self, event: dict[str, Any]) -> None:
            pass

    keys = ["global-holdout", "main-group", *(f"experiment-{i}" for i in range(1, 9))]
    subjects = [user["user_id"] for user in users]
    attributes: dict[str, Any] = {}
    for log in (False, True):
        client = eppo_client.init(
            eppo_client.ClientConfig(
                api_key="benchmark",
                assignment_logger=Discard(),
                initial_configuration=eppo_client.Configuration(
                    flags_configuration=scenario_eppo_configuration(log)
                ),
                poll_interval_seconds=None,
            )
        )
        assign = client.get_string_assignment

        def every_flag(assign: Any = assign) -> None:
            for subject in subjects:
                for key in keys:
                    assign(key, subject, attributes, "")

        eppo = best_of(rounds, every_flag) / len(users) * 1e6
        name = "eppo (Rust core), logging" if log else "eppo (Rust core)"
        line(name, eppo, f"expc is {eppo / expc:.1f}x faster")


def amplitude_figures(users: list[dict[str, Any]], expc: float) -> None:
    try:
        from amplitude_experiment.evaluation.engine import EvaluationEngine
        from amplitude_experiment.evaluation.types import EvaluationFlag
    except ImportError:
        print("amplitude engine                   not installed (pip install amplitude-experiment)")
        return
    exported = export(scenario_bundle())  # type: ignore[arg-type]
    flags = [EvaluationFlag.from_dict(flag) for flag in exported["flags"]]
    engine = EvaluationEngine()
    sample = users[: max(1, len(users) // 10)]  # it is slow; a tenth is plenty
    contexts = [{"user": user} for user in sample]
    amplitude = best_of(2, lambda: [engine.evaluate(c, flags) for c in contexts])
    amplitude = amplitude / len(sample) * 1e6
    line("amplitude engine", amplitude, f"expc is {amplitude / expc:.1f}x faster")


def batch_figures(count: int) -> None:
    try:
        from expc.sdk.batch import assign
    except ImportError:
        print("batch path         numpy not installed (pip install 'expc[batch]')")
        return
    evaluator = Evaluator(scenario_bundle())
    ids = [f"user-{i}" for i in range(count)]
    ordered = best_of(3, lambda: assign(evaluator, ids))
    print(f"batch (numpy)      {ordered:7.3f} s for {count:,} users x {FLAGS} flags")
    shuffled = ids[:]
    random.Random(7).shuffle(shuffled)
    mixed = best_of(3, lambda: assign(evaluator, shuffled))
    print(f"  ids shuffled     {mixed:7.3f} s")
    short, wide = wide_id_cases()
    print(
        f"  200,000 ids      {best_of(3, lambda: assign(evaluator, short)):7.3f} s; "
        f"one of them 3,000 bytes long: {best_of(3, lambda: assign(evaluator, wide)):.3f} s"
    )


def wide_id_cases() -> tuple[list[str], list[str]]:
    """200,000 short ids, and the same with one id of 3,000 bytes instead of the last."""
    short = [f"user-{i}" for i in range(200_000)]
    return short, [*short[:-1], "w" * 3_000]


def batch_only(case: str) -> None:
    """One assignment of one case, alone in this process, for `/usr/bin/time -v`."""
    from expc.sdk.batch import assign

    evaluator = Evaluator(scenario_bundle())
    short, wide = wide_id_cases()
    ids = wide if case == "wide" else short
    start = time.perf_counter()
    assign(evaluator, ids)
    elapsed = time.perf_counter() - start
    widest = max(len(i.encode("utf-8")) for i in ids)
    print(f"batch of {len(ids):,} ids (widest {widest:,} bytes): {elapsed:.3f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--batch-users", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--batch-only",
        choices=["short", "wide"],
        help="only one batch assignment of 200,000 ids, short or with one 3,000-byte id",
    )
    args = parser.parse_args()
    if args.batch_only:
        batch_only(args.batch_only)
        return
    users = [{"user_id": f"user-{i}"} for i in range(args.users)]
    python = sys.version.split()[0]
    print(f"cores: {os.cpu_count()}, python {python}, {args.users:,} users, {FLAGS} flags")
    expc = evaluator_figures(users, args.rounds)
    eppo_figures(users, args.rounds, expc)
    amplitude_figures(users, expc)
    batch_figures(args.batch_users)


if __name__ == "__main__":
    main()
