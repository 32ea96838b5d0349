"""Thread counts for the OpenMP kernels, decided once in Python and passed down."""

from __future__ import annotations

import os

from ._validation import check_interval


def resolve_threads(n_threads: int | None = None, *, fallback: int = 1) -> int:
    """Number of OpenMP threads a kernel (or a rank) should use.

    An explicit `n_threads` wins; otherwise ``OMP_NUM_THREADS`` (its first entry; the MPI
    driver sets it per rank so that ranks x threads <= cores); otherwise `fallback`
    (`sporep-hpc run`: `threads_per_rank`).
    """
    if n_threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
        n_threads = int(env) if env.isdigit() and int(env) > 0 else fallback
    check_interval("n_threads", n_threads, 1, None, integer=True)
    return int(n_threads)


def threads_per_rank(ranks_on_node: int, cores: int | None = None) -> int:
    """Largest thread count per rank with ranks x threads <= cores (at least 1)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, ranks_on_node))
