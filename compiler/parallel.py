"""Spread per-file work over the machine's cores when there is enough of it."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")

# Below this, starting worker processes costs more than it saves.
PARALLEL_THRESHOLD = 4_000


def worker_count() -> int:
    requested = os.environ.get("EXPC_JOBS")
    if requested and requested.isdigit():
        return max(1, int(requested))
    return os.cpu_count() or 1


def map_files(function: Callable[[Job], Result], jobs: Sequence[Job]) -> Iterator[Result]:
    """`map(function, jobs)` in order, in worker processes for large inputs."""
    workers = worker_count()
    if workers == 1 or len(jobs) < PARALLEL_THRESHOLD:
        yield from map(function, jobs)
        return
    chunk = max(1, len(jobs) // (workers * 8))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        yield from pool.map(function, jobs, chunksize=chunk)
