"""Distance tiles over 1, 2, 3 ranks: the matrix and the stored group do not depend on the rank count.

Run serially, under ``mpiexec -n 2`` and ``-n 3`` (Makefile test-mpi), and with SPOREP_FORCE_SERIAL_HDF5=1
(the rank-0 writer fallback; also forced inside the test below).
"""

import numpy as np
import pytest

from sporep_hpc.analysis import similarity as sim

pytestmark = pytest.mark.mpi

METRICS = sim.METRICS


def _data(n=11, f=24, seed=7):
    # non-negative rows (valid for every metric), fixed seed: identical on every rank
    rng = np.random.default_rng(seed)
    e = np.linspace(-2.0, 3.0, f)
    return e, rng.random((n, f)) ** 2


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n, tile", [(11, 3), (2, 5), (1, 4)])
def test_in_memory_matrix_rank_invariant(comm, metric, n, tile):
    e, x = _data(n)
    got = sim.distance_matrix(x, metric, energies=e, comm=comm, tile=tile)
    ref = sim.distance_matrix(x, metric, energies=e, comm=None, tile=tile)  # one rank, same tiles
    # bitwise: every tile is computed by exactly one rank from the same inputs
    assert np.array_equal(got, ref)


@pytest.mark.parametrize("metric", ["cosine", "wasserstein"])
def test_store_rank_invariant(comm, shared_tmp_path, fingerprint_store, serial_hdf5, metric):
    from scipy.spatial.distance import cdist

    from sporep_hpc.store.groups import read_similarity

    e, x = _data(13)
    path = fingerprint_store(shared_tmp_path / f"{metric}-{int(serial_hdf5)}.h5", x, e)
    res = sim.compute_similarity(path, "fp", metric, comm=comm, tile=4)  # 4 x 4 = 10 tiles over the ranks
    rec = read_similarity(path, res.name)
    ref = sim.distance_matrix(x, metric, energies=e, tile=4)
    assert np.array_equal(rec.distance, ref)
    if metric == "cosine":
        np.testing.assert_allclose(rec.distance, cdist(x, x, "cosine"), rtol=0, atol=1e-12)
    assert rec.linkage.shape == (12, 4) and np.array_equal(res.linkage, rec.linkage)
    comm.Barrier()


def test_more_ranks_than_tiles(comm, shared_tmp_path, fingerprint_store):
    from sporep_hpc.store.groups import read_similarity

    e, x = _data(3)
    path = fingerprint_store(shared_tmp_path / "few.h5", x, e)
    res = sim.compute_similarity(path, "fp", "euclidean", comm=comm, tile=8)  # one tile: other ranks idle
    rec = read_similarity(path, res.name)
    assert np.array_equal(rec.distance, sim.distance_matrix(x, "euclidean", tile=8))
    comm.Barrier()
