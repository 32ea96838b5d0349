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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import check_choice, check_interval
from ..config import SPECTRUM_PARAMETERS
from ..errors import InputError, ParameterError, StoreError
from ..params import differences

log = logging.getLogger(__name__)

__all__ = [
    "BALANCING",
    "ClassificationResult",
    "ClassifierConfig",
    "PredictionResult",
    "classify_store",
    "evaluate",
    "example_properties",
    "grouped_permutation_importance",
    "labels_for_ids",
    "make_estimator",
    "predict_store",
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
    n_estimators : int
        Trees in the forest.
    max_depth : int or None
        Maximum tree depth (None: grown until pure).
    min_samples_leaf : int
    balancing : {"auto", "balanced-rf", "class-weight", "none"}
        "auto": imbalanced-learn's BalancedRandomForest when installed, else class weights.
    cv_folds : int
        Stratified folds (reduced to the smallest class count when that is smaller; >= 2).
    seed : int
        Seed of the forest, the fold shuffling, the learning-curve subsets and the permutations.
    n_repeats : int
        Permutations per feature group for the permutation importance.
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

    n_estimators: int = 200
    max_depth: int | None = None
    min_samples_leaf: int = 1
    balancing: str = "auto"
    cv_folds: int = 5
    seed: int = 0
    n_repeats: int = 5
    permutation_groups: int = 64
    train_sizes: tuple = (0.25, 0.5, 0.75, 1.0)
    n_jobs: int = 1

    def __post_init__(self) -> None:
        check_interval("n_estimators", self.n_estimators, 1, None, integer=True)
        if self.max_depth is not None:
            check_interval("max_depth", self.max_depth, 1, None, integer=True)
        check_interval("min_samples_leaf", self.min_samples_leaf, 1, None, integer=True)
        check_choice("balancing", self.balancing, BALANCING)
        check_interval("cv_folds", self.cv_folds, 2, None, integer=True)
        check_interval("seed", self.seed, 0, 2**32 - 1, integer=True)
        check_interval("n_repeats", self.n_repeats, 1, None, integer=True)
        check_interval("permutation_groups", self.permutation_groups, 1, None, integer=True)
        check_interval("n_jobs", self.n_jobs, 1, None, integer=True)
        sizes = tuple(float(s) for s in self.train_sizes)
        if not sizes:
            raise ParameterError("train_sizes must hold at least one fraction in (0, 1]")
        for s in sizes:
            check_interval("train_sizes", s, 0.0, 1.0, closed="right")
        object.__setattr__(self, "train_sizes", tuple(sorted(set(sizes))))

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


def make_estimator(config: ClassifierConfig):
    """The unfitted forest for `config` (see `ClassifierConfig.balancing`)."""
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
    from ..examples import catalogue

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
        ``train_sizes`` (mean absolute size per fraction), ``fractions``, ``train_scores`` and
        ``test_scores`` (n_sizes, n_folds) balanced accuracies.
    estimator : object
        The forest fitted on all labelled rows.
    estimator_name : str
    config : ClassifierConfig
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

    def summary(self) -> dict:
        """JSON-serialisable metrics, counts and confusion matrix."""
        return {
            "classes": list(self.classes),
            "class_counts": self.class_counts,
            "n_folds": self.n_folds,
            "metrics": self.metrics,
            "confusion": self.confusion.tolist(),
            "estimator": self.estimator_name,
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


def grouped_permutation_importance(
    estimator,
    x: np.ndarray,
    y: np.ndarray,
    groups: Sequence[np.ndarray],
    n_repeats: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Balanced-accuracy drop when the columns of a group are permuted together (same row permutation).

    Returns
    -------
    mean, std : ndarray of shape (n_features,)
        Each feature carries the mean and standard deviation (over repeats) of its group.
    """
    from sklearn.metrics import balanced_accuracy_score

    base = balanced_accuracy_score(y, estimator.predict(x))
    mean = np.zeros(x.shape[1])
    std = np.zeros(x.shape[1])
    work = x.copy()
    for g in groups:
        drops = np.empty(n_repeats)
        for r in range(n_repeats):
            work[:, g] = x[rng.permutation(x.shape[0])][:, g]
            drops[r] = base - balanced_accuracy_score(y, estimator.predict(work))
        work[:, g] = x[:, g]
        mean[g], std[g] = drops.mean(), drops.std()
    return mean, std


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

    config = config or ClassifierConfig()
    x = np.ascontiguousarray(x, dtype=np.float64)
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
    per_fold: dict[str, list] = {}
    y_oof = np.empty_like(y)
    perm = np.zeros((n_folds, x.shape[1]))
    perm_sd = np.zeros((n_folds, x.shape[1]))
    lc_train = np.zeros((len(config.train_sizes), n_folds))
    lc_test = np.zeros((len(config.train_sizes), n_folds))
    lc_sizes = np.zeros((len(config.train_sizes), n_folds))
    for f, (train, test) in enumerate(folds):
        model = clone(base).fit(x[train], y[train])
        pred = model.predict(x[test])
        y_oof[test] = pred
        for k, v in _fold_metrics(y[test], pred, _proba_full(model, x[test], len(classes)), classes).items():
            per_fold.setdefault(k, []).append(v)
        perm[f], perm_sd[f] = grouped_permutation_importance(
            model,
            x[test],
            y[test],
            _groups(x.shape[1], config.permutation_groups),
            config.n_repeats,
            np.random.default_rng([config.seed, f, 1]),
        )
        rng = np.random.default_rng([config.seed, f])
        for s, frac in enumerate(config.train_sizes):
            sub = train if frac == 1.0 else _subset(y, train, frac, rng)
            m = model if frac == 1.0 else clone(base).fit(x[sub], y[sub])
            lc_sizes[s, f] = len(sub)
            one_class = len(np.unique(y[sub])) < 2
            lc_train[s, f] = 1.0 if one_class else balanced_accuracy_score(y[sub], m.predict(x[sub]))
            lc_test[s, f] = balanced_accuracy_score(y[test], m.predict(x[test]))
    final = clone(base).fit(x, y)
    metrics = {
        k: {"mean": float(np.nanmean(v)), "std": float(np.nanstd(v)), "folds": v} for k, v in per_fold.items()
    }
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
            "fractions": list(config.train_sizes),
            "train_sizes": lc_sizes.mean(axis=1).tolist(),
            "train_scores": lc_train.tolist(),
            "test_scores": lc_test.tolist(),
        },
        estimator=_Labelled(final, tuple(str(c) for c in classes)),
        estimator_name=type(final).__name__,
        config=config,
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
    from ..fingerprints import FingerprintSpec

    spec = attrs.get("spec")
    return FingerprintSpec.from_json(spec) if spec else None


def classify_store(
    path: str | Path,
    fingerprint: str,
    labels: str | Path | Mapping[str, str],
    *,
    name: str | None = None,
    config: ClassifierConfig | None = None,
    save: bool = True,
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
    """
    from ..store import STATUS_DONE, open_store
    from ..store import groups as store_groups

    config = config or ClassifierConfig()
    with open_store(path) as store:
        values, energies, attrs = store.fingerprints(fingerprint)
        ids = store.ids
        status = store.status
        run_parameters = _spectrum_parameters(store.parameters)
        # properties stored with the structures; None for stores before schema 1.2 (catalogue fallback)
        stored = store.all_properties() if store.has_properties else None
    labelled, source = labels_for_ids(ids, labels, stored)
    usable = [
        i
        for i, lab in enumerate(labelled)
        if lab is not None and status[i] == STATUS_DONE and np.all(np.isfinite(values[i]))
    ]
    missing = sum(lab is None for lab in labelled)
    if missing:
        log.info("classify: %d of %d structures have no label and are left out", missing, len(ids))
    if not usable:
        raise InputError(f"no structure of {path} has both a label (from {source}) and a fingerprint")
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
    """

    ids: list
    labels: list
    probabilities: np.ndarray
    classes: tuple
    model: str


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
    from ..fingerprints import FingerprintSpec
    from ..store import STATUS_DONE, open_store
    from ..store import groups as store_groups

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
    return PredictionResult([ids[i] for i in rows], labels, proba, tuple(est.classes), record.name)
