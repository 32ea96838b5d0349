"""k nearest neighbours over 1, 2, 3 ranks: the lists and the stored group do not depend on the rank count.

Run serially, under ``mpiexec -n 2`` and ``-n 3`` (Makefile test-mpi), and with SPOREP_FORCE_SERIAL_HDF5=1
(the rank-0 writer fallback; also forced inside the store test below).
"""

import h5py
import numpy as np
import pytest

from sporep_hpc.analysis import neighbours as nb
from sporep_hpc.errors import ParameterError

pytestmark = pytest.mark.mpi

METRICS = ("euclidean", "cosine", "tanimoto", "wasserstein")


def _data(n=13, f=10, seed=11):
    # small non-negative integers (valid for every metric, fixed seed: identical on every rank); rows
    # repeat, so exact ties cross tiles owned by different ranks and only the index rule orders them
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 4, size=(5, f)).astype(float)
    return np.arange(float(f)), base[rng.integers(0, 5, size=n)]


def _same(a, b):
    # bitwise: every distance comes from one tile computed from the same inputs, whatever rank owns it
    assert np.array_equal(a.index, b.index)
    assert np.array_equal(a.distance, b.distance)


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("n, tile, k", [(13, 3, 5), (13, 1, 12), (3, 8, 2)])
def test_rank_invariant(comm, metric, n, tile, k):
    e, x = _data(n)
    got = nb.nearest_neighbours(x, k, metric, energies=e, comm=comm, tile=tile)
    _same(got, nb.nearest_neighbours(x, k, metric, energies=e, comm=None, tile=tile))


@pytest.mark.parametrize("metric", ["euclidean", "wasserstein"])
def test_query_rank_invariant(comm, metric):
    e, x = _data(17)
    q = _data(7, seed=3)[1]
    got = nb.query_neighbours(q, x, 4, metric, energies=e, comm=comm, tile=3)  # 3 x 6 tiles
    _same(got, nb.query_neighbours(q, x, 4, metric, energies=e, comm=None, tile=3))


def test_out_of_core_rank_invariant(comm, shared_tmp_path):
    _, x = _data(19)
    path = shared_tmp_path / "rows.h5"
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            f["x"] = x
    comm.Barrier()
    with h5py.File(path, "r") as f:  # every rank reads its own tiles
        got = nb.nearest_neighbours(f["x"], 3, "cosine", comm=comm, tile=4)
    _same(got, nb.nearest_neighbours(x, 3, "cosine", tile=4))
    comm.Barrier()


def test_error_on_some_ranks_reaches_all(comm, shared_tmp_path):
    # a NaN in the last tile row of a dataset is found only by the rank reading it: all ranks raise
    _, x = _data(12)
    x[11, 0] = np.nan
    path = shared_tmp_path / "bad.h5"
    if comm.rank == 0:
        with h5py.File(path, "w") as f:
            f["x"] = x
    comm.Barrier()
    with h5py.File(path, "r") as f, pytest.raises(ParameterError, match="row 11 feature 0 is nan"):
        nb.nearest_neighbours(f["x"], 2, "euclidean", comm=comm, tile=4)
    comm.Barrier()


def _store(comm, path, x, e):
    from sporep_hpc.store import FingerprintMeta, StoreHeader, StructureResult, write_store

    if comm.rank == 0:
        rows = [
            StructureResult(index=i, id=f"s{i}", status=-1, error="broken")
            if i == 2
            else StructureResult(index=i, id=f"s{i}", status=1, fingerprints={"fp": v})
            for i, v in enumerate(x)
        ]
        header = StoreHeader("{}", "2026-01-01T00:00:00+00:00", 1, "test")
        write_store(path, rows, 0, len(rows), header, {"fp": FingerprintMeta(e, {"reference": "vbm"})})
    comm.Barrier()
    return path


@pytest.mark.parametrize("force_serial", [False, True])
@pytest.mark.parametrize("metric", ["tanimoto", "wasserstein"])
def test_store_rank_invariant(comm, shared_tmp_path, monkeypatch, metric, force_serial):
    if force_serial:
        monkeypatch.setenv("SPOREP_FORCE_SERIAL_HDF5", "1")
    e, x = _data(14)
    path = _store(comm, shared_tmp_path / f"{metric}-{int(force_serial)}.h5", x, e)
    rec = nb.compute_neighbours(path, "fp", 4, metric, comm=comm, tile=3)
    back = nb.read_neighbours(path, f"fp_{metric}")  # complete on every rank when the call returns
    keep = np.array([i for i in range(14) if i != 2])
    ref = nb.nearest_neighbours(x[keep], 4, metric, energies=e, tile=3)  # one process, same tiles
    assert np.array_equal(back.index[keep], keep[ref.index])
    assert np.array_equal(back.distance[keep], ref.distance)
    assert list(back.index[2]) == [-1] * 4 and np.all(np.isnan(back.distance[2]))
    assert np.array_equal(rec.index, back.index)
    comm.Barrier()
