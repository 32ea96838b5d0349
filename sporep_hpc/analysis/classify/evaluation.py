"""Evaluation of a forest on labelled fingerprints.

Evaluation, all with fixed seeds: stratified k-fold cross-validation (accuracy, balanced accuracy
adjusted for chance, macro precision / recall / F1, ROC-AUC (binary, or one-vs-rest macro), the
out-of-fold confusion matrix), learning curves over stratified subsets of each training fold, impurity
importances of the final model and permutation importances on the held-out folds, both aligned with the
fingerprint energies.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import ParameterError
from .model import ClassifierConfig, make_estimator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassificationResult:
    """Cross-validated evaluation and the final model.

    Attributes
    ----------
    classes : tuple of str
        Sorted class labels (columns of probabilities, rows/columns of `confusion`).
    class_counts : dict
        Labelled structures per class.
    ids : list of str
        Structures used (labelled, with a fingerprint).
    n_folds : int
        Folds actually used.
    metrics : dict
        ``{name: {"mean": float, "std": float, "folds": [float, ...]}}`` for accuracy,
        balanced_accuracy_adjusted, precision, recall, f1 (macro), roc_auc.
    confusion : ndarray of shape (n_classes, n_classes), int64
        Out-of-fold confusion matrix (rows true, columns predicted).
    energies : ndarray of shape (n_features,), eV
    impurity_importance : ndarray of shape (n_features,)
        Mean decrease in impurity of the final model (sums to 1).
    permutation_importance : ndarray of shape (n_features,)
        Drop of the balanced accuracy when the feature's group (see `ClassifierConfig.permutation_groups`)
        is permuted, averaged over the held-out folds; every feature of a group carries its group's value.
    permutation_importance_std : ndarray of shape (n_features,)
    learning_curve : dict
        ``metric`` (``"balanced_accuracy_adjusted"``, the score printed under that name), ``chance`` (its
        chance level, 0), ``train_sizes`` (mean absolute size per fraction), ``fractions``,
        ``train_scores`` and ``test_scores`` (n_sizes, n_folds).
    estimator : object
        The forest fitted on all labelled rows.
    estimator_name : str
    config : ClassifierConfig
    warnings : tuple of str
        Scores not better than chance (see `chance_warnings`); empty when all are.
    """

    classes: tuple
    class_counts: dict
    ids: list
    n_folds: int
    metrics: dict
    confusion: np.ndarray
    energies: np.ndarray
    impurity_importance: np.ndarray
    permutation_importance: np.ndarray
    permutation_importance_std: np.ndarray
    learning_curve: dict
    estimator: Any = field(repr=False)
    estimator_name: str = ""
    config: ClassifierConfig = field(default_factory=ClassifierConfig)
    warnings: tuple = ()

    def summary(self) -> dict:
        """JSON-serialisable metrics, counts and confusion matrix."""
        return {
            "classes": list(self.classes),
            "class_counts": self.class_counts,
            "n_folds": self.n_folds,
            "metrics": self.metrics,
            "confusion": self.confusion.tolist(),
            "estimator": self.estimator_name,
            "warnings": list(self.warnings),
        }


def _subset(y: np.ndarray, idx: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A stratified subset of `idx`: ceil(fraction · n_c) of each class (at least 1), seeded."""
    keep = []
    for c in np.unique(y[idx]):
        members = idx[y[idx] == c]
        k = max(1, math.ceil(fraction * len(members)))
        keep.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(keep))


def _fold_metrics(y_true, y_pred, proba, classes) -> dict[str, float]:
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    labels = list(range(len(classes)))
    out = {
        "accuracy": accuracy_score(y_true, y_pred),
        "balanced_accuracy_adjusted": balanced_accuracy_score(y_true, y_pred, adjusted=True),
        "precision": precision_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "recall": recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "f1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
    }
    if len(np.unique(y_true)) < 2:
        out["roc_auc"] = float("nan")
    elif len(classes) == 2:
        out["roc_auc"] = roc_auc_score(y_true, proba[:, 1])
    else:
        out["roc_auc"] = roc_auc_score(y_true, proba, multi_class="ovr", average="macro", labels=labels)
    return {k: float(v) for k, v in out.items()}


def _proba_full(estimator, x, n_classes) -> np.ndarray:
    """predict_proba with a column for every class (a fold may lack one in training)."""
    proba = estimator.predict_proba(x)
    full = np.zeros((x.shape[0], n_classes))
    full[:, np.asarray(estimator.classes_, dtype=int)] = proba
    return full


def _groups(n_features: int, max_groups: int) -> list[np.ndarray]:
    """Consecutive feature blocks, at most `max_groups` of them, sizes differing by at most one."""
    return [g for g in np.array_split(np.arange(n_features), min(n_features, max_groups)) if g.size]


class _Progress:
    """Progress of `total` work units (forest fits, permutation blocks) through logging, with an ETA.

    Logs at INFO when `interval` seconds have passed since the last message, or when forced (fold
    ends). The ETA assumes the remaining units cost what the finished ones did on average.
    """

    def __init__(self, total: int, what: str = "classify", interval: float = 2.0) -> None:
        self.total, self.what, self.interval = max(1, total), what, interval
        self.done = 0
        self.stage = ""
        self.t0 = self.last = time.perf_counter()

    def advance(self, units: int, detail: str = "", force: bool = False) -> None:
        self.done += units
        now = time.perf_counter()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        elapsed = now - self.t0
        left = elapsed * max(0, self.total - self.done) / max(1, self.done)
        log.info(
            "%s: %s%s (%d %% done, %.1f s elapsed, ETA %.0f s)",
            self.what, self.stage, f", {detail}" if detail and self.stage else detail,
            min(100, 100 * self.done // self.total), elapsed, left,
        )


#: Rows of permuted copies predicted in one call (bounds the batch to about this × n_features × 8 bytes).
_PERMUTATION_BATCH_ROWS = 8192


def grouped_permutation_importance(
    estimator,
    x: np.ndarray,
    y: np.ndarray,
    groups: Sequence[np.ndarray],
    n_repeats: int,
    rng: np.random.Generator,
    progress: _Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced-accuracy drop when the columns of a group are permuted together (same row permutation).

    The permuted copies of several groups are predicted in one call (a forest's per-call overhead
    dominates on small test folds); the permutations are drawn in group, then repeat order, as one call
    per copy would draw them.

    Returns
    -------
    mean, std : ndarray of shape (n_features,)
        Each feature carries the mean and standard deviation (over repeats) of its group.
    """
    from sklearn.metrics import balanced_accuracy_score

    n = x.shape[0]
    base = balanced_accuracy_score(y, estimator.predict(x))
    mean = np.zeros(x.shape[1])
    std = np.zeros(x.shape[1])
    per_call = max(1, _PERMUTATION_BATCH_ROWS // max(1, n * n_repeats))  # groups per predict call
    for start in range(0, len(groups), per_call):
        batch = groups[start : start + per_call]
        work = np.tile(x, (len(batch) * n_repeats, 1))
        for b, g in enumerate(batch):
            for r in range(n_repeats):
                rows = slice((b * n_repeats + r) * n, (b * n_repeats + r + 1) * n)
                work[rows, g] = x[rng.permutation(n)][:, g]
        pred = estimator.predict(work)
        for b, g in enumerate(batch):
            drops = np.array([
                base - balanced_accuracy_score(y, pred[(b * n_repeats + r) * n : (b * n_repeats + r + 1) * n])
                for r in range(n_repeats)
            ])
            mean[g], std[g] = drops.mean(), drops.std()
        if progress is not None:
            progress.advance(len(batch), f"permutation block {start + len(batch)}/{len(groups)}")
    return mean, std


#: Chance level of each cross-validated score (accuracy: the majority-class fraction, see `chance_warnings`).
CHANCE = {"balanced_accuracy_adjusted": 0.0, "roc_auc": 0.5}


def chance_warnings(metrics: Mapping[str, Mapping[str, Any]], class_counts: Sequence[int]) -> list[str]:
    """Scores that are not better than chance: one message per score.

    A score is "not better than chance" when its mean over the folds minus one standard error
    (std / sqrt(n_folds)) does not exceed its chance level: 0 for the adjusted balanced accuracy, 0.5 for
    the ROC-AUC, and for the accuracy the fraction of the majority class (what always answering that class
    scores).

    Parameters
    ----------
    metrics : mapping
        ``{name: {"mean", "std", "folds"}}`` as in `ClassificationResult.metrics`.
    class_counts : sequence of int
        Labelled structures per class.
    """
    counts = np.asarray(class_counts, dtype=float)
    chance = {**CHANCE, "accuracy": float(counts.max() / counts.sum())}
    out = []
    for name, level in chance.items():
        m = metrics.get(name)
        if m is None or not np.isfinite(m["mean"]):
            continue
        n = max(1, sum(np.isfinite(v) for v in m["folds"]))
        if m["mean"] - m["std"] / math.sqrt(n) <= level:
            what = "the majority class" if name == "accuracy" else "chance"
            out.append(
                f"{name} {m['mean']:.3f} ± {m['std']:.3f} is not better than {what} ({level:.3f}): "
                "the fingerprint does not predict these labels (more structures, another fingerprint)"
            )
    return out


def evaluate(
    x: np.ndarray,
    labels: Sequence[str],
    energies: np.ndarray,
    config: ClassifierConfig | None = None,
    ids: Sequence[str] | None = None,
) -> ClassificationResult:
    """Cross-validate, compute importances and learning curves, fit the final model.

    Parameters
    ----------
    x : array_like of shape (n, n_features), float64
        Fingerprints of labelled structures.
    labels : sequence of str, length n
    energies : array_like of shape (n_features,), eV
    config : ClassifierConfig, optional
    ids : sequence of str, optional
        Structure ids (for the result only).
    """
    from sklearn.base import clone
    from sklearn.metrics import balanced_accuracy_score, confusion_matrix
    from sklearn.model_selection import StratifiedKFold

    x = np.ascontiguousarray(x, dtype=np.float64)
    config = (config or ClassifierConfig()).for_size(x.shape[0] if x.ndim == 2 else 0)
    energies = np.ascontiguousarray(energies, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(labels) or energies.shape != (x.shape[1],):
        raise ParameterError(
            f"x must be (n, n_features) with n = {len(labels)} labels and {energies.size} energies; "
            f"got {x.shape}"
        )
    if not np.all(np.isfinite(x)):
        raise ParameterError("x must be finite (drop structures without a fingerprint first)")
    classes, y = np.unique(np.asarray([str(v) for v in labels]), return_inverse=True)
    counts = np.bincount(y, minlength=len(classes))
    if len(classes) < 2:
        raise ParameterError(f"classification needs at least 2 classes; got {classes.tolist()}")
    if counts.min() < 2:
        small = [str(c) for c, k in zip(classes, counts, strict=True) if k < 2]
        raise ParameterError(f"every class needs at least 2 labelled structures; too few: {small}")
    n_folds = int(min(config.cv_folds, counts.min()))
    if n_folds < config.cv_folds:
        log.warning(
            "classify: %d folds instead of %d (smallest class has %d members)",
            n_folds,
            config.cv_folds,
            counts.min(),
        )
    folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=config.seed).split(x, y))
    base = make_estimator(config)
    groups = _groups(x.shape[1], config.permutation_groups)
    n_sub = sum(frac < 1.0 for frac in config.train_sizes)
    # work units for the ETA: a forest fit weighs as much as all permutation blocks of a fold (measured
    # within a factor 2 after batching the permuted copies)
    fit = len(groups)
    progress = _Progress(n_folds * (fit + len(groups) + n_sub * fit) + fit)
    log.info(
        "classify: %d structures, %d features, %d classes; %d folds × (%d trees, %d permutation blocks × %d "
        "repeats, %d learning-curve fits), then the final model",
        len(y), x.shape[1], len(classes), n_folds, config.n_estimators, len(groups), config.n_repeats, n_sub,
    )
    per_fold: dict[str, list] = {}
    y_oof = np.empty_like(y)
    perm = np.zeros((n_folds, x.shape[1]))
    perm_sd = np.zeros((n_folds, x.shape[1]))
    lc_train = np.zeros((len(config.train_sizes), n_folds))
    lc_test = np.zeros((len(config.train_sizes), n_folds))
    lc_sizes = np.zeros((len(config.train_sizes), n_folds))
    for f, (train, test) in enumerate(folds):
        progress.stage = f"fold {f + 1}/{n_folds}"
        model = clone(base).fit(x[train], y[train])
        progress.advance(fit, "forest fitted")
        pred = model.predict(x[test])
        y_oof[test] = pred
        for k, v in _fold_metrics(y[test], pred, _proba_full(model, x[test], len(classes)), classes).items():
            per_fold.setdefault(k, []).append(v)
        perm[f], perm_sd[f] = grouped_permutation_importance(
            model,
            x[test],
            y[test],
            groups,
            config.n_repeats,
            np.random.default_rng([config.seed, f, 1]),
            progress,
        )
        rng = np.random.default_rng([config.seed, f])
        for s, frac in enumerate(config.train_sizes):
            sub = train if frac == 1.0 else _subset(y, train, frac, rng)
            m = model if frac == 1.0 else clone(base).fit(x[sub], y[sub])
            if frac != 1.0:
                progress.advance(fit, "learning curve")
            lc_sizes[s, f] = len(sub)
            # the metric printed as "balanced_accuracy_adjusted" (chance level 0)
            one_class = len(np.unique(y[sub])) < 2
            score = balanced_accuracy_score
            lc_train[s, f] = 1.0 if one_class else score(y[sub], m.predict(x[sub]), adjusted=True)
            lc_test[s, f] = score(y[test], m.predict(x[test]), adjusted=True)
        progress.advance(0, "done", force=True)
    progress.stage = ""
    final = clone(base).fit(x, y)
    progress.advance(fit, "final model fitted", force=True)
    metrics = {
        k: {"mean": float(np.nanmean(v)), "std": float(np.nanstd(v)), "folds": v} for k, v in per_fold.items()
    }
    warnings = chance_warnings(metrics, counts)
    for w in warnings:
        log.warning("classify: %s", w)
    return ClassificationResult(
        classes=tuple(str(c) for c in classes),
        class_counts={str(c): int(k) for c, k in zip(classes, counts, strict=True)},
        ids=list(ids) if ids is not None else [str(i) for i in range(len(y))],
        n_folds=n_folds,
        metrics=metrics,
        confusion=confusion_matrix(y, y_oof, labels=list(range(len(classes)))).astype(np.int64),
        energies=energies,
        impurity_importance=np.asarray(final.feature_importances_, dtype=np.float64),
        permutation_importance=perm.mean(axis=0),
        permutation_importance_std=np.sqrt((perm_sd**2).mean(axis=0)),
        learning_curve={
            "metric": "balanced_accuracy_adjusted",
            "chance": 0.0,
            "fractions": list(config.train_sizes),
            "train_sizes": lc_sizes.mean(axis=1).tolist(),
            "train_scores": lc_train.tolist(),
            "test_scores": lc_test.tolist(),
        },
        estimator=_Labelled(final, tuple(str(c) for c in classes)),
        estimator_name=type(final).__name__,
        config=config,
        warnings=tuple(warnings),
    )


class _Labelled:
    """The fitted forest with its class names. The store keeps the forest alone (skops) and the names as
    the attribute ``classes``; legacy stores pickled this object (name and attributes kept for them)."""

    def __init__(self, estimator, classes: tuple) -> None:
        self.estimator = estimator
        self.classes = classes

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return _proba_full(self.estimator, x, len(self.classes))

    def predict(self, x: np.ndarray) -> list[str]:
        return [self.classes[i] for i in np.argmax(self.predict_proba(x), axis=1)]
