"""Figures (matplotlib, Agg canvas, PNG): fingerprints, distance heatmap, dendrogram, confusion matrix,
feature importance versus energy, learning curve.

Every function takes arrays (no store access), writes one PNG and returns its path. Figures are built
with `matplotlib.figure.Figure` and an Agg canvas, so no pyplot state or display is involved.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import ParameterError

__all__ = [
    "NEUTRAL",
    "plot_confusion",
    "plot_dendrogram",
    "plot_distance_heatmap",
    "plot_fingerprints",
    "plot_importance",
    "plot_learning_curve",
    "representative_rows",
]

DPI = 120
MAX_TICK_LABELS = 60
#: Branch colour of dendrograms: neutral, so that only the leaf labels carry group colours.
NEUTRAL = "0.3"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _windows(n: int, offsets) -> list[tuple[int, int]]:
    if offsets is None:
        return [(0, n)]
    off = [int(o) for o in offsets]
    return list(itertools.pairwise(off))


def plot_fingerprints(
    energies: np.ndarray,
    values: np.ndarray,
    labels: Sequence[str],
    path: str | Path,
    *,
    window_offsets: Sequence[int] | None = None,
    references: Sequence[str] | None = None,
    title: str = "fingerprints",
    ylabel: str = "DOS (states/eV/cell)",
) -> Path:
    """Fingerprint curves of a few structures (see `representative_rows`), one panel per window.

    Parameters
    ----------
    energies : ndarray of shape (n_features,), eV
    values : ndarray of shape (n_curves, n_features)
    labels : sequence of str, length n_curves
    path : path of the PNG
    window_offsets : feature offsets of concatenated windows (default one window)
    references : sequence of str, one per window, optional
        The windows' references (``fermi``, ``vbm``, ``cbm``, ``zero``): the x axis then reads
        "E − E_F (eV)" etc.
    """
    values = np.atleast_2d(np.asarray(values, dtype=float))
    energies = np.asarray(energies, dtype=float)
    if values.shape[1] != energies.size or len(labels) != values.shape[0]:
        raise ParameterError(
            f"values {values.shape} must match energies ({energies.size}) and labels ({len(labels)})"
        )
    wins = _windows(energies.size, window_offsets)
    fig = _figure(4.0 * len(wins) + 2.0, 3.6)
    axes = fig.subplots(1, len(wins), squeeze=False)[0]
    for k, (lo, hi) in enumerate(wins):
        ax = axes[k]
        for row, label in zip(values, labels, strict=True):
            ax.plot(energies[lo:hi], row[lo:hi], lw=1.0, label=label)
        ax.set_xlabel(_axis_label(references, k))
        if k == 0:
            ax.set_ylabel(ylabel)
    axes[-1].legend(fontsize="small", loc="best")
    fig.suptitle(title)
    return _save(fig, path)


_REFERENCE_LABEL = {
    "fermi": "E − E_F (eV)", "vbm": "E − VBM (eV)", "cbm": "E − CBM (eV)", "zero": "E (eV, absolute)",
}


def _axis_label(references: Sequence[str] | None, k: int) -> str:
    """x label of window `k`: the energy relative to its reference, in eV."""
    ref = references[k] if references is not None and k < len(references) else None
    return _REFERENCE_LABEL.get(ref, "energy (eV)")


def representative_rows(
    distance: np.ndarray,
    *,
    groups: Sequence[str] | None = None,
    linkage: np.ndarray | None = None,
    k: int = 6,
) -> list[int]:
    """Rows to show in a fingerprint figure: one medoid per group, else per cluster, else the first `k`.

    The medoid of a set of rows is the one with the smallest summed distance to the others of the set.
    With `groups` (one label per row) every group gets its medoid (groups in sorted order, at most `k`);
    otherwise, with a scipy `linkage` of the same rows, the tree is cut into at most `k` clusters and each
    cluster gets its medoid (clusters in dendrogram order).

    Parameters
    ----------
    distance : ndarray of shape (n, n)
        Symmetric distances of the rows.
    groups : sequence of str, length n, optional
    linkage : ndarray of shape (n - 1, 4), optional
    k : int, >= 1

    Returns
    -------
    list of int
        Row indices, at most `k`.
    """
    from scipy.cluster.hierarchy import fcluster, leaves_list

    d = np.asarray(distance, dtype=float)
    n = d.shape[0]
    if d.shape != (n, n) or k < 1:
        raise ParameterError(f"distance must be a square matrix and k >= 1; got {d.shape} and k={k}")
    if groups is not None:
        labels = np.asarray([str(g) for g in groups])
        if labels.shape != (n,):
            raise ParameterError(f"groups must have one label per row ({n}); got {labels.size}")
        sets = [np.flatnonzero(labels == g) for g in sorted(set(labels))]
    elif linkage is not None and n > 1:
        cut = fcluster(np.asarray(linkage, dtype=float), min(k, n), criterion="maxclust")
        order = leaves_list(np.asarray(linkage, dtype=float))
        first = {}
        for pos, row in enumerate(order):
            first.setdefault(cut[row], pos)
        sets = [np.flatnonzero(cut == c) for c in sorted(first, key=first.get)]
    else:
        return list(range(min(k, n)))
    return [int(m[np.argmin(d[np.ix_(m, m)].sum(axis=1))]) for m in sets[:k]]


def plot_distance_heatmap(
    distance: np.ndarray,
    ids: Sequence[str],
    path: str | Path,
    *,
    linkage: np.ndarray | None = None,
    metric: str = "",
    title: str = "distance matrix",
) -> Path:
    """Distance matrix as a heatmap, rows and columns in dendrogram leaf order when `linkage` is given."""
    from scipy.cluster.hierarchy import leaves_list

    d = np.asarray(distance, dtype=float)
    n = d.shape[0]
    order = leaves_list(linkage) if linkage is not None and n > 1 else np.arange(n)
    d = d[np.ix_(order, order)]
    names = [ids[i] for i in order]
    size = min(12.0, 3.0 + 0.18 * n)
    fig = _figure(size + 1.5, size)
    ax = fig.add_subplot()
    from matplotlib.colors import PowerNorm

    # square-root colour scale: small distances (near neighbours) stay distinguishable next to large ones
    vmax = float(d.max()) if d.size and d.max() > 0 else 1.0
    im = ax.imshow(d, cmap="viridis", interpolation="nearest", norm=PowerNorm(0.5, vmin=0.0, vmax=vmax))
    what = f"{metric} distance" if metric else "distance"
    fig.colorbar(im, ax=ax, shrink=0.8, label=f"{what} (square-root colour scale)")
    if n <= MAX_TICK_LABELS:
        ax.set_xticks(range(n), names, rotation=90, fontsize="x-small")
        ax.set_yticks(range(n), names, fontsize="x-small")
    ax.set_xlabel("structure")
    ax.set_ylabel("structure")
    ax.set_title(title + (" (dendrogram order)" if linkage is not None else ""))
    return _save(fig, path)


def plot_dendrogram(
    linkage: np.ndarray,
    ids: Sequence[str],
    path: str | Path,
    *,
    groups: Sequence[str] | None = None,
    method: str = "average",
    metric: str = "",
    title: str = "hierarchical clustering",
) -> Path:
    """Dendrogram of a scipy linkage with neutral branches; leaf labels coloured by `groups` (e.g. nanotube
    family). The title names the linkage `method`; the axis the `metric` whose distances were clustered."""
    from scipy.cluster.hierarchy import dendrogram

    n = len(ids)
    fig = _figure(max(6.0, min(16.0, 0.22 * n + 3.0)), 4.8)
    ax = fig.add_subplot()
    # color_threshold 0: every branch gets above_threshold_color (scipy colours clusters otherwise)
    dendrogram(np.asarray(linkage, dtype=float), labels=list(ids), ax=ax, leaf_rotation=90,
               leaf_font_size=7 if n <= MAX_TICK_LABELS else 0, color_threshold=0,
               above_threshold_color=NEUTRAL)
    if groups is not None and n <= MAX_TICK_LABELS:
        palette = ["tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown", "tab:pink"]
        kinds = sorted(set(groups))
        colour = {g: palette[i % len(palette)] for i, g in enumerate(kinds)}
        by_id = dict(zip(ids, groups, strict=True))
        for tick in ax.get_xmajorticklabels():
            tick.set_color(colour[by_id[tick.get_text()]])
        handles = [ax.plot([], [], "s", color=colour[g], label=g)[0] for g in kinds]
        ax.legend(handles=handles, fontsize="small", loc="upper right", title="leaf labels")
    unit = "dimensionless" if metric in ("cosine", "correlation") else "units of the fingerprint"
    ax.set_ylabel(f"merge height: {metric or 'fingerprint'} distance ({unit})")
    ax.set_xlabel("structure")
    ax.set_title(f"{title} ({method} linkage)")
    return _save(fig, path)


def plot_confusion(
    confusion: np.ndarray, classes: Sequence[str], path: str | Path, *, title: str = ""
) -> Path:
    """Confusion matrix (rows true, columns predicted) with counts in the cells."""
    c = np.asarray(confusion)
    k = len(classes)
    fig = _figure(1.2 * k + 3.0, 1.1 * k + 2.4)
    ax = fig.add_subplot()
    im = ax.imshow(c, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8, label="structures (count)")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(c[i, j])), ha="center", va="center",
                    color="white" if c[i, j] > c.max() / 2 else "black")
    ax.set_xticks(range(k), classes, rotation=30)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "out-of-fold confusion matrix")
    return _save(fig, path)


def plot_importance(
    energies: np.ndarray,
    impurity: np.ndarray,
    permutation: np.ndarray,
    path: str | Path,
    *,
    permutation_std: np.ndarray | None = None,
    window_offsets: Sequence[int] | None = None,
    references: Sequence[str] | None = None,
    title: str = "feature importance",
) -> Path:
    """Impurity and permutation importances against the fingerprint energies (one panel per window;
    `references` as in `plot_fingerprints`)."""
    energies = np.asarray(energies, dtype=float)
    wins = _windows(energies.size, window_offsets)
    fig = _figure(4.0 * len(wins) + 2.5, 5.0)
    axes = fig.subplots(2, len(wins), squeeze=False, sharex="col")
    for k, (lo, hi) in enumerate(wins):
        e = energies[lo:hi]
        axes[0, k].plot(e, np.asarray(impurity)[lo:hi], color="tab:green", lw=1.0)
        p = np.asarray(permutation)[lo:hi]
        axes[1, k].plot(e, p, color="tab:purple", lw=1.0)
        if permutation_std is not None:
            s = np.asarray(permutation_std)[lo:hi]
            axes[1, k].fill_between(e, p - s, p + s, color="tab:purple", alpha=0.25, lw=0)
        axes[1, k].axhline(0.0, color="0.5", lw=0.5)
        axes[1, k].set_xlabel(_axis_label(references, k))
    axes[0, 0].set_ylabel("impurity importance\n(fraction, sums to 1)")
    axes[1, 0].set_ylabel("permutation importance\n(balanced-accuracy drop)")
    fig.suptitle(title)
    return _save(fig, path)


def plot_learning_curve(curve: dict, path: str | Path, *, title: str = "learning curve") -> Path:
    """Training and cross-validated scores versus training-set size (mean ± std over folds), with the
    chance level.

    Parameters
    ----------
    curve : dict
        ``train_sizes`` (n_sizes,), ``train_scores`` and ``test_scores`` (n_sizes, n_folds), ``metric`` (the
        score's name, as the classification summary prints it) and ``chance`` (its chance level), as in
        `sporep_hpc.analysis.classify.ClassificationResult.learning_curve`.
    """
    sizes = np.asarray(curve["train_sizes"], dtype=float)
    metric, chance = str(curve["metric"]), float(curve["chance"])
    fig = _figure(5.5, 4.0)
    ax = fig.add_subplot()
    series = (("train_scores", "tab:blue", "training"), ("test_scores", "tab:orange", "cross-validation"))
    low = chance
    for key, colour, label in series:
        s = np.asarray(curve[key], dtype=float)
        mean, std = s.mean(axis=1), s.std(axis=1)
        ax.plot(sizes, mean, "o-", color=colour, label=label)
        ax.fill_between(sizes, mean - std, mean + std, color=colour, alpha=0.2, lw=0)
        low = min(low, float((mean - std).min()))
    ax.axhline(chance, color=NEUTRAL, ls="--", lw=1.0, label=f"chance ({chance:g})")
    ax.set_xlabel("training structures (count)")
    ax.set_ylabel(f"{metric} (dimensionless)")
    ax.set_ylim(low - 0.1, 1.05)
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title(title)
    return _save(fig, path)
