"""Spread per-file work over the machine's cores when there is enough of it."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")

# Below this, starting a worker process costs more than it saves.
PARALLEL_THRESHOLD = 2_000


def worker_count() -> int:
    requested = os.environ.get("EXPC_JOBS")
    if requested and requested.isdigit():
        return max(1, int(requested))
    return os.cpu_count() or 1


def _run_part(function: Callable[[Job], Result], jobs: Sequence[Job]) -> list[Result]:
    return [function(job) for job in jobs]


def map_files(function: Callable[[Job], Result], jobs: Sequence[Job]) -> list[Result]:
    """`[function(job) for job in jobs]`, in order, using every core for large inputs.

    The jobs are cut into one contiguous part per core; this process works on the first
    part itself while helper processes do the others, so no core sits waiting and each
    part crosses a process boundary once.
    """
    workers = min(worker_count(), max(1, len(jobs) // (PARALLEL_THRESHOLD // 2)))
    if workers == 1 or len(jobs) < PARALLEL_THRESHOLD:
        return _run_part(function, jobs)
    size = -(-len(jobs) // workers)
    parts = [jobs[start : start + size] for start in range(0, len(jobs), size)]
    with ProcessPoolExecutor(max_workers=len(parts) - 1) as pool:
        pending = [pool.submit(_run_part, function, part) for part in parts[1:]]
        results = _run_part(function, parts[0])
        for future in pending:
            results.extend(future.result())
    return results
