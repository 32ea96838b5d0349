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
             "test_scores": rng.random((3, 4)), "metric": "balanced_accuracy_adjusted", "chance": 0.0},
            tmp_path / "sub" / "lc.png",
        ),
    ]
    for p in paths:
        _check_png(p)


def _axes_of(monkeypatch):
    """Capture the Axes of every figure `plots` saves (the PNG alone cannot be inspected for lines)."""
    seen = []
    save = plots._save

    def keep(fig, path):
        seen.extend(fig.axes)
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return seen


def test_dendrogram_branches_are_neutral_and_method_named(tmp_path, rng, monkeypatch):
    from matplotlib.colors import to_rgba

    axes = _axes_of(monkeypatch)
    x = rng.random((10, 5))
    plots.plot_dendrogram(linkage(pdist(x), "complete"), [f"s{i}" for i in range(10)], tmp_path / "d.png",
                          groups=["a", "b"] * 5, method="complete", metric="cosine")
    ax = axes[0]
    branch_colours = {to_rgba(c) for coll in ax.collections for c in coll.get_colors()}
    assert branch_colours == {to_rgba(plots.NEUTRAL)}  # scipy would colour clusters otherwise
    assert "complete linkage" in ax.get_title()
    assert "cosine" in ax.get_ylabel() and "(dimensionless)" in ax.get_ylabel()


def test_learning_curve_draws_the_chance_line(tmp_path, monkeypatch):
    axes = _axes_of(monkeypatch)
    curve = {"train_sizes": [4, 8], "train_scores": [[1, 1], [1, 1]], "test_scores": [[0.2, 0.4], [0.5, 0.7]],
             "metric": "balanced_accuracy_adjusted", "chance": 0.0}
    plots.plot_learning_curve(curve, tmp_path / "lc.png")
    ax = axes[0]
    flat = [line for line in ax.get_lines() if np.ptp(line.get_ydata()) == 0 and line.get_ydata()[0] == 0.0]
    assert flat and flat[0].get_linestyle() == "--"
    assert ax.get_ylabel() == "balanced_accuracy_adjusted (dimensionless)"
    assert "(count)" in ax.get_xlabel()


def test_every_axis_has_a_unit(tmp_path, rng, monkeypatch):
    axes = _axes_of(monkeypatch)
    e = np.linspace(-5, 5, 50)
    x = rng.random((6, 50))
    plots.plot_fingerprints(e, x[:2], ["a", "b"], tmp_path / "f.png", references=["fermi"])
    plots.plot_importance(e, rng.random(50), rng.random(50), tmp_path / "i.png")
    plots.plot_confusion(np.eye(2, dtype=int), ["p", "q"], tmp_path / "c.png")
    units = ("(eV)", "(eV, absolute)", "(count)", "(dimensionless)", "(fraction, sums to 1)",
             "drop)", "/cell)", "class")
    for ax in axes:
        for label in (ax.get_xlabel(), ax.get_ylabel()):
            assert not label or any(u in label for u in units), label
    assert axes[0].get_xlabel() == "E − E_F (eV)"


def test_representative_rows():
    # three well separated clusters on a line; the medoid of each is its middle point
    pts = np.array([0.0, 0.1, 0.2, 10.0, 10.1, 10.2, 20.0, 20.1, 20.2])[:, None]
    d = squareform(pdist(pts))
    z = linkage(pdist(pts), "average")
    assert sorted(plots.representative_rows(d, linkage=z, k=3)) == [1, 4, 7]
    assert len(plots.representative_rows(d, linkage=z, k=2)) == 2
    groups = ["a", "a", "a", "b", "b", "b", "a", "c", "c"]
    # group a = rows 0,1,2,6: summed distances 20.3, 20.1, 20.1 (tie: first), 59.7 -> row 1
    assert plots.representative_rows(d, groups=groups) == [1, 4, 7]
    assert plots.representative_rows(d) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ParameterError, match="one label per row"):
        plots.representative_rows(d, groups=["a"])


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
