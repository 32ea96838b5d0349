"""k nearest neighbours against a brute-force reference (scipy cdist / pair-by-pair formulas + sort by
(distance, index)), ties, refused k, out-of-core rows, the store group and the CLI (--json, --query)."""

import json

import h5py
import numpy as np
import pytest
from scipy.spatial.distance import cdist
from scipy.stats import wasserstein_distance

from sporep_hpc.analysis import neighbours as nb
from sporep_hpc.errors import ParameterError, StoreError

# Distances: the kernels (one GEMM per tile) and scipy (pair by pair) agree to ~1e-14 on O(1) data
# (tests/test_similarity.py); 1e-12 leaves two orders of margin.
ATOL = 1e-12
METRICS = ("euclidean", "cosine", "tanimoto", "wasserstein")


def _reference_matrix(a, b, metric, e):
    """Distances by code that shares nothing with the kernels."""
    if metric in ("euclidean", "cosine"):
        return cdist(a, b, metric)
    out = np.empty((len(a), len(b)))
    for i, u in enumerate(a):
        for j, v in enumerate(b):
            if metric == "tanimoto":  # pymatgen's real-valued Tanimoto index, as 1 - T
                dot = float(np.dot(u, v))
                den = float(np.dot(u, u) + np.dot(v, v) - dot)
                out[i, j] = 0.0 if den == 0 else 1.0 - dot / den
            else:  # one window: scipy's W1 between grid points weighted by the curves
                out[i, j] = wasserstein_distance(e, e, u, v)
    return out


def _reference_neighbours(d, k, exclude_self):
    """Sort every row by (distance, index) and keep the first k, skipping the row itself."""
    idx = np.empty((d.shape[0], k), dtype=np.int64)
    for i, row in enumerate(d):
        candidates = [j for j in range(d.shape[1]) if not (exclude_self and j == i)]
        order = sorted(candidates, key=lambda j: (row[j], j))
        idx[i] = order[:k]
    return idx, np.take_along_axis(d, idx, axis=1)


def _data(rng, n=37, f=16):
    # non-negative rows (valid for every metric) on an increasing energy grid
    return np.linspace(-3.0, 2.0, f), rng.random((n, f)) ** 2


@pytest.mark.parametrize("metric", METRICS)
def test_matches_brute_force(rng, metric):
    e, x = _data(rng)
    got = nb.nearest_neighbours(x, 4, metric, energies=e, tile=5)  # 8 x 8 blocks, last one partial
    ref_i, ref_d = _reference_neighbours(_reference_matrix(x, x, metric, e), 4, exclude_self=True)
    assert got.index.dtype == np.int64 and got.index.shape == (37, 4)
    # random rows: neighbouring distances differ by ~1e-3, far above ATOL, so the order is exact
    assert np.array_equal(got.index, ref_i)
    np.testing.assert_allclose(got.distance, ref_d, rtol=0, atol=ATOL)
    assert np.all(np.diff(got.distance, axis=1) >= 0)


@pytest.mark.parametrize("tile", [1, 2, 36, 37, 500])
def test_any_tile_edge(rng, tile):
    _, x = _data(rng, n=23)
    got = nb.nearest_neighbours(x, 22, "euclidean", tile=tile)  # k = n - 1: every other row, sorted
    ref_i, ref_d = _reference_neighbours(cdist(x, x), 22, exclude_self=True)
    assert np.array_equal(got.index, ref_i)
    np.testing.assert_allclose(got.distance, ref_d, rtol=0, atol=ATOL)


@pytest.mark.parametrize("metric", METRICS)
def test_ties_go_to_the_smaller_index(metric):
    # small integers: every dot product and cumulative sum is exact, so equal rows give bitwise equal
    # distances in any implementation and the tie rule alone decides the order
    base = np.array([[1, 0, 2, 3, 0, 1], [0, 4, 1, 0, 2, 2], [3, 3, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1]], float)
    x = base[[0, 1, 0, 2, 1, 0, 3, 2, 0]]  # rows 0, 2, 5, 8 equal; 1, 4; 3, 7
    e = np.arange(6.0)
    d = _reference_matrix(x, x, metric, e)
    got = nb.nearest_neighbours(x, 5, metric, energies=e, tile=2)
    ref_i, ref_d = _reference_neighbours(d, 5, exclude_self=True)
    assert np.array_equal(got.index, ref_i)
    np.testing.assert_allclose(got.distance, ref_d, rtol=0, atol=ATOL)
    assert list(got.index[0, :3]) == [2, 5, 8]  # its three copies, in index order, self excluded
    assert list(got.index[8, :3]) == [0, 2, 5]


def test_k_out_of_range_refused(rng):
    _, x = _data(rng, n=6)
    for k in (0, 6, 7, 2.5, True):
        with pytest.raises(ParameterError, match=r"k must be an integer in \[1, 5\]"):
            nb.nearest_neighbours(x, k, "cosine")
    assert nb.nearest_neighbours(x, 5, "cosine").index.shape == (6, 5)
    with pytest.raises(ParameterError, match="at least one candidate"):
        nb.nearest_neighbours(x[:1], 1, "cosine")
    with pytest.raises(ParameterError, match=r"k must be an integer in \[1, 6\]"):
        nb.query_neighbours(x[:2], x, 7, "cosine")


def test_bad_inputs_refused(rng):
    _, x = _data(rng, n=6)
    bad = x.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ParameterError, match="row 3 feature 2"):
        nb.nearest_neighbours(bad, 2)
    with pytest.raises(ParameterError, match="metric must be one of"):
        nb.nearest_neighbours(x, 2, "manhattan")
    with pytest.raises(ParameterError, match="2-D"):
        nb.nearest_neighbours(x[0], 2)
    with pytest.raises(ParameterError, match="energies"):
        nb.nearest_neighbours(x, 2, "wasserstein")
    with pytest.raises(ParameterError, match="features"):
        nb.query_neighbours(x[:, :3], x, 2)
    with pytest.raises(ParameterError, match="NaN"):  # finite rows whose products overflow
        nb.nearest_neighbours(np.array([[1e300, 1e300], [1e300, -1e300], [0.0, 1e300]]), 1, "cosine")


@pytest.mark.parametrize("metric", METRICS)
def test_query_matches_brute_force(rng, metric):
    e, x = _data(rng, n=29)
    q = np.vstack([rng.random((5, 16)) ** 2, x[7]])  # the last query is stored row 7
    got = nb.query_neighbours(q, x, 3, metric, energies=e, tile=4)
    ref_i, ref_d = _reference_neighbours(_reference_matrix(q, x, metric, e), 3, exclude_self=False)
    assert np.array_equal(got.index, ref_i)
    np.testing.assert_allclose(got.distance, ref_d, rtol=0, atol=ATOL)
    assert got.index[-1, 0] == 7


def test_out_of_core_rows(rng, tmp_path):
    _, x = _data(rng, n=41)
    with h5py.File(tmp_path / "rows.h5", "w") as f:
        f["x"] = x
    with h5py.File(tmp_path / "rows.h5", "r") as f:
        streamed = nb.nearest_neighbours(f["x"], 3, "cosine", tile=6)
        queried = nb.query_neighbours(x[:4], f["x"], 2, "cosine", tile=6)
    in_memory = nb.nearest_neighbours(x, 3, "cosine", tile=6)
    # the same tiles from the same values: bitwise equal
    assert np.array_equal(streamed.index, in_memory.index)
    assert np.array_equal(streamed.distance, in_memory.distance)
    assert np.array_equal(queried.index[:, 0], np.arange(4))


def test_kernel_rejects_bad_shapes():
    from sporep_hpc._ext import distances as kernel

    block = np.zeros((3, 4))
    d, i = np.full((3, 2), np.inf), np.zeros((3, 2), dtype=np.int64)
    assert kernel.topk_block(block, 0, 0, False, False, d, i, 1) == 0
    assert kernel.topk_block(block, 0, 0, True, False, d, i, 1) == -2  # 4 columns own lists, 3 given
    assert kernel.topk_block(block, 0, 0, False, False, np.zeros((3, 0)), i[:, :0], 1) == -1


# ---- store and CLI -----------------------------------------------------------------------------------


def _store(path, x, e, failed=()):
    from sporep_hpc.store import FingerprintMeta, StoreHeader, StructureResult, write_store

    rows = [
        StructureResult(index=i, id=f"s{i}", status=-1, error="broken")
        if i in failed
        else StructureResult(index=i, id=f"s{i}", status=1, fingerprints={"fp": v})
        for i, v in enumerate(x)
    ]
    header = StoreHeader("{}", "2026-01-01T00:00:00+00:00", 1, "test")
    write_store(path, rows, 0, len(rows), header, {"fp": FingerprintMeta(e, {"reference": "vbm"})})
    return path


@pytest.mark.parametrize("metric", ["cosine", "wasserstein"])
def test_store_group(rng, tmp_path, metric):
    e, x = _data(rng, n=12)
    path = _store(tmp_path / "s.h5", x, e, failed={4})
    rec = nb.compute_neighbours(path, "fp", 3, metric, tile=5)
    back = nb.read_neighbours(path, f"fp_{metric}")
    assert np.array_equal(back.index, rec.index)
    assert np.array_equal(back.distance, rec.distance, equal_nan=True)
    assert back.attrs["metric"] == metric and back.attrs["fingerprint"] == "fp" and back.attrs["k"] == 3
    # row 4 failed: no neighbours, and nobody's neighbour; other rows point to store rows
    assert list(back.index[4]) == [-1, -1, -1] and np.all(np.isnan(back.distance[4]))
    keep = np.array([i for i in range(12) if i != 4])
    ref_i, ref_d = _reference_neighbours(_reference_matrix(x[keep], x[keep], metric, e), 3, exclude_self=True)
    assert np.array_equal(back.index[keep], keep[ref_i])
    np.testing.assert_allclose(back.distance[keep], ref_d, rtol=0, atol=ATOL)
    assert "s4" not in back.lists() and back.lists()["s0"][0][0] == f"s{keep[ref_i[0, 0]]}"


def test_store_errors(rng, tmp_path):
    e, x = _data(rng, n=4)
    path = _store(tmp_path / "s.h5", x, e)
    with pytest.raises(StoreError, match="no fingerprint 'other'"):
        nb.compute_neighbours(path, "other", 1)
    with pytest.raises(StoreError, match="no such store"):
        nb.compute_neighbours(tmp_path / "missing.h5", "fp", 1)
    with pytest.raises(ParameterError, match=r"\[1, 3\]"):
        nb.compute_neighbours(path, "fp", 4)
    with pytest.raises(StoreError, match="no neighbours 'fp_cosine'; stored: none"):
        nb.read_neighbours(path, "fp_cosine")


def test_cli_json(rng, tmp_path, capsys):
    from sporep_hpc.cli import main

    e, x = _data(rng, n=8)
    path = _store(tmp_path / "s.h5", x, e)
    assert main(["neighbours", str(path), "-k", "2", "--metric", "euclidean", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref_i, ref_d = _reference_neighbours(cdist(x, x), 2, exclude_self=True)
    assert list(out) == [f"s{i}" for i in range(8)]
    for i in range(8):
        assert [sid for sid, _ in out[f"s{i}"]] == [f"s{j}" for j in ref_i[i]]
        np.testing.assert_allclose([d for _, d in out[f"s{i}"]], ref_d[i], rtol=0, atol=ATOL)
    assert main(["neighbours", str(path), "-k", "3"]) == 0
    text = capsys.readouterr().out
    assert "/neighbours/fp_cosine" in text and text.count("\n  s") == 8


def test_cli_errors(rng, tmp_path, capsys):
    from sporep_hpc.cli import main

    e, x = _data(rng, n=3)
    path = _store(tmp_path / "s.h5", x, e)
    assert main(["neighbours", str(path), "-k", "3"]) == 2  # k > n - 1
    assert main(["neighbours", str(path), "-k", "0"]) == 2
    assert main(["neighbours", str(tmp_path / "none.h5"), "-k", "1"]) == 3
    assert main(["neighbours", str(path), "-k", "1", "--fingerprint", "nope"]) == 3
    with pytest.raises(SystemExit) as exc:  # argparse: choices
        main(["neighbours", str(path), "-k", "1", "--metric", "manhattan"])
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def _band_file(path, shift, rng):
    # a two-band insulator on 4 k-points; `shift` moves the conduction band (different fingerprints)
    k = 4
    bands = np.stack([-2.0 + 0.3 * rng.random(k), 1.0 + shift + 0.3 * rng.random(k)], axis=1)
    np.savez(path, bands=bands, weights=np.full(k, 0.25), n_electrons=2.0)
    return str(path)


def test_cli_query(rng, tmp_path, capsys):
    from sporep_hpc.cli import main
    from sporep_hpc.store import open_store

    files = [_band_file(tmp_path / f"b{i}.npz", 0.5 * i, rng) for i in range(5)]
    store = tmp_path / "store.h5"
    assert main(["run", *files, "-o", str(store)]) == 0
    capsys.readouterr()
    with open_store(store) as s:
        name = s.fingerprint_names[0]
        values, _, _ = s.fingerprints(name)
        ids = s.ids
    new = _band_file(tmp_path / "new.npz", 0.9, rng)
    args = ["neighbours", str(store), "-k", "3", "--metric", "euclidean", "--query", files[2], new, "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert list(out) == ["b2", "new"]
    # a stored input comes back as itself at distance 0 (same pipeline, same parameters)
    assert out["b2"][0] == [ids[2], 0.0]
    # the new file: its fingerprint from the pipeline itself, compared by brute force with the stored rows
    q_ids, q, failed = nb.query_fingerprints(store, name, [new])
    assert q_ids == ["new"] and not failed
    ref_i, ref_d = _reference_neighbours(cdist(q, values), 3, exclude_self=False)
    assert [sid for sid, _ in out["new"]] == [ids[j] for j in ref_i[0]]
    np.testing.assert_allclose([d for _, d in out["new"]], ref_d[0], rtol=0, atol=ATOL)
    # an unreadable query: the others are still answered, exit code 4 (some structures failed)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an archive")
    assert main(["neighbours", str(store), "-k", "1", "--query", str(bad), files[0]]) == 4
    captured = capsys.readouterr()
    assert "b0" in captured.out and "bad" in captured.err and "Traceback" not in captured.err
    # a structure (an operator spectrum) queried against DFT bands: refused for that query, unless mixed
    crystal = "examples:batio3?limit=1"
    assert main(["neighbours", str(store), "-k", "1", "--query", crystal, files[0]]) == 4
    captured = capsys.readouterr()
    assert "b0" in captured.out and "batio3_cubic" not in captured.out
    assert "operator spectrum, the store's rows compared are dft spectra" in captured.err
    assert main(["neighbours", str(store), "-k", "1", "--query", crystal, "--mix-kinds"]) == 0
    assert "batio3_cubic" in capsys.readouterr().out
