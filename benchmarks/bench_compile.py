"""Time `expc validate`, `expc compile` and `expc check` on synthetic repositories.

    python benchmarks/bench_compile.py [100 1000 10000 100000]

Each command runs as its own process, exactly as a user runs it, on a tree made by
`generate.py` under benchmarks/.work/ (not committed). `check` compares that tree
with a second release of it in which 1% of the experiments changed. Printed: wall
time of each command and the peak resident memory of the largest process of the run.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
WORK = HERE / ".work"
DEFAULT_SIZES = [100, 1_000, 10_000, 100_000]


def child(arguments: list[str]) -> None:
    """Run one expc command in this process; report its time and peak memory."""
    from expc.cli import main as expc

    report = sys.stdout
    sys.stdout = sys.stderr = Path(os.devnull).open("w")  # noqa: SIM115 - until exit
    start = time.perf_counter()
    status = expc(arguments)
    elapsed = time.perf_counter() - start
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    helpers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    report.write(json.dumps({"status": status, "seconds": elapsed, "kib": max(own, helpers)}))


def run(arguments: list[str]) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, __file__, "--child", *arguments],
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(result.stdout)
    if figures["status"] != 0:
        raise SystemExit(f"expc {' '.join(arguments)} exited {figures['status']}")
    return figures


def main(sizes: list[int]) -> None:
    sys.path.insert(0, str(HERE))
    from generate import generate

    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    header = (
        f"{'experiments':>12} {'validate s':>11} {'compile s':>10} {'sum s':>7} {'peak MiB':>9}"
    )
    print(header)
    for size in sizes:
        root = WORK / str(size)
        definitions = generate(size, root)
        validate = run(["validate", str(definitions)])
        compiled = run(["compile", str(definitions), "--out", str(root / "generated")])
        changed = generate(size, WORK / f"{size}-next", change_percent=1)
        # The next release carries the ledger its compile appends to.
        (changed.parent / "generated").mkdir(exist_ok=True)
        shutil.copy(root / "generated" / "ledger.json", changed.parent / "generated")
        checked = run(["check", str(changed), "--against", str(definitions)])
        total = validate["seconds"] + compiled["seconds"]
        peak = max(validate["kib"], compiled["kib"], checked["kib"]) / 1024
        print(
            f"{size:>12,} {validate['seconds']:>11.2f} {compiled['seconds']:>10.2f} "
            f"{total:>7.2f} {checked['seconds']:>8.2f} {peak:>9.0f}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    else:
        main([int(arg) for arg in sys.argv[1:]] or DEFAULT_SIZES)
