"""Distance metrics against scipy/numpy references, tile decomposition, clustering, store round trip."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

from sporep_hpc.analysis import similarity as sim
from sporep_hpc.errors import ParameterError

# Tolerance: the kernels form dot products with one GEMM and transform them; scipy's cdist works
# pair by pair. Both are float64 with O(n_features) terms of size O(1), so they agree to ~1e-14;
# 1e-12 (the figure) leaves two orders of margin.
ATOL = 1e-12


def _tanimoto_reference(a, b):
    # pymatgen's real-valued Tanimoto index T = a·b / (|a|² + |b|² − a·b), written pair by pair
    out = np.empty((len(a), len(b)))
    for i, u in enumerate(a):
        for j, v in enumerate(b):
            dot = float(np.dot(u, v))
            den = float(np.dot(u, u) + np.dot(v, v) - dot)
            out[i, j] = 0.0 if den == 0 else 1.0 - dot / den
    return out


@pytest.fixture
def dos_like(rng):
    # non-negative smooth curves like a DOS: sums of Gaussians on a grid, 40 structures x 120 energies
    e = np.linspace(-6.0, 4.0, 120)
    centres = rng.uniform(-6, 4, size=(40, 5))
    widths = rng.uniform(0.2, 1.0, size=(40, 5))
    x = np.exp(-(((e[None, None, :] - centres[:, :, None]) / widths[:, :, None]) ** 2)).sum(axis=1)
    return e, x


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_against_cdist_random(rng, metric):
    x = rng.normal(size=(53, 31))
    y = rng.normal(size=(17, 31))
    d = sim.pairwise_distances(x, metric=metric)
    np.testing.assert_allclose(d, cdist(x, x, metric), rtol=0, atol=ATOL)
    np.testing.assert_allclose(sim.pairwise_distances(x, y, metric), cdist(x, y, metric), rtol=0, atol=ATOL)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_against_cdist_dos_like(dos_like, metric):
    _, x = dos_like
    d = sim.pairwise_distances(x, metric=metric)
    np.testing.assert_allclose(d, cdist(x, x, metric), rtol=0, atol=ATOL)


def test_euclidean_near_duplicates(rng):
    # rows differing by 1e-9 relative: the Gram route alone loses ~8 digits here (cancellation);
    # the kernel recomputes such pairs directly and must match cdist to 1e-12 relative to the distance
    base = rng.uniform(1, 2, size=(1, 200))
    x = base + 1e-9 * rng.normal(size=(6, 200))
    d = sim.pairwise_distances(x, metric="euclidean")
    ref = cdist(x, x)
    np.testing.assert_allclose(d, ref, rtol=1e-10, atol=1e-20)


def test_tanimoto_reference(dos_like, rng):
    _, x = dos_like
    np.testing.assert_allclose(
        sim.pairwise_distances(x, metric="tanimoto"), _tanimoto_reference(x, x), rtol=0, atol=ATOL
    )
    y = rng.normal(size=(9, x.shape[1]))
    np.testing.assert_allclose(
        sim.pairwise_distances(x, y, "tanimoto"), _tanimoto_reference(x, y), rtol=0, atol=ATOL
    )


def test_wasserstein_single_window(dos_like):
    e, x = dos_like
    d = sim.pairwise_distances(x, metric="wasserstein", energies=e)
    # scipy: 1-D W1 between the grid points weighted by the curves (normalised internally)
    ref = np.array([[wasserstein_distance(e, e, a, b) for b in x] for a in x])
    np.testing.assert_allclose(d, ref, rtol=0, atol=ATOL)


def test_wasserstein_windows_and_zero_area(dos_like):
    _, x = dos_like
    # a concatenation of two windows (vbm-like 0..59, cbm-like 60..119) on their own grids
    e2 = np.concatenate([np.linspace(-3, 0, 60), np.linspace(0, 5, 60)])
    x = x.copy()
    x[2, 60:] = 0.0  # zero area in the second window of row 2 only
    x[3] = 0.0  # both windows empty
    off = sim.window_offsets_from_sizes([60, 60])
    d = sim.pairwise_distances(x, metric="wasserstein", energies=e2, window_offsets=off)

    def one(a, b, lo, hi):
        ea = e2[lo:hi]
        za, zb = a[lo:hi].sum() == 0, b[lo:hi].sum() == 0
        if za and zb:
            return 0.0
        if za or zb:
            return ea[-1] - ea[0]  # DESIGN §3: the window's width
        return wasserstein_distance(ea, ea, a[lo:hi], b[lo:hi])

    ref = np.array([[one(a, b, 0, 60) + one(a, b, 60, 120) for b in x] for a in x])
    np.testing.assert_allclose(d, ref, rtol=0, atol=ATOL)
    assert d[2, 5] >= 5.0 and d[3, 3] == 0.0


def test_zero_vector_rules():
    x = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 2.0, 0.0]])
    cos = sim.pairwise_distances(x, metric="cosine")
    tan = sim.pairwise_distances(x, metric="tanimoto")
    # DESIGN §3: two zero vectors -> 0; one zero vector -> 1 (cosine) and 1 - 0/|b|² = 1 (tanimoto)
    assert cos[0, 1] == 0.0 and cos[0, 2] == 1.0 and cos[2, 0] == 1.0
    assert tan[0, 1] == 0.0 and tan[0, 2] == 1.0


@pytest.mark.parametrize("metric", sim.METRICS)
def test_symmetric_zero_diagonal_tiled(dos_like, metric):
    e, x = dos_like
    full = sim.pairwise_distances(x, metric=metric, energies=e)
    tiled = sim.distance_matrix(x, metric, energies=e, tile=7)  # 40 rows: 6 tiles per side, ragged edge
    assert np.array_equal(tiled, tiled.T)
    assert np.all(np.diag(tiled) == 0.0)
    np.testing.assert_allclose(tiled, full, rtol=0, atol=ATOL)


@pytest.mark.parametrize("n, tile", [(0, 4), (1, 4), (10, 3), (12, 4), (13, 100)])
def test_tile_grid_partition(n, tile):
    # every upper-triangle block exactly once over the ranks, the same tiles for any rank count
    cover = {}
    reference = None
    for size in (1, 2, 3, 5):
        tiles = [t for r in range(size) for t in sim.tile_grid(n, tile, size, r)]
        keyset = sorted((t.r0, t.r1, t.c0, t.c1) for t in tiles)
        assert len(keyset) == len(set(keyset))
        reference = reference or keyset
        assert keyset == reference
    hits = np.zeros((n, n), dtype=int)
    for r0, r1, c0, c1 in reference or []:
        assert r0 <= c0
        hits[r0:r1, c0:c1] += 1
        if r0 != c0:
            hits[c0:c1, r0:r1] += 1
        cover[(r0, c0)] = True
    assert np.all(hits == 1)


def test_cluster_groups():
    from scipy.cluster.hierarchy import fcluster

    # two groups far apart on a line: points 0..4 near 0, points 5..9 near 100
    pts = np.concatenate([np.arange(5) * 0.1, 100 + np.arange(5) * 0.1])[:, None]
    d = cdist(pts, pts)
    z = sim.cluster(d, "average")
    assert z.shape == (9, 4)
    labels = fcluster(z, 2, criterion="maxclust")
    assert len(set(labels[:5])) == 1 and len(set(labels[5:])) == 1 and labels[0] != labels[5]
    assert z[-1, 2] == pytest.approx(100.0, abs=0.5)  # last merge at the average gap


def test_errors(rng):
    x = rng.random((4, 5))
    with pytest.raises(ParameterError, match="metric must be one of"):
        sim.pairwise_distances(x, metric="manhattan")
    with pytest.raises(ParameterError, match="energies"):
        sim.pairwise_distances(x, metric="wasserstein")
    with pytest.raises(ParameterError, match="non-negative"):
        sim.pairwise_distances(-x, metric="wasserstein", energies=np.arange(5.0))
    with pytest.raises(ParameterError, match="finite"):
        bad = x.copy()
        bad[1, 2] = np.nan
        sim.pairwise_distances(bad)
    with pytest.raises(ParameterError, match="2-D"):
        sim.pairwise_distances(np.arange(3.0))
    with pytest.raises(ParameterError, match="symmetric"):
        sim.cluster(rng.random((3, 3)))
    with pytest.raises(ParameterError, match="window offsets"):
        sim.pairwise_distances(x, metric="wasserstein", energies=np.arange(5.0), window_offsets=[0, 3, 3, 5])


# ---- store round trip ---------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", sim.METRICS)
def test_compute_similarity_store(tmp_path, dos_like, make_store, metric):
    from sporep_hpc.store.groups import read_similarity

    e, x = dos_like
    path = make_store(tmp_path / "s.h5", x, e, failed=(7,))
    res = sim.compute_similarity(path, "kinetic", metric, tile=6)
    keep = [i for i in range(len(x)) if i != 7]
    assert res.ids == [f"s{i}" for i in keep] and list(res.index) == keep
    rec = read_similarity(path, res.name)
    ref = sim.pairwise_distances(x[keep], metric=metric, energies=e)
    np.testing.assert_array_equal(rec.distance, rec.distance.T)
    np.testing.assert_allclose(rec.distance, ref, rtol=0, atol=ATOL)
    assert rec.attrs["metric"] == metric and rec.attrs["fingerprint"] == "kinetic"
    assert rec.linkage.shape == (len(keep) - 1, 4) and rec.attrs["linkage_method"] == "average"
    assert rec.ids == res.ids
    # a second run with another tile size replaces the group and gives the same matrix
    sim.compute_similarity(path, "kinetic", metric, tile=100)
    np.testing.assert_allclose(read_similarity(path, res.name).distance, rec.distance, rtol=0, atol=ATOL)


def test_compute_similarity_errors(tmp_path, dos_like, make_store):
    from sporep_hpc.errors import StoreError

    e, x = dos_like
    path = make_store(tmp_path / "s.h5", x[:5], e)
    with pytest.raises(StoreError, match="no fingerprint 'overlap'"):
        sim.compute_similarity(path, "overlap", "cosine")
    with pytest.raises(StoreError, match="no such store"):
        sim.compute_similarity(tmp_path / "missing.h5", "kinetic", "cosine")


def test_no_linkage_beyond_max(tmp_path, dos_like, make_store):
    from sporep_hpc.store.groups import read_similarity

    e, x = dos_like
    path = make_store(tmp_path / "s.h5", x[:6], e)
    res = sim.compute_similarity(path, "kinetic", "euclidean", max_linkage=5, tile=4)
    assert res.linkage is None and read_similarity(path, res.name).linkage is None


@pytest.mark.parametrize("metric", sim.METRICS)
def test_thread_count_does_not_change_results(dos_like, metric):
    # each element is computed by one thread from the same inputs: bitwise identical for any count
    e, x = dos_like
    one = sim.pairwise_distances(x, metric=metric, energies=e, n_threads=1)
    two = sim.pairwise_distances(x, metric=metric, energies=e, n_threads=2)
    assert np.array_equal(one, two)
