"""MPI test harness: every test here runs on 1, 2 and 3 ranks (see the Makefile).

Tests get a private duplicate of COMM_WORLD (`comm`), so hidden COMM_WORLD use shows.
Ranks other than 0 write their report to a temporary file, shown only when that rank
fails, so the output keeps one summary (rank 0's) and still shows any rank's failure.
"""

import sys
import tempfile
from pathlib import Path

import pytest
from mpi4py import MPI

_quiet = {"report": None, "failed": False}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    if MPI.COMM_WORLD.rank > 0:
        _quiet["report"] = tempfile.TemporaryFile("w+")
        sys.stdout = _quiet["report"]  # the terminal reporter, created after this hook, writes here


def pytest_sessionfinish(session, exitstatus):
    _quiet["failed"] = exitstatus != 0


def pytest_unconfigure(config):
    report = _quiet["report"]
    if report is not None:
        sys.stdout = sys.__stdout__
        if _quiet["failed"]:
            report.seek(0)
            sys.stderr.write(f"---- report of rank {MPI.COMM_WORLD.rank} ----\n{report.read()}")
        report.close()


@pytest.fixture
def comm():
    dup = MPI.COMM_WORLD.Dup()
    yield dup
    dup.Free()


@pytest.fixture
def shared_tmp_path(comm, tmp_path_factory):
    """One temporary directory that all ranks of `comm` see (rank 0 creates it)."""
    path = str(tmp_path_factory.mktemp("mpi")) if comm.rank == 0 else None
    return Path(comm.bcast(path, root=0))


@pytest.fixture
def eigen_cost_only(monkeypatch):
    """The cost model reduced to its eigen term n_ao³·n_k (fixed parts zeroed): from 2 ranks on, a
    structure with many k-points then costs more than one rank's share and is split into k-point chunks."""
    import sporep_hpc.parallel.plan as plan

    monkeypatch.setattr(plan, "COST_CONSTANT", 0.0)
    monkeypatch.setattr(plan, "COST_INTEGRAL_WEIGHT", 0.0)


@pytest.fixture(params=[False, True], ids=["mpio", "serial-hdf5"])
def serial_hdf5(request, monkeypatch) -> bool:
    """Run the test twice: with parallel HDF5 where available, then with SPOREP_FORCE_SERIAL_HDF5=1 (the
    rank-0 writer fallback). The value says which."""
    if request.param:
        monkeypatch.setenv("SPOREP_FORCE_SERIAL_HDF5", "1")
    return request.param


@pytest.fixture
def fingerprint_store(comm, make_store):
    """`make_store` on rank 0 (all ranks wait), fingerprint named "fp": ``fingerprint_store(path, x,
    energies, failed=()) -> path``."""

    def write(path, x, energies, failed=()):
        if comm.rank == 0:
            make_store(path, x, energies, failed=failed, name="fp")
        comm.Barrier()
        return path

    return write
