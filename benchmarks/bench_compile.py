"""Time `expc validate`, `expc compile` and `expc check` on synthetic repositories.

    python benchmarks/bench_compile.py [100 1000 10000 100000]
    python benchmarks/bench_compile.py --environments [10000]

Each command runs as its own process, exactly as a user runs it, on a tree made by
`generate.py` under benchmarks/.work/ (not committed). `check` compares that tree
with a second release of it in which 1% of the experiments changed. Every figure is
printed twice: the whole process (start-up and imports included, what a user waits
for) and the command inside it. Cold runs have no cache (EXPC_CACHE_DIR empty); warm
runs repeat a command over unchanged files with the cache a first run left. Peak
memory is the largest process of the run.

`--environments` compares a cold compile of the same tree with no environments and
with two (`staging`, `production`; one experiment in ten ramps in production), in
turns, five times each: the medians and the ratio of the medians.
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


def run(
    arguments: list[str], cache: Path | None, allowed: tuple[int, ...] = (0,)
) -> dict[str, float]:
    """The command as a user runs it (`python -m expc`: wall time and peak memory of
    the whole process), then again inside a process that times only the command."""
    environment = {**os.environ, "EXPC_CACHE_DIR": "" if cache is None else str(cache)}
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "expc", *arguments],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment,
    )
    _pid, status, usage = os.wait4(process.pid, 0)
    whole = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in allowed:
        raise SystemExit(f"expc {' '.join(arguments)} exited {status}")
    result = subprocess.run(
        [sys.executable, __file__, "--child", *arguments],
        capture_output=True,
        text=True,
        check=True,
        env=environment,
    )
    figures: dict[str, float] = json.loads(result.stdout)
    figures["whole"] = whole
    figures["kib"] = max(figures["kib"], usage.ru_maxrss)
    return figures


def main(sizes: list[int]) -> None:
    sys.path.insert(0, str(HERE))
    from generate import generate

    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    print("seconds: whole process / inside the command; cold: no cache; warm: unchanged files")
    header = (
        f"{'experiments':>11} {'validate cold':>14} {'compile cold':>14} {'check cold':>14} "
        f"{'validate warm':>14} {'compile warm':>14} {'peak MiB':>9}"
    )
    print(header)
    for size in sizes:
        root = WORK / str(size)
        definitions = generate(size, root)
        out = root / "generated"
        shutil.rmtree(out, ignore_errors=True)
        validate = run(["validate", str(definitions)], None)
        compiled = run(["compile", str(definitions), "--out", str(out)], None)
        changed = generate(size, WORK / f"{size}-next", change_percent=1)
        # The next release carries the ledger its compile appends to.
        (changed.parent / "generated").mkdir(exist_ok=True)
        shutil.copy(out / "ledger.json", changed.parent / "generated")
        checked = run(["check", str(changed), "--against", str(definitions)], None)
        cache = root / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        run(["validate", str(definitions)], cache)
        run(["compile", str(definitions), "--out", str(out)], cache)
        validate_warm = run(["validate", str(definitions)], cache)
        compile_warm = run(["compile", str(definitions), "--out", str(out)], cache)
        figures = [validate, compiled, checked, validate_warm, compile_warm]
        peak = max(f["kib"] for f in figures) / 1024
        cells = " ".join(f"{f['whole']:>6.2f} / {f['seconds']:<5.2f}" for f in figures)
        print(f"{size:>11,} {cells} {peak:>9.0f}")


def environments(sizes: list[int], rounds: int = 5) -> None:
    """A cold compile without environments and with two, in turns."""
    import statistics

    sys.path.insert(0, str(HERE))
    from generate import generate

    print(f"cores: {os.cpu_count()}, python {sys.version.split()[0]}")
    print("cold compile, whole process, median of", rounds, "runs each, taken in turns")
    print(f"{'experiments':>11} {'one':>8} {'two envs':>9} {'ratio':>6}")
    for size in sizes:
        trees = {
            declared: generate(size, WORK / f"{size}-envs-{declared}", environments=declared)
            for declared in (False, True)
        }
        times: dict[bool, list[float]] = {False: [], True: []}
        for _round in range(rounds):
            for declared, definitions in trees.items():
                out = definitions.parent / "generated"
                shutil.rmtree(out, ignore_errors=True)
                times[declared].append(run(["compile", str(definitions)], None)["whole"])
        one, two = statistics.median(times[False]), statistics.median(times[True])
        print(f"{size:>11,} {one:>7.2f}s {two:>8.2f}s {two / one:>6.2f}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--environments":
        environments([int(arg) for arg in sys.argv[2:]] or [10_000])
    else:
        main([int(arg) for arg in sys.argv[1:]] or DEFAULT_SIZES)
