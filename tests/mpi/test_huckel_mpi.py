"""The extended-Hückel operator through the MPI driver (issue 14, test (e)): the store does not depend
on the rank count or the schedule, and a stopped run resumes to the same store. Runs at 1, 2 and 3
ranks and with the serial-HDF5 fallback (see the Makefile)."""

import pytest
from _references import assert_same_store, structures
from mpi4py import MPI

from sporep_hpc.config import build_config
from sporep_hpc.parallel.driver import StopFlag, run

pytestmark = pytest.mark.mpi

HUCKEL = {"operator": "huckel", "fingerprints": "fermi,vbm_cbm", "kdensity": 0.5, "progress_interval": 0.5}


@pytest.fixture
def crystals(comm, shared_tmp_path):
    """Four small crystals: a metal (Cu), a semimetal (graphite), an ionic and a covalent insulator."""
    d = shared_tmp_path / "crystals"
    if comm.rank == 0:
        d.mkdir()
        for name in ("cu", "graphite", "nacl", "si"):
            structures()[name].to(filename=str(d / f"{name}.json"))
    comm.Barrier()
    return d


@pytest.fixture
def one_rank_store(comm, crystals, shared_tmp_path):
    """The store of a one-rank run (rank 0, COMM_SELF); every rank waits for it."""
    path = shared_tmp_path / "one-rank.h5"
    if comm.rank == 0:
        run([str(crystals)], path, build_config(overrides=HUCKEL), MPI.COMM_SELF)
    comm.Barrier()
    return path


@pytest.mark.parametrize("schedule", ["dynamic", "static"])
def test_huckel_store_is_rank_invariant(comm, crystals, one_rank_store, shared_tmp_path, schedule):
    out = shared_tmp_path / f"{schedule}.h5"
    report = run([str(crystals)], out, build_config(overrides={**HUCKEL, "schedule": schedule}), comm)
    assert report.exit_code == 0 and report.n_done == 4, report.failures
    assert_same_store(out, one_rank_store)


def test_huckel_run_resumes_to_the_same_store(comm, crystals, one_rank_store, shared_tmp_path):
    out = shared_tmp_path / "resumed.h5"
    config = build_config(overrides={**HUCKEL, "schedule": "static", "journal_interval": 0})
    stop = StopFlag()

    def stop_early(n):
        if comm.rank == 0 and n == 1:
            stop.set()

    first = run([str(crystals)], out, config, comm, stop=stop, on_task_done=stop_early)
    assert first.stopped and not out.exists()
    second = run([str(crystals)], out, config, comm)
    assert second.exit_code == 0 and second.n_skipped >= 1, second  # finished work is not recomputed
    assert_same_store(out, one_rank_store)
