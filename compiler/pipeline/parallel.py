"""Spread per-file work over the machine's cores when there is enough of it."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

Job = TypeVar("Job")
Result = TypeVar("Result")

# Below this, starting a worker process costs more than it saves.
PARALLEL_THRESHOLD = 2_000
# How much more than an even share this process takes: sending a part's results back
# costs about a fifth of parsing it (on 2 cores and 10,000 files, 1.2 was fastest of
# 1.0, 1.1, 1.2 and 1.3: `expc validate` 1.38 s -> 1.24 s).
OWN_SHARE_BOOST = 1.2
_PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>
_PARENT_CHECK_SECONDS = 0.5


def worker_count() -> int:
    requested = os.environ.get("EXPC_JOBS")
    if requested and requested.isdigit():
        return max(1, int(requested))
    return os.cpu_count() or 1


def _end_with_parent(parent: int) -> None:
    """Worker initialiser: a worker must not outlive the command that started it.

    Killed with SIGKILL, the parent cannot stop its workers, and a worker blocked
    writing its results into the parent's pipe would wait forever. On Linux the kernel
    sends the worker SIGKILL when its parent dies; elsewhere (and as a second line on
    Linux) a daemon thread notices that the parent changed and ends the worker.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - an unusual libc
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            threading.Event().wait(_PARENT_CHECK_SECONDS)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="expc-parent-watch", daemon=True).start()


def helper_pool(helpers: int) -> ProcessPoolExecutor:
    """A pool of `helpers` processes that end when this one does."""
    # Imported here: multiprocessing costs a tenth of `expc validate`'s start-up.
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        max_workers=helpers, initializer=_end_with_parent, initargs=(os.getpid(),)
    )


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
    # A helper's part costs more than its parsing: its results are pickled, sent and
    # unpickled here. So this process takes a larger share, and all finish together.
    own = int(len(jobs) * OWN_SHARE_BOOST / workers)
    size = -(-(len(jobs) - own) // (workers - 1))
    parts = [jobs[:own], *(jobs[start : start + size] for start in range(own, len(jobs), size))]
    with helper_pool(len(parts) - 1) as pool:
        pending = [pool.submit(_run_part, function, part) for part in parts[1:]]
        results = _run_part(function, parts[0])
        for future in pending:
            results.extend(future.result())
    return results
