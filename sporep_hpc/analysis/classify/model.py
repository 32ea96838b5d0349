"""The classifier and its parameters.

The classifier is scikit-learn's `RandomForestClassifier` with ``class_weight="balanced"``, or
imbalanced-learn's `BalancedRandomForestClassifier` when that package is installed (``balancing="auto"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from ..._validation import check_choice, check_interval
from ...errors import ParameterError

BALANCING = ("auto", "balanced-rf", "class-weight", "none")


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
