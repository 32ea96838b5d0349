"""MPI test harness: every test here runs on 1, 2 and 3 ranks (see the Makefile).

Tests get a private duplicate of COMM_WORLD (`comm`), so hidden COMM_WORLD use shows.
Ranks other than 0 report only failures, so the output keeps one summary.
"""

from pathlib import Path

import pytest
from mpi4py import MPI


def pytest_configure(config):
    if MPI.COMM_WORLD.rank > 0:
        config.option.verbose = -2
        config.option.reportchars = "fE"


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
