"""Evaluation speed on the standard scenario (benchmarks/scenario.py), in one run:

- expc's evaluator: microseconds per user (all 10 flags) and per flag;
- Amplitude's Python engine (`amplitude-experiment`, if installed) on the equivalent
  config written by the `amplitude` target, and the ratio;
- the numpy batch path (`expc[batch]`, if installed) on 1,000,000 users.

    python benchmarks/bench_evaluate.py [--users 100000] [--batch-users 1000000]

Times are the best of several rounds, to keep the machine's noise out.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from scenario import scenario_bundle

from expc.outputs.targets.amplitude import export
from expc.sdk.evaluate import Evaluator

FLAGS = 10


def best_of(rounds: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--batch-users", type=int, default=1_000_000)
    args = parser.parse_args()
    bundle = scenario_bundle()
    users = [{"user_id": f"user-{i}"} for i in range(args.users)]
    python = sys.version.split()[0]
    print(f"cores: {os.cpu_count()}, python {python}, {args.users:,} users, {FLAGS} flags")

    evaluate = Evaluator(bundle).evaluate
    expc = best_of(5, lambda: [evaluate(user) for user in users]) / args.users * 1e6
    print(f"expc evaluator      {expc:8.2f} us/user {expc / FLAGS:8.3f} us/flag")

    try:
        from amplitude_experiment.evaluation.engine import EvaluationEngine
        from amplitude_experiment.evaluation.types import EvaluationFlag
    except ImportError:
        print("amplitude engine    not installed (pip install amplitude-experiment)")
    else:
        exported = export(bundle)  # type: ignore[arg-type]
        flags = [EvaluationFlag.from_dict(flag) for flag in exported["flags"]]
        engine = EvaluationEngine()
        sample = users[: max(1, args.users // 10)]  # it is slow; a tenth is plenty
        contexts = [{"user": user} for user in sample]
        amplitude = best_of(2, lambda: [engine.evaluate(c, flags) for c in contexts])
        amplitude = amplitude / len(sample) * 1e6
        print(f"amplitude engine    {amplitude:8.2f} us/user {amplitude / FLAGS:8.3f} us/flag")
        print(f"ratio               {amplitude / expc:8.1f} x faster")

    try:
        from expc.sdk.batch import assign
    except ImportError:
        print("batch path          numpy not installed (pip install 'expc[batch]')")
        return
    ids = [f"user-{i}" for i in range(args.batch_users)]
    evaluator = Evaluator(bundle)
    batch = best_of(3, lambda: assign(evaluator, ids))
    print(f"batch (numpy)       {batch:8.3f} s for {args.batch_users:,} users x {FLAGS} flags")


if __name__ == "__main__":
    main()
