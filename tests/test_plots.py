"""Every figure is written as a valid, non-blank PNG."""

import numpy as np
import pytest
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import pdist, squareform

from sporep_hpc import plots
from sporep_hpc.errors import ParameterError


def _check_png(path):
    from matplotlib.image import imread

    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.01  # not a blank canvas


def test_all_figures(tmp_path, rng):
    e = np.concatenate([np.linspace(-2, 0, 40), np.linspace(0, 3, 40)])
    x = rng.random((12, 80))
    ids = [f"s{i}" for i in range(12)]
    z = linkage(pdist(x), "average")
    paths = [
        plots.plot_fingerprints(e, x[:3], ids[:3], tmp_path / "fp.png", window_offsets=[0, 40, 80]),
        plots.plot_distance_heatmap(squareform(pdist(x)), ids, tmp_path / "heat.png", linkage=z),
        plots.plot_dendrogram(z, ids, tmp_path / "dendro.png", groups=["a", "b", "c"] * 4),
        plots.plot_confusion(np.array([[5, 1], [2, 7]]), ["metallic", "semiconducting"], tmp_path / "cm.png"),
        plots.plot_importance(e, rng.random(80), rng.normal(size=80), tmp_path / "imp.png",
                              permutation_std=rng.random(80) * 0.1, window_offsets=[0, 40, 80]),
        plots.plot_learning_curve(
            {"train_sizes": [4, 8, 12], "train_scores": rng.random((3, 4)),
             "test_scores": rng.random((3, 4))},
            tmp_path / "sub" / "lc.png",
        ),
    ]
    for p in paths:
        _check_png(p)


def test_shape_mismatch(tmp_path):
    with pytest.raises(ParameterError, match="must match energies"):
        plots.plot_fingerprints(np.arange(5.0), np.zeros((2, 4)), ["a", "b"], tmp_path / "x.png")


# ---- the demo pipeline on a reduced set (the commands of `make demo`, in-process, one rank) -----------


def test_demo_pipeline_reduced(tmp_path, monkeypatch, capsys):
    import csv

    from sporep_hpc.cli import main
    from sporep_hpc.cli.report import main as report_main

    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        monkeypatch.setenv(var, "1")  # `run` exports thread counts; restore them after the test
    store, figs = tmp_path / "demo.h5", tmp_path / "figs"
    # 4 BaTiO3 polymorphs + the 6 tubes with <= 24 atoms: (4,0) (5,0) (6,0) (4,4) (5,5) (6,6)
    assert main(["run", "examples:batio3", "examples:cnt?max_atoms=24", "-o", str(store)]) == 0
    assert main(["similarity", str(store), "--metric", "cosine", "--plots", str(figs)]) == 0
    out = capsys.readouterr().out
    assert "between 10 structures" in out and "nearest neighbours" in out
    # real fingerprints: the stored matrix against scipy's cdist on the stored vectors (1e-12)
    from scipy.spatial.distance import cdist

    from sporep_hpc.store import open_store
    from sporep_hpc.store.groups import read_similarity

    with open_store(store) as s:
        values, _, _ = s.fingerprints("kinetic")
    np.testing.assert_allclose(
        read_similarity(store, "kinetic_cosine").distance, cdist(values, values, "cosine"), rtol=0, atol=1e-12
    )
    args = ["classify", str(store), "--labels", "property:electronic", "--trees", "20", "--folds", "2",
            "--repeats", "1", "--groups", "8", "--plots", str(figs)]
    assert main(args) == 0
    out = capsys.readouterr().out
    # zone folding: (6,0), (4,4), (5,5), (6,6) metallic; (4,0), (5,0) semiconducting
    assert "metallic (4), semiconducting (2)" in out and "model saved" in out
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(store), "--model", str(store), "-o", str(pred)]) == 0
    with pred.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 10 and {r["label"] for r in rows} <= {"metallic", "semiconducting"}
    capsys.readouterr()
    assert report_main([str(store), "--plots", str(figs)]) == 0
    report = capsys.readouterr().out
    assert "BaTiO3 polymorphs" in report and "closest:" in report and "nanotubes: 6 tubes" in report
    pngs = sorted(p.name for p in figs.glob("*.png"))
    assert pngs == sorted([
        "kinetic_cosine_heatmap.png", "kinetic_cosine_dendrogram.png", "kinetic_fingerprints.png",
        "kinetic_confusion.png", "kinetic_importance.png", "kinetic_learning_curve.png",
    ])
    for name in pngs:
        _check_png(figs / name)
    assert main(["examples"]) == 0
    assert "cnt" in capsys.readouterr().out
