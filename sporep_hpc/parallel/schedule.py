"""Work distribution: block ranges, greedy LPT assignment, and the RMA task counter.

Pure arithmetic (`block_range`, `lpt_assign`) is kept apart from MPI objects
(`TaskCounter`) so it can be tested serially. Communicators are arguments; MPI
objects are released by an explicit `free()` (or the context manager).
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import check_interval


def block_range(n: int, size: int, rank: int) -> tuple[int, int]:
    """Half-open range [lo, hi) of `n` items owned by `rank` of `size` (first n % size ranks get one more)."""
    check_interval("n", n, 0, None, integer=True)
    check_interval("size", size, 1, None, integer=True)
    check_interval("rank", rank, 0, size - 1, integer=True)
    q, r = divmod(n, size)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (1 if rank < r else 0)


def largest_first(costs: Sequence[float]) -> list[int]:
    """Indices ordered by decreasing cost, ties by increasing index (deterministic)."""
    costs = np.asarray(costs, dtype=np.float64)
    return sorted(range(len(costs)), key=lambda i: (-costs[i], i))


def lpt_assign(costs: Sequence[float], size: int) -> list[list[int]]:
    """Greedy longest-processing-time assignment of tasks to `size` ranks.

    Tasks are taken largest first (ties by index) and each goes to the rank with the
    least load so far (ties to the lowest rank). Returns, per rank, its task indices in
    the order they should run (largest first).
    """
    check_interval("size", size, 1, None, integer=True)
    out: list[list[int]] = [[] for _ in range(size)]
    heap = [(0.0, r) for r in range(size)]
    for i in largest_first(costs):
        load, r = heapq.heappop(heap)
        out[r].append(i)
        heapq.heappush(heap, (load + float(costs[i]), r))
    return out


def lpt_makespan(costs: Sequence[float], assignment: Sequence[Sequence[int]]) -> float:
    """Largest per-rank total cost of an assignment."""
    return max((sum(float(costs[i]) for i in tasks) for tasks in assignment), default=0.0)


# Layout of the counter window on rank 0 (int64 slots).
NEXT, DONE, FAILED, FINISHED_RANKS, STOP = range(5)
_N_SLOTS = 5


class TaskCounter:
    """Shared int64 counters in an MPI RMA window on rank 0 of `comm` (passive target).

    Slot NEXT hands out task numbers (``next_task``: atomic Fetch_and_op under
    ``Lock(0, LOCK_SHARED)``); DONE/FAILED count finished tasks and FINISHED_RANKS the
    ranks that left their task loop, for rank 0's progress report; STOP is raised by a
    rank that received SIGTERM/SIGUSR1 so that the others stop too. Collective to
    create and to `free`.

    Passive-target progress: some MPI libraries (MPICH 4.0 ch4:ucx, measured here)
    serve RMA on rank 0's window only while rank 0 is inside the MPI library, so a
    rank asking for a task would wait until rank 0 finished its own task. With
    ``progress_thread=True`` (and MPI_THREAD_MULTIPLE), rank 0 runs a small thread
    that enters MPI every `progress_interval` seconds (an Iprobe on a private
    duplicate of `comm`); the alternative is the MPI's own asynchronous progress
    (MPICH: MPIR_CVAR_ASYNC_PROGRESS=1), which busy-polls a core per rank.
    """

    def __init__(
        self, comm: Any, start: int = 0, progress_thread: bool = True, progress_interval: float = 5e-4
    ):
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm
        itemsize = MPI.INT64_T.Get_size()
        nbytes = _N_SLOTS * itemsize if comm.rank == 0 else 0
        self.win = MPI.Win.Allocate(nbytes, itemsize, comm=comm)
        if comm.rank == 0:
            buf = np.frombuffer(self.win.tomemory(), dtype=np.int64)  # own memory, before any epoch
            self.win.Lock(0, MPI.LOCK_EXCLUSIVE)
            buf[:] = 0
            buf[NEXT] = start
            self.win.Unlock(0)
        self._one = np.ones(1, dtype=np.int64)
        self._out = np.zeros(1, dtype=np.int64)
        self._pump_comm = None
        self._pump = None
        self._pump_stop = threading.Event()
        if progress_thread and comm.size > 1 and MPI.Query_thread() == MPI.THREAD_MULTIPLE:
            self._pump_comm = comm.Dup()  # collective: every rank, same condition
            if comm.rank == 0:
                self._pump = threading.Thread(
                    target=self._progress_loop, args=(progress_interval,), name="sporep-rma-progress",
                    daemon=True,
                )
                self._pump.start()
        comm.Barrier()

    @property
    def progress_thread(self) -> bool:
        """True when rank 0 runs the RMA progress thread (same value on every rank)."""
        return self._pump_comm is not None

    def _progress_loop(self, interval: float) -> None:
        while not self._pump_stop.wait(interval):
            self._pump_comm.Iprobe()

    def _fetch_add(self, slot: int, value: int) -> int:
        MPI = self._MPI
        self._one[0] = value
        self.win.Lock(0, MPI.LOCK_SHARED)
        self.win.Fetch_and_op([self._one, MPI.INT64_T], [self._out, MPI.INT64_T], 0, slot, MPI.SUM)
        self.win.Unlock(0)
        return int(self._out[0])

    def next_task(self) -> int:
        """The next task number (0, 1, 2, ... across all ranks, each handed out once)."""
        return self._fetch_add(NEXT, 1)

    def task_finished(self, ok: bool) -> None:
        """Count one finished task (done or failed)."""
        self._fetch_add(DONE if ok else FAILED, 1)

    def rank_finished(self) -> None:
        """Count this rank as having left its task loop."""
        self._fetch_add(FINISHED_RANKS, 1)

    def request_stop(self) -> None:
        """Ask every rank to stop taking tasks (a signal arrived on this rank)."""
        self._fetch_add(STOP, 1)

    def stop_requested(self) -> bool:
        """True once any rank called `request_stop`."""
        return self._fetch_add(STOP, 0) > 0

    def snapshot(self) -> tuple[int, ...]:
        """(next, done, failed, finished_ranks, stop), read atomically in one Get_accumulate(NO_OP)."""
        MPI = self._MPI
        zeros = np.zeros(_N_SLOTS, dtype=np.int64)
        out = np.zeros(_N_SLOTS, dtype=np.int64)
        self.win.Lock(0, MPI.LOCK_SHARED)
        target = (0, _N_SLOTS, MPI.INT64_T)
        self.win.Get_accumulate([zeros, MPI.INT64_T], [out, MPI.INT64_T], 0, target=target, op=MPI.NO_OP)
        self.win.Unlock(0)
        return tuple(int(x) for x in out)

    def free(self) -> None:
        """Stop the progress thread and release the window (collective)."""
        if self._pump is not None:
            self._pump_stop.set()
            self._pump.join()
            self._pump = None
        if self._pump_comm is not None:
            self._pump_comm.Free()
            self._pump_comm = None
        if self.win is not None:
            self.win.Free()
            self.win = None

    def __enter__(self) -> TaskCounter:
        return self

    def __exit__(self, *exc) -> None:
        self.free()
