"""Classification and prediction on the fingerprints of a store.

The final model (fitted on all labelled rows) is saved in the store under /models/<name> with the
fingerprint's parameters, and `predict_store` refuses fingerprints made with other parameters.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...config import SPECTRUM_PARAMETERS
from ...errors import InputError, ParameterError, StoreError
from ...params import differences
from .evaluation import ClassificationResult, _Labelled, evaluate
from .labels import example_properties, labels_for_ids
from .model import ClassifierConfig

log = logging.getLogger(__name__)


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
