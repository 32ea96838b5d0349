"""Nothing lost (issue 12): one writer per store, readers that never write, write errors agreed on by
every rank, and rows lost by the machinery computed again by the next run.

Every test runs on 1, 2 and 3 ranks and with the serial-HDF5 fallback (see the Makefile). A failure is
injected on the last rank only, so that a rank left behind in a collective would hang (and the
per-test timeout would fail the test) instead of passing unnoticed.
"""

import errno
import json
import os
import socket
import subprocess
import sys

import pytest
from _references import assert_same_store, structures
from mpi4py import MPI

import sporep_hpc.parallel.driver as driver
import sporep_hpc.store.writer as writer
from sporep_hpc.config import build_config
from sporep_hpc.errors import StoreError
from sporep_hpc.parallel.journal import JournalShard, journal_dir, scan_journal
from sporep_hpc.store import STATUS_DONE, STATUS_PENDING, mpio_available, open_store
from sporep_hpc.store.lock import StoreLock, lock_path

pytestmark = pytest.mark.mpi

GOOD = ("cu", "graphite", "nacl", "si")


@pytest.fixture
def inputs(comm, shared_tmp_path):
    """Four good structures (pymatgen JSON)."""
    d = shared_tmp_path / "inputs"
    if comm.rank == 0:
        d.mkdir()
        for name in GOOD:
            structures()[name].to(filename=str(d / f"{name}.json"))
    comm.Barrier()
    return d


def config(**overrides):
    return build_config(overrides={"kdensity": 0.5, "progress_interval": 0.5, **overrides})


def reference(comm, inputs, path):
    """The one-rank store, computed without any fault (rank 0, COMM_SELF); every rank waits."""
    if comm.rank == 0:
        driver.run([str(inputs)], path, config(), MPI.COMM_SELF)
    comm.Barrier()
    return path


def same_on_all_ranks(comm, value):
    values = comm.allgather(value)
    assert all(v == values[0] for v in values), values
    return values[0]


def test_second_writer_is_refused(comm, inputs, shared_tmp_path):
    out = shared_tmp_path / "s.h5"
    holder = StoreLock(out, command="sporep-hpc run first", heartbeat=0) if comm.rank == 0 else None
    if holder:
        holder.acquire()
    comm.Barrier()
    with pytest.raises(StoreError) as info:
        driver.run([str(inputs)], out, config(), comm)
    message = same_on_all_ranks(comm, str(info.value))
    assert "being written by another sporep-hpc process" in message
    assert f"{socket.gethostname()}:{comm.bcast(os.getpid())}" in message  # rank 0 holds it
    assert "sporep-hpc run first" in message
    assert info.value.exit_code == 3 and not out.exists()
    if holder:
        holder.release()
    comm.Barrier()
    report = driver.run([str(inputs)], out, config(), comm)
    assert report.exit_code == 0 and not lock_path(out).exists()


def test_stale_lock_is_taken_over(comm, inputs, shared_tmp_path, caplog):
    out = shared_tmp_path / "s.h5"
    if comm.rank == 0:  # a lock left by a killed process of this host
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True)
        lock_path(out).write_text(json.dumps({"host": socket.gethostname(), "pid": int(dead.stdout),
                                              "started": "2026-01-01T00:00:00Z", "command": "killed"}))
    comm.Barrier()
    with caplog.at_level("WARNING", logger="sporep_hpc"):
        report = driver.run([str(inputs)], out, config(), comm)
    assert report.exit_code == 0 and out.is_file() and not lock_path(out).exists()
    if comm.rank == 0:  # the lock is rank 0's: it logs the take-over
        assert "taking over the stale lock" in caplog.text


def test_lock_of_another_host_is_kept_until_stale(comm, inputs, shared_tmp_path):
    out = shared_tmp_path / "s.h5"
    if comm.rank == 0:
        lock_path(out).write_text(json.dumps({"host": "node-elsewhere", "pid": 1, "command": "running"}))
    comm.Barrier()
    with pytest.raises(StoreError, match="node-elsewhere:1"):
        driver.run([str(inputs)], out, config(), comm)
    if comm.rank == 0:  # no heartbeat for longer than STALE_AFTER: the holder died with its node
        os.utime(lock_path(out), (0, 0))
    comm.Barrier()
    assert driver.run([str(inputs)], out, config(), comm).exit_code == 0


def test_info_while_the_run_writes(comm, inputs, shared_tmp_path, subprocess_env):
    """`sporep-hpc info` (another process) during the run: reports the run, moves nothing, loses nothing."""
    out = shared_tmp_path / "s.h5"
    seen = []

    def info_now(n):
        if comm.rank == 0 and n == 1:
            r = subprocess.run([sys.executable, "-m", "sporep_hpc", "info", str(out)], env=subprocess_env,
                               capture_output=True, text=True, timeout=120)
            seen.append(r)

    report = driver.run([str(inputs)], out, config(schedule="static"), comm, on_task_done=info_now)
    assert report.exit_code == 0 and report.n_done == len(GOOD), report.failures
    if comm.rank == 0:
        (r,) = seen
        assert r.returncode == 0, r.stderr
        assert "in use: being written by" in r.stdout and "not assembled yet" in r.stdout
        assert "Traceback" not in r.stderr
    assert not list(shared_tmp_path.rglob("*.corrupt-*"))


def test_journal_write_error_is_agreed_and_resumed(comm, inputs, shared_tmp_path, monkeypatch):
    """A full disk while the last rank journals a task: every rank ends with the same
    StoreError (exit 3), the journal keeps what was finished, and a rerun completes the store."""
    out = shared_tmp_path / "s.h5"
    real_append = JournalShard.append
    calls = []

    def append(self, *args, **kw):
        calls.append(1)
        if comm.rank == comm.size - 1 and len(calls) == (2 if comm.size == 1 else 1):
            raise OSError(errno.ENOSPC, "No space left on device", str(self.path))
        return real_append(self, *args, **kw)

    monkeypatch.setattr(JournalShard, "append", append)
    with pytest.raises(StoreError) as info:
        driver.run([str(inputs)], out, config(schedule="static"), comm)
    message = same_on_all_ranks(comm, str(info.value))
    assert info.value.exit_code == 3 and getattr(info.value, "agreed", False)
    assert "No space left on device" in message and "rerun the same command to resume" in message
    assert not out.exists() and journal_dir(out).is_dir() and not lock_path(out).exists()
    comm.Barrier()  # every rank has looked before the rerun takes the lock again
    monkeypatch.setattr(JournalShard, "append", real_append)
    finished = comm.bcast(len(scan_journal(journal_dir(out))) if comm.rank == 0 else None)
    report = driver.run([str(inputs)], out, config(schedule="static"), comm)
    assert report.exit_code == 0 and report.n_done == len(GOOD)
    assert finished >= 1 and report.n_skipped == finished  # finished work is reused, not recomputed
    assert_same_store(out, reference(comm, inputs, shared_tmp_path / "ref.h5"))


def test_store_write_error_is_agreed_and_resumed(comm, inputs, shared_tmp_path, monkeypatch):
    """A write of the store fails on the last rank only (after the collective call returned, as an
    MPI-IO error does): no rank hangs, the partial file is removed, the journal kept; a rerun with room
    writes the store without computing anything again."""
    out = shared_tmp_path / "s.h5"
    real_write = writer.write_rows
    calls = []
    failing = comm.size - 1 if comm.size > 1 and mpio_available() else 0  # serial fallback: rank 0 writes

    def write_rows(dset, start, data):
        real_write(dset, start, data)
        calls.append(dset.name)
        if comm.rank == failing and dset.name == "/spectra/eigenvalues":
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(writer, "write_rows", write_rows)
    with pytest.raises(StoreError) as info:
        driver.run([str(inputs)], out, config(), comm)
    message = same_on_all_ranks(comm, str(info.value))
    assert info.value.exit_code == 3 and "No space left on device" in message
    assert bool(calls) == (comm.rank == failing or (mpio_available() and comm.size > 1))  # who wrote
    assert "journal" in message and "rerun the same command" in message
    assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    assert journal_dir(out).is_dir() and not lock_path(out).exists()
    comm.Barrier()  # every rank has looked before the rerun takes the lock again
    monkeypatch.setattr(writer, "write_rows", real_write)
    report = driver.run([str(inputs)], out, config(), comm)
    assert report.exit_code == 0 and report.n_skipped == len(GOOD)
    assert_same_store(out, reference(comm, inputs, shared_tmp_path / "ref.h5"))


def test_rows_lost_by_the_machinery_are_pending_and_recomputed(comm, inputs, shared_tmp_path, monkeypatch):
    """A journal entry that disappears before assembly (as when a reader moved a shard aside) gives a
    pending row, not a failed one; the journal is kept and the next run computes only that row."""
    out = shared_tmp_path / "s.h5"
    real_exchange = driver._exchange_rows

    def lose_nacl(comm_, refs, plan, blocks):
        return real_exchange(comm_, {k: v for k, v in refs.items() if k != "nacl"}, plan, blocks)

    monkeypatch.setattr(driver, "_exchange_rows", lose_nacl)
    report = driver.run([str(inputs)], out, config(), comm)
    assert report.exit_code == 4 and report.n_pending == 1 and report.n_failed == 0
    assert journal_dir(out).is_dir()
    with open_store(out) as store:
        i = store.index_of("nacl")
        assert store.status[i] == STATUS_PENDING and "missing from the journal" in store.errors[i]
    comm.Barrier()
    monkeypatch.setattr(driver, "_exchange_rows", real_exchange)
    report = driver.run([str(inputs)], out, config(), comm)  # not "up to date": the pending row is computed
    assert not report.up_to_date and report.exit_code == 0 and report.n_skipped == len(GOOD)
    with open_store(out) as store:
        assert (store.status == STATUS_DONE).all()
    assert not journal_dir(out).exists()
    assert driver.run([str(inputs)], out, config(), comm).up_to_date
    assert_same_store(out, reference(comm, inputs, shared_tmp_path / "ref.h5"))


def test_fresh_restart_never_replaces_a_foreign_file(comm, inputs, shared_tmp_path):
    out = shared_tmp_path / "si.cif"
    if comm.rank == 0:
        out.write_text("data_si\n")
    comm.Barrier()
    with pytest.raises(StoreError, match="never overwritten"):
        driver.run([str(inputs)], out, config(restart="fresh"), comm)
    assert out.read_text() == "data_si\n"
