"""Random-forest classification of structures from their fingerprints (screening).

Labels come from a CSV/JSON file (id, label) or from a property of the structures (``property:NAME``,
e.g. ``property:electronic`` for the nanotubes' metallic/semiconducting label). The classifier is
scikit-learn's `RandomForestClassifier` with ``class_weight="balanced"``, or imbalanced-learn's
`BalancedRandomForestClassifier` when that package is installed (``balancing="auto"``).

Evaluation, all with fixed seeds: stratified k-fold cross-validation (accuracy, balanced accuracy
adjusted for chance, macro precision / recall / F1, ROC-AUC (binary, or one-vs-rest macro), the
out-of-fold confusion matrix), learning curves over stratified subsets of each training fold, impurity
importances of the final model and permutation importances on the held-out folds, both aligned with the
fingerprint energies. The final model (fitted on all labelled rows) is saved in the store under
/models/<name> with the fingerprint's parameters, and `predict_store` refuses fingerprints made with
other parameters.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..._validation import check_choice, check_interval
from ...config import SPECTRUM_PARAMETERS
from ...errors import InputError, ParameterError, StoreError
from ...params import differences

log = logging.getLogger(__name__)

__all__ = [
    "BALANCING",
    "CHANCE",
    "ClassificationResult",
    "ClassifierConfig",
    "PredictionResult",
    "auto_repeats",
    "auto_trees",
    "chance_warnings",
    "classify_store",
    "evaluate",
    "example_properties",
    "grouped_permutation_importance",
    "labels_for_ids",
    "make_estimator",
    "nearest_distances",
    "predict_store",
    "property_filter",
    "read_labels",
]

BALANCING = ("auto", "balanced-rf", "class-weight", "none")
PROPERTY_PREFIX = "property:"


def imblearn_available() -> bool:
    """True when imbalanced-learn can be imported."""
    try:
        import imblearn.ensemble  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class ClassifierConfig:
    """Estimator and evaluation parameters.

    Attributes
    ----------
    n_estimators : int or None
        Trees in the forest; None: scaled with the number N of labelled structures (`auto_trees`: 50 up
        to 100 structures, 100 up to 1000, 200 beyond), so that the defaults finish in seconds on
        ≤ 100 structures.
    max_depth : int or None
        Maximum tree depth (None: grown until pure).
    min_samples_leaf : int
    balancing : {"auto", "balanced-rf", "class-weight", "none"}
        "auto": imbalanced-learn's BalancedRandomForest when installed, else class weights.
    cv_folds : int
        Stratified folds (reduced to the smallest class count when that is smaller; >= 2).
    seed : int
        Seed of the forest, the fold shuffling, the learning-curve subsets and the permutations.
    n_repeats : int or None
        Permutations per feature group for the permutation importance; None: scaled with N
        (`auto_repeats`: 5 up to 100 structures, then ceil(500 / N), at least 1; small test folds need
        more repeats for a stable mean, large ones fewer).
    permutation_groups : int
        Adjacent features are permuted together in at most this many groups (blocks of
        ceil(n_features / permutation_groups) neighbouring energies): neighbouring samples of a smeared
        DOS are strongly correlated, so permuting one alone hardly changes a forest's answer, and
        one group per feature costs n_features × n_repeats predictions per fold.
    train_sizes : tuple of float
        Fractions of each training fold for the learning curve, in (0, 1].
    n_jobs : int
        Threads of the forest (scikit-learn ``n_jobs``).
    """

    n_estimators: int | None = None
    max_depth: int | None = None
    min_samples_leaf: int = 1
    balancing: str = "auto"
    cv_folds: int = 5
    seed: int = 0
    n_repeats: int | None = None
    permutation_groups: int = 64
    train_sizes: tuple = (0.25, 0.5, 0.75, 1.0)
    n_jobs: int = 1

    def __post_init__(self) -> None:
        if self.n_estimators is not None:
            check_interval("n_estimators", self.n_estimators, 1, None, integer=True)
        if self.max_depth is not None:
            check_interval("max_depth", self.max_depth, 1, None, integer=True)
        check_interval("min_samples_leaf", self.min_samples_leaf, 1, None, integer=True)
        check_choice("balancing", self.balancing, BALANCING)
        check_interval("cv_folds", self.cv_folds, 2, None, integer=True)
        check_interval("seed", self.seed, 0, 2**32 - 1, integer=True)
        if self.n_repeats is not None:
            check_interval("n_repeats", self.n_repeats, 1, None, integer=True)
        check_interval("permutation_groups", self.permutation_groups, 1, None, integer=True)
        check_interval("n_jobs", self.n_jobs, 1, None, integer=True)
        sizes = tuple(float(s) for s in self.train_sizes)
        if not sizes:
            raise ParameterError("train_sizes must hold at least one fraction in (0, 1]")
        for s in sizes:
            check_interval("train_sizes", s, 0.0, 1.0, closed="right")
        object.__setattr__(self, "train_sizes", tuple(sorted(set(sizes))))

    def for_size(self, n: int) -> ClassifierConfig:
        """This configuration with the automatic values (None) resolved for `n` labelled structures."""
        return replace(
            self,
            n_estimators=auto_trees(n) if self.n_estimators is None else self.n_estimators,
            n_repeats=auto_repeats(n) if self.n_repeats is None else self.n_repeats,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters."""
        return {
            "n_estimators": self.n_estimators,
            "max_depth": self.max_depth,
            "min_samples_leaf": self.min_samples_leaf,
            "balancing": self.balancing,
            "cv_folds": self.cv_folds,
            "seed": self.seed,
            "n_repeats": self.n_repeats,
            "permutation_groups": self.permutation_groups,
            "train_sizes": list(self.train_sizes),
            "n_jobs": self.n_jobs,
        }


def auto_trees(n: int) -> int:
    """Default forest size for `n` labelled structures: 50 up to 100, 100 up to 1000, 200 beyond.

    Measured (one shared core, 513 features, 5 folds with 3 learning-curve fits each, 64 permutation
    blocks × 5 repeats): 40 structures take 21 s with 200 trees, 8 s with 50; 100 structures with 2048
    features 10 s with 50.
    """
    return 50 if n <= 100 else 100 if n <= 1000 else 200


def auto_repeats(n: int) -> int:
    """Default permutation repeats for `n` labelled structures: 5 up to 100, then ceil(500 / n), >= 1."""
    return 5 if n <= 100 else max(1, math.ceil(500 / n))


def make_estimator(config: ClassifierConfig):
    """The unfitted forest for `config` (see `ClassifierConfig.balancing`; automatic sizes must be resolved
    with `ClassifierConfig.for_size` first)."""
    if config.n_estimators is None:
        raise ParameterError("n_estimators must be resolved (ClassifierConfig.for_size) before fitting")
    use_brf = config.balancing == "balanced-rf" or (config.balancing == "auto" and imblearn_available())
    common = {
        "n_estimators": config.n_estimators,
        "max_depth": config.max_depth,
        "min_samples_leaf": config.min_samples_leaf,
        "random_state": config.seed,
        "n_jobs": config.n_jobs,
    }
    if use_brf:
        if not imblearn_available():
            raise ParameterError("balancing 'balanced-rf' needs the package imbalanced-learn")
        from imblearn.ensemble import BalancedRandomForestClassifier

        # explicit sampling parameters (the library's defaults changed between versions)
        return BalancedRandomForestClassifier(
            sampling_strategy="all", replacement=True, bootstrap=False, **common
        )
    from sklearn.ensemble import RandomForestClassifier

    weight = "balanced" if config.balancing in ("auto", "class-weight") else None
    return RandomForestClassifier(class_weight=weight, **common)


# ---- labels ------------------------------------------------------------------------------------------


def read_labels(path: str | Path) -> dict[str, str]:
    """Labels by structure id from a CSV (``id,label`` header, or two columns without header) or a JSON
    file (an object ``{id: label}`` or a list of ``{"id": ..., "label": ...}``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"labels file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    out: dict[str, str] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"labels file {path} is not valid JSON: {exc}") from exc
        if isinstance(data, dict):
            pairs = list(data.items())
        elif isinstance(data, list) and all(isinstance(d, dict) and {"id", "label"} <= set(d) for d in data):
            pairs = [(d["id"], d["label"]) for d in data]
        else:
            raise InputError(f"labels file {path}: expected {{id: label}} or [{{'id':.., 'label':..}}, ..]")
    else:
        rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
        if not rows:
            raise InputError(f"labels file {path} is empty")
        header = [c.strip().lower() for c in rows[0]]
        if "id" in header and "label" in header:
            i, j = header.index("id"), header.index("label")
            rows = rows[1:]
        else:
            i, j = 0, 1
        pairs = []
        for k, r in enumerate(rows):
            if len(r) <= max(i, j):
                raise InputError(f"labels file {path}: row {k + 1} has {len(r)} columns, needs id and label")
            pairs.append((r[i], r[j]))
    for sid, label in pairs:
        sid, label = str(sid).strip(), str(label).strip()
        if sid in out and out[sid] != label:
            raise InputError(f"labels file {path}: id {sid!r} has two labels ({out[sid]!r}, {label!r})")
        out[sid] = label
    return out


def example_properties(ids: Sequence[str]) -> dict[str, dict]:
    """Properties of built-in example structures by id, from the catalogue (for stores written before
    schema 1.2, which do not keep the properties of their structures)."""
    from ...examples import catalogue

    sets = {"cnt": "cnt_", "batio3": "batio3_", "aflow": "aflow_"}
    out: dict[str, dict] = {}
    for name, prefix in sets.items():
        if any(i.startswith(prefix) for i in ids):
            out.update({e.id: e.properties for e in catalogue(name)})
    return out


def labels_for_ids(
    ids: Sequence[str],
    source: str | Path | Mapping[str, str],
    properties: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[list, str]:
    """Label of every id (None when unlabelled) and a description of the source.

    `source` is a mapping, a labels file, or ``property:NAME``: the property of each structure as
    stored with it (`properties`, one dict per id, from ``Store.all_properties()``), or, for stores
    written before properties were stored (`properties` None), the built-in example catalogue
    looked up by structure id.
    """
    if isinstance(source, Mapping):
        labels, desc = {str(k): str(v) for k, v in source.items()}, "mapping"
    elif isinstance(source, str) and source.startswith(PROPERTY_PREFIX):
        prop = source[len(PROPERTY_PREFIX) :]
        if properties is not None:
            known = dict(zip(ids, properties, strict=True))
        else:
            known = example_properties(ids)
        labels = {i: str(p[prop]) for i, p in known.items() if p and prop in p}
        if not labels:
            where = (
                "the store's structure properties" if properties is not None
                else "the built-in example sets cnt, batio3, aflow"
            )
            raise InputError(
                f"no structure of this store has the property {prop!r} (looked in {where}; "
                "give a labels file otherwise)"
            )
        desc = source
    else:
        labels, desc = read_labels(source), str(source)
    return [labels.get(i) for i in ids], desc


# ---- evaluation --------------------------------------------------------------------------------------


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


# ---- store level -------------------------------------------------------------------------------------


def _spec_of(attrs: Mapping[str, Any]):
    from ...fingerprints import FingerprintSpec

    spec = attrs.get("spec")
    return FingerprintSpec.from_json(spec) if spec else None


_WHERE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")
_COMPARE = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    "<": lambda a, b: a < b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}


def property_filter(where: str, properties: Sequence[Mapping[str, Any]]) -> list[bool]:
    """Which rows satisfy ``NAME OP VALUE`` on their properties (rows without NAME: False).

    VALUE is compared as a number when it and the property both are numbers, else as text (only
    ``==`` and ``!=`` then). Nothing is evaluated: the expression is parsed by a regular expression.
    """
    m = _WHERE.match(where)
    if not m:
        raise ParameterError(f"where must be NAME OP VALUE with OP in >=, <=, >, <, ==, !=; got {where!r}")
    key, op, text = m.groups()
    try:
        value: float | str = float(text)
    except ValueError:
        if op not in ("==", "!="):
            raise ParameterError(f"where {where!r}: {op} needs a number; got {text!r}") from None
        value = text
    out = []
    for p in properties:
        have = (p or {}).get(key)
        if isinstance(value, float) and isinstance(have, (int, float)) and not isinstance(have, bool):
            out.append(bool(_COMPARE[op](float(have), value)))
        elif have is None or op not in ("==", "!="):
            out.append(False)
        else:
            out.append(bool(_COMPARE[op](str(have), text)))
    if not any(out):
        raise InputError(f"no structure satisfies {where!r} (property {key!r})")
    return out


def classify_store(
    path: str | Path,
    fingerprint: str,
    labels: str | Path | Mapping[str, str],
    *,
    name: str | None = None,
    config: ClassifierConfig | None = None,
    save: bool = True,
    where: str | None = None,
    mix_kinds: bool = False,
) -> ClassificationResult:
    """Train and evaluate on a store's fingerprint; save the model in /models/<name>.

    Parameters
    ----------
    path : path
        The store (written by ``sporep-hpc run``).
    fingerprint : str
        Fingerprint name in the store.
    labels : path, mapping or ``"property:NAME"``
        See `labels_for_ids`. Structures without a label or without a fingerprint are left out.
    name : str, optional
        Model name (default ``"<fingerprint>"``).
    config : ClassifierConfig, optional
    save : bool
        Write the model into the store.
    where : str, optional
        Keep only structures whose stored property satisfies ``NAME OP VALUE`` (OP one of
        ``>= <= > < == !=``; numbers compare as numbers, e.g. ``"diameter>=6"``); see `property_filter`.
    mix_kinds : bool
        Train on rows of different kinds (operator spectra and DFT bands, DESIGN.md §8.2); by default an
        InputError (`sporep_hpc.store.reader.check_kinds`).
    """
    from ...store import STATUS_DONE, open_store
    from ...store import groups as store_groups
    from ...store.reader import check_kinds

    config = config or ClassifierConfig()
    with open_store(path) as store:
        values, energies, attrs = store.fingerprints(fingerprint)
        ids = store.ids
        status = store.status
        run_parameters = _spectrum_parameters(store.parameters)
        # properties stored with the structures; None for stores before schema 1.2 (catalogue fallback)
        stored = store.all_properties() if store.has_properties else None
        sources = store.sources
    labelled, source = labels_for_ids(ids, labels, stored)
    if where:
        keep = property_filter(where, stored if stored is not None else [example_properties(ids).get(i, {})
                                                                         for i in ids])
        dropped = sum(lab is not None and not k for lab, k in zip(labelled, keep, strict=True))
        log.info("classify: %s leaves out %d labelled structures", where, dropped)
        source = f"{source} where {where}"
        labelled = [lab if k else None for lab, k in zip(labelled, keep, strict=True)]
    usable = [
        i
        for i, lab in enumerate(labelled)
        if lab is not None and status[i] == STATUS_DONE and np.all(np.isfinite(values[i]))
    ]
    missing = sum(lab is None for lab in labelled)
    if missing:
        log.info("classify: %d of %d structures have no label%s and are left out", missing, len(ids),
                 f" or fail {where!r}" if where else "")
    if not usable:
        raise InputError(f"no structure of {path} has both a label (from {source}) and a fingerprint")
    check_kinds(sources, usable, f"{path}: classification on fingerprint {fingerprint!r}", mix_kinds)
    result = evaluate(
        values[usable], [labelled[i] for i in usable], energies, config, ids=[ids[i] for i in usable]
    )
    if save:
        store_groups.save_model(
            path,
            name or fingerprint,
            result.estimator.estimator,
            energies,
            {
                "fingerprint": fingerprint,
                "fingerprint_attrs": {
                    k: v if isinstance(v, (str, int, float)) else str(v) for k, v in attrs.items()
                },
                "estimator": {"class": result.estimator_name, **config.to_dict()},
                "metrics": result.summary(),
                "classes": list(result.classes),
                "label_source": source,
                "run_parameters": run_parameters,
                # the training rows, for predict's applicability-domain check (a JSON string attribute)
                "training_ids": json.dumps(result.ids),
            },
        )
    return result


def _spectrum_parameters(parameters: Mapping[str, Any]) -> dict:
    return {k: parameters[k] for k in SPECTRUM_PARAMETERS if k in parameters}


def _check_parameters(model: Mapping[str, Any], here: Mapping[str, Any], name: str, path) -> None:
    """ParameterError unless the spectrum parameters agree (floats to 1e-12 relative)."""
    diff = differences(model, here, keys=SPECTRUM_PARAMETERS, rel_tol=1e-12)
    if diff:
        raise ParameterError(
            f"model {name!r} was trained on fingerprints made with other parameters than those of {path}: "
            f"{diff[0]}"
        )


@dataclass(frozen=True)
class PredictionResult:
    """Predictions of a stored model for the structures of a store.

    Attributes
    ----------
    ids : list of str
        Structures with a fingerprint (failed ones are left out).
    labels : list of str
        Predicted class per structure.
    probabilities : ndarray of shape (n, n_classes), float64
    classes : tuple of str
    model : str
        Model name.
    distance : ndarray of shape (n,), float64, dimensionless
        Cosine distance of each row's fingerprint to the nearest training row (NaN when the model
        does not name its training rows, or they are no longer in the model's store). Cosine, not
        Euclidean: a fingerprint in states/eV/cell grows with the cell, so Euclidean distances mostly
        compare cell sizes (BaTiO3 lies closer to a small nanotube than big tubes to each other).
    in_domain : ndarray of shape (n,), bool
        False for rows farther from every training row than `domain_threshold` (their prediction is an
        extrapolation); True when the distance is unknown.
    domain_threshold : float
        The 95th percentile of the training rows' distances to their nearest other training row.
    """

    ids: list
    labels: list
    probabilities: np.ndarray
    classes: tuple
    model: str
    distance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    in_domain: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    domain_threshold: float = float("nan")


def _labelled(record, where) -> _Labelled:
    """The forest of a loaded model with the class names of its attributes; StoreError unless the store
    holds a fitted random forest whose classes index those names."""
    from sklearn.ensemble import RandomForestClassifier  # imbalanced-learn's balanced forest derives from it

    forest = record.estimator
    if isinstance(forest, _Labelled):  # a legacy pickled model (loaded with trust_pickle)
        forest = forest.estimator
    classes = record.attrs.get("classes")
    if not isinstance(forest, RandomForestClassifier) or not hasattr(forest, "classes_"):
        raise StoreError(f"{where}: model {record.name!r} must be a fitted random forest; got {type(forest)}")
    if not isinstance(classes, list) or not np.isin(forest.classes_, np.arange(len(classes))).all():
        raise StoreError(
            f"{where}: model {record.name!r}: attribute 'classes' must name every class of the forest "
            f"({len(forest.classes_)}); got {classes!r}"
        )
    return _Labelled(forest, tuple(str(c) for c in classes))


def predict_store(
    path: str | Path,
    model_store: str | Path,
    *,
    model: str | None = None,
    fingerprint: str | None = None,
    trust_pickle: bool = False,
) -> PredictionResult:
    """Apply the model /models/<model> of `model_store` to the fingerprints of `path`.

    The fingerprint (default: the one the model was trained on) must have the same parameters:
    the same spectrum parameters (`SPECTRUM_PARAMETERS`: operator, basis, k-point density, ...), the same
    window specification (`FingerprintSpec.check_compatible`) and the same energy grid, else ParameterError.
    The model is loaded with skops and only when it holds trusted types (else StoreError); a legacy pickled
    model is refused (StoreError) unless `trust_pickle` (unpickling executes code from the file).
    """
    from ...fingerprints import FingerprintSpec
    from ...store import STATUS_DONE, open_store
    from ...store import groups as store_groups

    record = store_groups.load_model(model_store, model, trust_pickle=trust_pickle)
    est = _labelled(record, model_store)
    fp_name = fingerprint or record.attrs["fingerprint"]
    with open_store(path) as store:
        values, energies, attrs = store.fingerprints(fp_name)
        ids = store.ids
        status = store.status
        here = _spectrum_parameters(store.parameters)
    _check_parameters(record.attrs.get("run_parameters", {}), here, record.name, path)
    trained = record.attrs.get("fingerprint_attrs", {})
    spec_model, spec_here = trained.get("spec"), attrs.get("spec")
    if spec_model and spec_here:
        FingerprintSpec.from_json(spec_model).check_compatible(FingerprintSpec.from_json(spec_here))
    elif bool(spec_model) != bool(spec_here):
        raise ParameterError(f"fingerprint {fp_name!r}: the model or the store lacks its specification")
    same_grid = energies.shape == record.energies.shape
    if not same_grid or not np.allclose(energies, record.energies, rtol=0, atol=1e-9):
        raise ParameterError(
            f"fingerprint {fp_name!r} of {path} has another energy grid ({energies.size} energies) than "
            f"model {record.name!r} ({record.energies.size} energies)"
        )
    rows = [i for i in range(len(ids)) if status[i] == STATUS_DONE and np.all(np.isfinite(values[i]))]
    proba = est.predict_proba(values[rows]) if rows else np.zeros((0, len(est.classes)))
    labels = [est.classes[k] for k in np.argmax(proba, axis=1)] if rows else []
    train = _training_rows(model_store, record.attrs["fingerprint"], record)
    if train is None:
        distance, threshold = np.full(len(rows), np.nan), float("nan")
        log.warning("predict: model %r does not name its training rows: domain not checked", record.name)
    else:
        distance, threshold = nearest_distances(train, values[rows])
    in_domain = ~(distance > threshold)  # NaN compares False: unknown counts as inside
    out = [ids[i] for i, ok in zip(rows, in_domain, strict=True) if not ok]
    if out:
        log.warning(
            "predict: %d of %d structures lie outside the training domain of model %r (nearest training "
            "row farther than %.4g, the 95th percentile of the training rows' nearest-neighbour distances); "
            "their predictions are extrapolations: %s",
            len(out), len(rows), record.name, threshold, ", ".join(out[:10]) + (" ..." * (len(out) > 10)),
        )
    return PredictionResult(
        [ids[i] for i in rows], labels, proba, tuple(est.classes), record.name, distance, in_domain, threshold
    )


#: Percentile of the training rows' nearest-neighbour distances beyond which a row is outside the domain.
DOMAIN_PERCENTILE = 95.0


def nearest_distances(train: np.ndarray, x: np.ndarray, chunk: int = 1024) -> tuple[np.ndarray, float]:
    """Cosine distance of each row of `x` to its nearest row of `train`, and the domain threshold.

    A row of zeros (no state in the window) has distance 1 to every row that is not also zero.

    Parameters
    ----------
    train : ndarray of shape (m, n_features), m >= 2
        Training fingerprints.
    x : ndarray of shape (n, n_features)
    chunk : int
        Rows of `x` (and of `train` for the threshold) per distance block (memory chunk × m × 8 bytes).

    Returns
    -------
    distance : ndarray of shape (n,), float64
    threshold : float
        `DOMAIN_PERCENTILE` percentile of the distances of the training rows to their nearest other
        training row (leave-one-out).
    """
    from scipy.spatial.distance import cdist

    train = np.ascontiguousarray(train, dtype=np.float64)
    x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1, train.shape[1])
    if train.shape[0] < 2:
        raise ParameterError(f"the domain needs at least 2 training rows; got {train.shape[0]}")

    def nearest(a: np.ndarray, skip_self: bool) -> np.ndarray:
        out = np.empty(a.shape[0])
        for k in range(0, a.shape[0], chunk):
            d = np.nan_to_num(cdist(a[k : k + chunk], train, "cosine"), nan=1.0)
            if skip_self:
                d[np.arange(d.shape[0]), np.arange(k, k + d.shape[0])] = np.inf
            out[k : k + chunk] = d.min(axis=1)
        return out

    return nearest(x, False), float(np.percentile(nearest(train, True), DOMAIN_PERCENTILE))


def _training_rows(model_store, fingerprint: str, record) -> np.ndarray | None:
    """The fingerprints of the model's training rows, read from the model's store (None when the model
    does not name them, or the store no longer holds them all)."""
    from ...store import open_store

    text = record.attrs.get("training_ids")
    if not text:
        return None
    wanted = json.loads(text)
    with open_store(model_store) as store:
        if fingerprint not in store.fingerprint_names:
            return None
        where = {sid: k for k, sid in enumerate(store.ids)}
        if any(sid not in where for sid in wanted):
            return None
        values = store.fingerprints(fingerprint)[0]
    return values[[where[sid] for sid in wanted]]
