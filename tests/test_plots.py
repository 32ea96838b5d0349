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
