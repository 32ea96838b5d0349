"""The MPI driver of `sporep-hpc run`: named phases, collective over the communicator it is given.

`run` takes the store's lock (rank 0), then runs these phases on every rank, in order:

1. check: parameters no structure could satisfy (basis, fingerprints, memory budget) are refused;
2. resolve: rank 0 lists the input units (names only), every rank reads a block; allgather (ids
   checked unique);
3. decide: rank 0 hashes the inputs and looks at an existing store (`restart.check_existing_store`):
   up to date (nothing to do), resume, or refuse; the decision is broadcast;
4. plan: every rank validates and costs a block of structures; allgather;
5. prepare: rank 0 prepares the journal; the shards are scanned, one rank each; an entry is reused
   only if it records the current input digest of its structure;
6. compute: tasks not in the journal run largest first, handed out by an RMA counter
   (``schedule="dynamic"``) or by a greedy LPT assignment (``"static"``); every rank computes and
   appends each result to its own shard, flushed per task. Structures costing more than a rank's
   share run as k-point chunks, joined afterwards in k order;
7. assemble: each shard is read by one rank and its rows sent to the rank owning them (alltoall);
   the ranks write the store collectively (mpio), each a contiguous block of rows, or rank 0 alone
   when h5py lacks MPI; temporary name, then rename.

Every collective is reached by every rank in the same order; a failure on one rank is agreed on
(allgather) before the next collective step.
"""

from __future__ import annotations

import bisect
import logging
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import __version__
from ..agreement import all_call, root_call
from ..basis import load_basis
from ..config import RunConfig
from ..errors import InputError, StoreError
from ..fingerprints import source_kind
from ..inputs.digests import input_digests
from ..inputs.records import InputRecord, check_unique_ids, compact_record
from ..inputs.resolve import expand_unit, input_units
from ..pipeline import (
    PHASES,
    FingerprintSet,
    TaskTimes,
    chunk_id,
    compute_part,
    compute_record,
    finish,
    record_source,
)
from ..store import (
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_PENDING,
    StoreHeader,
    StructureResult,
    failed_result,
    timestamp,
    write_store_atomically,
    writes_collectively,
)
from ..store.lock import StoreLock
from ..structures import properties_json
from .journal import (
    INTERNAL,
    JournalShard,
    journal_dir,
    list_shards,
    load_entries,
    merge_refs,
    prepare_journal,
    remove_journal,
    scan_shard,
    stale_ids,
)
from .plan import OVER_BUDGET, PlanEntry, Task, check_memory_budget, make_tasks, memory_budget, plan_records
from .progress import Progress, RunReport
from .restart import check_existing_store
from .schedule import TaskCounter, block_range, largest_first, lpt_assign

log = logging.getLogger("sporep_hpc.run")

STOP_SIGNALS = ("SIGTERM", "SIGUSR1")


# ---------------------------------------------------------------------------- signals
@dataclass
class StopFlag:
    """Set by a signal handler (or a test); the task loop checks it between tasks."""

    requested: bool = False
    signum: int = 0

    def set(self, signum: int = 0) -> None:
        self.requested = True
        self.signum = signum


@contextmanager
def handle_signals(stop: StopFlag, names: Sequence[str] = STOP_SIGNALS):
    """Within the block, SIGTERM/SIGUSR1 set `stop` instead of killing the process (main thread only)."""
    previous = {}

    def handler(signum, frame):
        if not stop.requested:
            log.warning("received %s: finishing the current task, then stopping", signal.Signals(signum).name)
        stop.set(signum)

    for name in names:
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not in the main thread
                break
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class IOFailure(StoreError):
    """A write of the journal or the store failed (full disk, quota, I/O error), agreed by every rank.

    HDF5's state after such an error is undefined (closing its objects can crash the interpreter at
    exit), so the CLI ends the process without running h5py's finalizers (`cli.run`).
    """


# ---------------------------------------------------------------------------- the run
def run(
    inputs: Iterable[str],
    output: str | Path,
    config: RunConfig,
    comm: Any,
    *,
    n_threads: int = 1,
    dry_run: bool = False,
    stop: StopFlag | None = None,
    on_task_done: Callable[[int], None] | None = None,
) -> RunReport:
    """Compute spectra and fingerprints of `inputs` into the store `output` (collective over `comm`).

    Parameters
    ----------
    inputs : iterable of str
        Files, directories, ``examples:<spec>`` sets, imported band files.
    output : path
        The store to write (replaced atomically when complete).
    config : RunConfig
        Parameters (what) and execution options (how).
    comm : mpi4py communicator
        Ranks that share the work.
    n_threads : int
        OpenMP threads per rank for the kernels.
    dry_run : bool
        Plan only: the report holds the plan and each rank's estimated cost (`plan_table` prints
        them); nothing is computed or written.
    stop : StopFlag, optional
        Checked between tasks (the CLI connects it to SIGTERM/SIGUSR1).
    on_task_done : callable(n_finished_on_this_rank), optional
        Called after each task is journaled (tests use it to simulate a kill).

    Returns
    -------
    RunReport
        Identical on every rank; ``exit_code`` is 0, 4 (some failed) or 5 (stopped).
    """
    output = Path(output).resolve() if comm.rank == 0 else None
    output = Path(comm.bcast(str(output) if output else None, root=0))
    # one writer per store: rank 0 holds <store>.lock from before the existing store is read until the
    # end, whatever the exit path (a dry run writes nothing and takes no lock)
    lock = StoreLock(output) if comm.rank == 0 and not dry_run else None
    if not dry_run:
        root_call(comm, lambda: lock.acquire().held)
    together = True  # every rank leaves run in the same way: returning, or raising an agreed error
    try:
        return _run(inputs, output, config, comm, n_threads, dry_run, stop or StopFlag(), on_task_done)
    except BaseException as exc:
        together = getattr(exc, "agreed", False)
        raise
    finally:
        if lock is not None:
            lock.release()
        if together:
            comm.Barrier()  # when run returns or raises on any rank, the store is unlocked


@dataclass
class _Run:
    """What the phases of one run share; identical on every rank (filled in phase by phase)."""

    comm: Any
    output: Path
    config: RunConfig
    n_threads: int
    t_start: float = field(default_factory=time.perf_counter)
    fingerprints: FingerprintSet | None = None
    budget: int | None = None  # bytes per rank
    records: list[InputRecord] = field(default_factory=list)
    digest: str = ""  # of the whole run's inputs (store, journal)
    record_digests: list[str] = field(default_factory=list)  # of each record (journal entries)
    plan: list[PlanEntry] = field(default_factory=list)

    @property
    def params(self) -> Any:
        return self.config.parameters

    @property
    def jdir(self) -> Path:
        return journal_dir(self.output)

    @property
    def digests(self) -> dict[str, str]:
        """{structure id: input digest} of the planned (not failed) structures."""
        return {e.id: self.record_digests[e.index] for e in self.plan if e.kind != "failed"}

    def report(self, **fields: Any) -> RunReport:
        """A RunReport with this run's size, ranks, threads and wall time so far."""
        kinds = Counter(source_kind(record_source(r, self.params)) for r in self.records)
        kinds.pop("", None)  # unreadable inputs
        specs = self.fingerprints.specs if self.fingerprints else {}
        return RunReport(n_total=len(self.records), wall_time=time.perf_counter() - self.t_start,
                         n_ranks=self.comm.size, threads=self.n_threads, kinds=dict(kinds),
                         fingerprint_kinds={n: self.fingerprints.kinds_of(n) for n in specs}, **fields)


def _run(inputs, output: Path, config: RunConfig, comm: Any, n_threads: int, dry_run: bool, stop: StopFlag,
         on_task_done) -> RunReport:
    """`run` with the store's lock held: its phases, in order, on every rank."""
    run = _Run(comm, output, config, n_threads)
    _check(run)
    _resolve(run, list(inputs))
    existing = _decide(run, dry_run)
    if existing is not None:  # complete and up to date: nothing to do
        return _up_to_date(run, existing)
    _plan(run)
    if dry_run:
        return _dry_run(run)
    tasks, to_combine, n_skipped = _prepare(run)
    t_setup = time.perf_counter() - run.t_start
    busy, stopped = _compute(run, tasks, to_combine, stop, on_task_done)
    all_times = comm.allgather(busy.as_tuple())
    timing = {
        "phase_times": {p: sum(t[k] for t in all_times) for k, p in enumerate(PHASES)},
        "busy_times": [sum(t) for t in all_times],
        "t_setup": t_setup,
        "t_symmetry": sum(e.prepared.seconds for e in run.plan if e.prepared is not None),
    }
    if stopped:
        if comm.rank == 0:  # the summary (RunReport) is printed by the caller (cli.run: stdout)
            log.warning("stopped by a signal: the journal %s is consistent; rerun the same command to resume",
                        run.jdir)
        return run.report(n_done=0, n_failed=0, n_skipped=n_skipped, stopped=True, **timing)
    t_io = time.perf_counter()
    failures, pending = _assemble(run)
    return run.report(  # its summary is printed by the caller (cli.run: stdout)
        n_done=len(run.records) - len(failures) - len(pending), n_failed=len(failures),
        n_pending=len(pending), n_skipped=n_skipped, failures=failures + pending, store=str(output),
        t_assembly=time.perf_counter() - t_io, **timing,
    )


def _check(run: _Run) -> None:
    """Phase 1: parameters that no structure could satisfy are refused before any work (every rank)."""
    params, execution = run.params, run.config.execution

    def _fingerprints():
        load_basis(params.basis, params.exp_to_discard)
        return FingerprintSet.from_parameters(params)

    run.fingerprints = all_call(run.comm, _fingerprints)
    run.budget = memory_budget(run.comm, execution.max_memory)  # the same on every rank
    all_call(run.comm, lambda: check_memory_budget(params, run.fingerprints, run.budget))


def _resolve(run: _Run, inputs: list[str]) -> None:
    """Phase 2: input records, read in parallel: rank 0 lists the units, each rank reads a block."""
    comm = run.comm
    units = root_call(comm, lambda: input_units(inputs))
    lo, hi = block_range(len(units), comm.size, comm.rank)
    images = run.params.images
    mine = all_call(comm, lambda: [[compact_record(r) for r in expand_unit(u, images)] for u in units[lo:hi]])
    run.records = [r for block in comm.allgather(mine) for unit in block for r in unit]
    all_call(comm, lambda: check_unique_ids(run.records))
    run.fingerprints = run.fingerprints.for_records(run.records)  # band files get a DFT fingerprint
    if not run.records:
        shown = ", ".join(map(str, inputs)) or "the (empty) input list"
        raise InputError(f"no structures found in {shown}")


def _decide(run: _Run, dry_run: bool) -> list[tuple[str, str]] | None:
    """Phase 3: input digests, and what to do about an existing store (rank 0 reads it, all get the
    decision): the failures of a complete, up-to-date store, or None to compute."""
    parameters_json = run.fingerprints.parameters_json(run.params)

    def _digests_and_decision():
        digest, each = input_digests(run.records)
        if dry_run:
            return digest, each, None
        restart = run.config.execution.restart
        return digest, each, check_existing_store(run.output, run.jdir, run.params, parameters_json, digest,
                                                  restart)

    run.digest, run.record_digests, existing = root_call(run.comm, _digests_and_decision)
    return existing


def _up_to_date(run: _Run, failures: list[tuple[str, str]]) -> RunReport:
    n = len(run.records)
    if run.comm.rank == 0:
        log.info("%s is complete and up to date (same parameters, same inputs): nothing to compute; "
                 "use --restart fresh to recompute it", run.output)
    return run.report(n_done=n - len(failures), n_failed=len(failures), n_skipped=n, failures=failures,
                      store=str(run.output), up_to_date=True)


def _plan(run: _Run) -> None:
    """Phase 4: validation and cost of every record, a block per rank; every rank gets the whole plan."""
    comm = run.comm
    lo, hi = block_range(len(run.records), comm.size, comm.rank)
    label = "planning" if comm.size == 1 else "planning (rank 0's share)"
    progress = Progress(hi - lo, run.config.execution.progress_interval, active=comm.rank == 0, label=label)
    local = all_call(comm, lambda: plan_records(run.records, run.params, lo, hi, max_memory=run.budget,
                                                on_planned=lambda n: progress.update(n, 0)))
    progress.close()
    run.plan = [e for block in comm.allgather(local) for e in block]


def _dry_run(run: _Run) -> RunReport:
    """The report of a dry run: the plan and each rank's estimated cost (the caller prints them)."""
    costs = [e.cost for e in run.plan]
    per_rank = [sum(costs[i] for i in tasks) for tasks in lpt_assign(costs, run.comm.size)]
    failed = [(e.id, e.error) for e in run.plan if e.kind == "failed"]
    return run.report(n_done=0, n_failed=len(failed), n_skipped=0, failures=failed, plan=list(run.plan),
                      rank_costs=per_rank)


def _prepare(run: _Run) -> tuple[list[Task], list[tuple[int, int]], int]:
    """Phase 5: the journal (created, or checked and scanned), and the tasks still to run.

    Returns the tasks, the (index, n_chunks) of structures split into k-point chunks, and the number
    of structures taken from the journal.
    """
    comm, plan, execution = run.comm, run.plan, run.config.execution
    note = root_call(comm, lambda: prepare_journal(run.jdir, run.params, execution.restart, run.digest))
    refs, stale = _scan_all(comm, run.jdir, run.digests, set_aside=True)
    if stale and comm.rank == 0:
        log.info(
            "%d journal entries are stale (their structure's input changed since, or they were written "
            "without an input digest by an older version) and will be recomputed: %s",
            len(stale), ", ".join(sorted(stale)[:5]) + (", ..." if len(stale) > 5 else ""),
        )
    journaled = {id: ref.status for id, ref in refs.items() if not ref.retry}
    tasks, to_combine = make_tasks(plan, journaled, comm.size, execution.split_kpoints)
    n_skipped = sum(e.kind != "failed" and e.id in journaled for e in plan)
    if comm.rank == 0:
        n_todo = sum(e.kind != "failed" and e.id not in journaled for e in plan)
        log.info(
            "%s; %d structures: %d to compute (%d tasks, %d structures split by k-points), %d from the "
            "journal, %d failed validation; %d ranks x %d threads, %s schedule",
            note, len(plan), n_todo, len(tasks), len(to_combine), n_skipped,
            sum(e.kind == "failed" for e in plan), comm.size, run.n_threads, execution.schedule,
        )
    return tasks, to_combine, n_skipped


def _compute(run: _Run, tasks: list[Task], to_combine: list[tuple[int, int]], stop: StopFlag,
             on_task_done) -> tuple[TaskTimes, bool]:
    """Phase 6: the tasks, largest first, each journaled by the rank that ran it; then the k-point
    chunks of split structures joined. Returns this rank's busy time and whether a signal stopped the
    run. A journal write error on any rank is agreed on by all (StoreError) before anything else."""
    comm, params, execution = run.comm, run.params, run.config.execution
    params_json = params.to_json()
    costs = [t.cost for t in tasks]
    interval = execution.journal_interval
    shard = all_call(comm, lambda: JournalShard(run.jdir, comm.rank, params_json, batch_seconds=interval))
    journal_error: list[str] = []  # the first journal write error of this rank

    def compute(task: Task) -> tuple[StructureResult, TaskTimes]:
        """Run one task and journal it (in this rank's current batch). A journal write error stops
        this rank's loop (the error is agreed on after the loop): segments are written whole, so the
        journal stays valid."""
        record = run.records[task.index]
        prepared = run.plan[task.index].prepared  # the planner's symmetry work, not done again
        if task.n_chunks == 1:
            result, times = compute_record(task.index, record, params, run.fingerprints, run.n_threads,
                                           prepared)
        else:
            result, times = compute_part(task.index, record, params, task.chunk, task.n_chunks, run.n_threads,
                                         prepared)
        t0 = time.perf_counter()
        try:
            shard.append(result, times, run.record_digests[task.index])
        except (OSError, RuntimeError, ValueError, StoreError) as exc:  # h5py's errors on a full disk
            journal_error.append(f"rank {comm.rank} could not write its journal shard {shard.path}: {exc}")
            stop.set()
        if result.status != STATUS_DONE:
            log.warning("%s", result.error)
        return result, times + TaskTimes(io=time.perf_counter() - t0)

    try:
        loop = _loop_static if execution.schedule == "static" else _loop_dynamic
        busy, stopped = loop(comm, tasks, costs, largest_first(costs), compute, stop, on_task_done,
                             execution.progress_interval)
    finally:
        try:
            shard.close()  # writes the last batch
        except (OSError, RuntimeError, ValueError, StoreError) as exc:
            journal_error.append(f"rank {comm.rank} could not write its journal shard {shard.path}: {exc}")
    _agree_journal_writes(comm, journal_error[:1], run.jdir)
    stopped = comm.allreduce(stopped or stop.requested)
    if to_combine and not stopped:
        busy = busy + _combine(run, to_combine, params_json)
    return busy, stopped


def _loop_dynamic(comm, tasks, costs, order, compute, stop, on_task_done, interval) -> tuple[TaskTimes, bool]:
    """Self-scheduling: task numbers from the RMA counter, largest first; rank 0 also reports progress."""
    busy, n_mine = TaskTimes(), 0
    progress = Progress(len(tasks), interval, active=comm.rank == 0)
    counter = TaskCounter(comm)
    if comm.rank == 0 and comm.size > 1 and not counter.progress_thread:
        log.warning(
            "MPI without MPI_THREAD_MULTIPLE: no RMA progress thread on rank 0; if task requests stall "
            "while rank 0 computes, use --schedule static (or the MPI's asynchronous progress)"
        )
    try:
        while not (stop.requested or counter.stop_requested()):
            t = counter.next_task()
            if t >= len(tasks):
                break
            result, times = compute(tasks[order[t]])
            busy, n_mine = busy + times, n_mine + 1
            counter.task_finished(result.status == STATUS_DONE)
            if on_task_done is not None:
                on_task_done(n_mine)
            if comm.rank == 0:
                _, done, failed, *_ = counter.snapshot()
                progress.update(done, failed)
        if stop.requested:
            counter.request_stop()
        counter.rank_finished()
        if comm.rank == 0:  # report progress until every rank has left its loop
            while True:
                _, done, failed, finished_ranks, _ = counter.snapshot()
                progress.update(done, failed)
                if finished_ranks >= comm.size:
                    break
                if stop.requested:
                    counter.request_stop()
                time.sleep(0.05)
            progress.update(done, failed, force=True)
            progress.close()
        stopped = counter.stop_requested()
    finally:
        counter.free()
    return busy, stopped


def _loop_static(comm, tasks, costs, order, compute, stop, on_task_done, interval) -> tuple[TaskTimes, bool]:
    """Greedy LPT assignment fixed in advance: no communication at all until the loop ends (the fallback
    for MPI libraries whose passive-target RMA stalls). Rank 0's progress line shows its own share,
    a good estimate of the whole since LPT balances the estimated cost."""
    busy, n_mine, done, failed = TaskTimes(), 0, 0, 0
    mine = lpt_assign(costs, comm.size)[comm.rank]
    progress = Progress(len(mine), interval, active=comm.rank == 0)
    for t in mine:
        if stop.requested:
            break
        result, times = compute(tasks[t])
        busy, n_mine = busy + times, n_mine + 1
        done, failed = (done + 1, failed) if result.status == STATUS_DONE else (done, failed + 1)
        if on_task_done is not None:
            on_task_done(n_mine)
        progress.update(done, failed)
    progress.update(done, failed, force=True)
    progress.close()
    return busy, stop.requested


def _scan_all(
    comm: Any, jdir: Path, digests: dict[str, str], set_aside: bool = False
) -> tuple[dict, set[str]]:
    """`scan_journal(jdir, digests)` with the shards shared out over the ranks (shard k read by rank
    k mod size), and the `stale_ids`. Every rank gets every shard's entries (allgather) and the same
    `digests`, so every rank makes the same choice. `set_aside`: see `scan_shard` (the run holds the
    store's lock: it is the only writer of the journal)."""
    shards = root_call(comm, lambda: [str(p) for p in list_shards(jdir)])
    mine = all_call(
        comm,
        lambda: {k: scan_shard(Path(shards[k]), set_aside) for k in range(comm.rank, len(shards), comm.size)},
    )
    per_shard: dict[int, list] = {}
    for block in comm.allgather(mine):
        per_shard.update(block)
    ordered = [per_shard[k] for k in range(len(shards))]
    return merge_refs(ordered, digests), stale_ids(ordered, digests)


def _exchange_rows(
    comm: Any, refs: dict, plan: Sequence[PlanEntry], blocks: Sequence[tuple[int, int]]
) -> dict:
    """{index: StructureResult} of this rank's block, read from the journal without a storm of opens.

    Each shard is opened by one rank only (shard k by rank k mod size), which sends every row it
    read to the rank owning that row (`blocks[r]` = [lo, hi) of rank r) in one alltoall.
    """
    chosen = {e.index: refs[e.id] for e in plan if e.kind != "failed" and e.id in refs}
    shards = sorted({ref.shard for ref in chosen.values()})
    mine = {shard for k, shard in enumerate(shards) if k % comm.size == comm.rank}
    loaded = all_call(comm, lambda: load_entries({i: r for i, r in chosen.items() if r.shard in mine}))
    held = [(lo, r) for r, (lo, hi) in enumerate(blocks) if hi > lo]
    starts = [lo for lo, _ in held]
    outgoing: list[list] = [[] for _ in range(comm.size)]
    for index, (result, _) in loaded.items():
        outgoing[held[bisect.bisect_right(starts, index) - 1][1]].append(result)
    return {r.index: r for batch in comm.alltoall(outgoing) for r in batch}


def _combine(run: _Run, to_combine: list[tuple[int, int]], params_json: str) -> TaskTimes:
    """Join the k-point chunks of split structures (block-distributed over the ranks) into full entries."""
    comm, jdir = run.comm, run.jdir
    refs, _ = _scan_all(comm, jdir, run.digests)
    lo, hi = block_range(len(to_combine), comm.size, comm.rank)
    spent = TaskTimes()

    def _work():
        nonlocal spent
        if hi == lo:
            return
        with JournalShard(jdir, comm.rank, params_json) as shard:
            for index, m in to_combine[lo:hi]:
                record = run.records[index]
                wanted = {j: refs[chunk_id(record.id, j, m)] for j in range(m)}
                parts = [p for _, (p, _) in sorted(load_entries(wanted).items())]
                result, times = finish(index, record, parts, run.fingerprints, run.n_threads)
                t0 = time.perf_counter()
                shard.append(result, times, run.record_digests[index])
                spent = spent + times + TaskTimes(io=time.perf_counter() - t0)
                if result.status != STATUS_DONE:
                    log.warning("%s", result.error)

    all_call(comm, _work)
    return spent


def _agree_journal_writes(comm: Any, errors: list[str], jdir: Path) -> None:
    """Raise one StoreError on every rank when any rank could not write its journal (`errors`: this
    rank's first error, or none). Called by every rank after the task loop."""
    found = [e for block in comm.allgather(errors) for e in block]
    if found:
        more = f" (and on {len(found) - 1} other rank(s))" if len(found) > 1 else ""
        error = IOFailure(
            f"{found[0]}{more}. Nothing is lost: the journal {jdir} keeps every finished structure (an "
            "entry cut by the error is ignored); free space (or fix the file system) and rerun the same "
            "command to resume"
        )
        error.agreed = True
        raise error


def _rows(lo: int, hi: int, loaded: dict, records: Sequence[InputRecord], plan: Sequence[PlanEntry],
          params: Any):
    """StructureResults of rows [lo, hi): from the journal (`loaded`), or failed rows from the plan;
    properties and source from the input records (inputs, not results: not journaled).

    A row the machinery lost (no journal entry), that failed with an internal error or that did not
    fit the memory budget (an execution option) is written as pending (STATUS_PENDING, reason in
    `error`), never as failed: the next run computes it again.
    """
    rows = []
    for i in range(lo, hi):
        e = plan[i]
        if i in loaded:
            row = loaded[i]
        elif e.kind == "failed":
            row = failed_result(i, e.id, e.error, records[i].structure)
        else:
            why = f"structure {e.id!r}: not computed (missing from the journal); rerun to compute it"
            row = replace(failed_result(i, e.id, why, records[i].structure), status=STATUS_PENDING)
        if row.status == STATUS_FAILED and (INTERNAL in row.error or OVER_BUDGET in row.error):
            row = replace(row, status=STATUS_PENDING, error=f"{row.error} (retried by the next run)")
        rows.append(replace(row, properties=properties_json(records[i].properties),
                            source=record_source(records[i], params)))
    return rows


def _assemble(run: _Run) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Phase 7: write the store from the journal (`write_store_atomically`: mpio on all ranks, or
    rank 0 alone; space checked first; written whole or not at all); return the (id, reason) of the
    failed rows and of the pending ones. Only current entries (`digests`, see `merge_refs`) are used.

    A write error (full disk, quota, permission) is agreed on by every rank and leaves the journal:
    IOFailure (exit code 3), and a rerun with room finishes the store. The journal is also kept when
    rows are pending, so that the next run computes only those.
    """
    comm, output, jdir, plan, records = run.comm, run.output, run.jdir, run.plan, run.records
    n = len(plan)
    refs, _ = _scan_all(comm, jdir, run.digests)
    header = StoreHeader(
        parameters_json=run.fingerprints.parameters_json(run.params),
        created=comm.bcast(timestamp() if comm.rank == 0 else None, root=0),
        n_ranks=comm.size,
        version=__version__,
        inputs_digest=run.digest,
    )
    if writes_collectively(comm):
        blocks = [block_range(n, comm.size, r) for r in range(comm.size)]
    else:  # every row to rank 0, which writes alone
        if comm.size > 1 and comm.rank == 0:
            log.info("h5py without MPI (or SPOREP_FORCE_SERIAL_HDF5=1): rank 0 assembles the store")
        blocks = [(0, n)] + [(n, n)] * (comm.size - 1)
    lo, hi = blocks[comm.rank]
    rows = _rows(lo, hi, _exchange_rows(comm, refs, plan, blocks), records, plan, run.params)
    try:
        write_store_atomically(output, rows, lo, n, header, run.fingerprints.store_meta(), comm)
    except StoreError as exc:  # agreed by every rank; the partial file is already removed
        error = IOFailure(
            f"{exc}. Nothing is lost: the journal {jdir} keeps every computed structure; free space (or "
            "fix the file system) and rerun the same command to write the store"
        )
        error.agreed = True
        raise error from exc
    local = [(r.id, r.error, r.status) for r in rows if r.status != STATUS_DONE]
    unfinished = [row for block in comm.allgather(local) for row in block]
    failures = [(id, why) for id, why, status in unfinished if status == STATUS_FAILED]
    pending = [(id, why) for id, why, status in unfinished if status == STATUS_PENDING]

    def _finish():
        if pending:
            log.warning("%d structure(s) pending (not computed by this run, see the summary): the journal "
                        "%s is kept; rerun the same command to compute them", len(pending), jdir)
        elif not run.config.execution.keep_journal:
            remove_journal(jdir)

    root_call(comm, _finish)
    return failures, pending
