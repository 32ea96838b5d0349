"""Random-forest classification of structures from their fingerprints (screening).

Modules, one job each, importing only from those listed before them:

- `model`: the forest and its parameters (`ClassifierConfig`, `make_estimator`).
- `labels`: labels by structure id from a file, a mapping or a property of the structures.
- `evaluation`: cross-validation, metrics, learning curves, permutation importances, chance warnings.
- `store`: `classify_store` and `predict_store` on the fingerprints of a store, and the model's domain.
"""

from .evaluation import (
    CHANCE,
    ClassificationResult,
    chance_warnings,
    evaluate,
    grouped_permutation_importance,
)

# legacy pickled models (written before skops) name their wrapper sporep_hpc.analysis.classify._Labelled
from .evaluation import _Labelled as _Labelled
from .labels import PROPERTY_PREFIX, example_properties, labels_for_ids, read_labels
from .model import BALANCING, ClassifierConfig, auto_repeats, auto_trees, imblearn_available, make_estimator
from .store import (
    DOMAIN_PERCENTILE,
    PredictionResult,
    classify_store,
    nearest_distances,
    predict_store,
    property_filter,
)

__all__ = [
    "BALANCING",
    "CHANCE",
    "DOMAIN_PERCENTILE",
    "PROPERTY_PREFIX",
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
    "imblearn_available",
    "labels_for_ids",
    "make_estimator",
    "nearest_distances",
    "predict_store",
    "property_filter",
    "read_labels",
]
