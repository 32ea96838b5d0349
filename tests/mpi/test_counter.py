"""The RMA task counter on the test's communicator: each number once, stop propagation, progress."""

import itertools
import time

import numpy as np
import pytest

from sporep_hpc.parallel.schedule import TaskCounter, block_range, lpt_assign

pytestmark = pytest.mark.mpi


def test_every_task_number_is_handed_out_exactly_once(comm):
    n_tasks = 50
    with TaskCounter(comm) as counter:
        mine = []
        while (t := counter.next_task()) < n_tasks:
            mine.append(t)
            counter.task_finished(t % 7 != 0)
        counter.rank_finished()
        comm.Barrier()
        everything = sorted(t for block in comm.allgather(mine) for t in block)
        assert everything == list(range(n_tasks))
        nxt, done, failed, finished, stop = counter.snapshot()
        # reference: 50 tasks, the multiples of 7 (0, 7, ..., 49) counted as failed; one overshoot per rank
        assert (done, failed, finished, stop) == (50 - 8, 8, comm.size, 0)
        assert nxt == n_tasks + comm.size


def test_stop_request_reaches_every_rank(comm):
    with TaskCounter(comm) as counter:
        if comm.rank == comm.size - 1:
            counter.request_stop()
        comm.Barrier()
        assert counter.stop_requested()


def test_task_requests_are_served_while_rank_0_computes(comm):
    # rank 0 stays out of MPI for 2 s (pure Python loop); without the progress thread, MPICH 4.0
    # (ch4:ucx) answers the other ranks' Fetch_and_op only after those 2 s
    if comm.size == 1:
        pytest.skip("needs two ranks")
    with TaskCounter(comm) as counter:
        comm.Barrier()
        if comm.rank == 0:
            t0, x = time.perf_counter(), 0
            while time.perf_counter() - t0 < 2.0:
                x += 1
            waits = []
        else:
            waits = []
            for _ in range(5):
                t1 = time.perf_counter()
                counter.next_task()
                waits.append(time.perf_counter() - t1)
        worst = max((w for block in comm.allgather(waits) for w in block), default=0.0)
        assert worst < 1.0, f"a task request waited {worst:.2f} s for rank 0"


def test_static_and_block_distributions_agree_with_rank_count(comm):
    costs = np.arange(1, 20, dtype=float)
    assignment = lpt_assign(costs, comm.size)
    lo, hi = block_range(len(costs), comm.size, comm.rank)
    blocks = comm.allgather((lo, hi))
    assert blocks[0][0] == 0 and blocks[-1][1] == len(costs)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
    assert sorted(i for tasks in assignment for i in tasks) == list(range(len(costs)))
