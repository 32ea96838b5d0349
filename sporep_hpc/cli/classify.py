"""`sporep-hpc classify store.h5 --labels labels.csv`: random-forest screening with cross-validation."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Train a random forest on a fingerprint of a store: labels from a CSV/JSON file (id,label) or a property
of the built-in example sets (property:electronic for metallic/semiconducting nanotubes). Stratified
cross-validation with fixed seeds (accuracy, adjusted balanced accuracy, precision, recall, F1, ROC-AUC,
confusion matrix), learning curve, impurity and permutation importances versus energy. The model is
saved in the store under /models/<name> with the fingerprint parameters; `sporep-hpc predict` applies it.

  sporep-hpc classify store.h5 --labels labels.csv --plots figs/
  sporep-hpc classify demo.h5 --labels property:electronic --fingerprint kinetic
"""


def add_parser(subparsers) -> None:
    from ..analysis.classify import BALANCING, ClassifierConfig
    from .similarity import MIX_KINDS_HELP

    d = ClassifierConfig()
    p = subparsers.add_parser(
        "classify",
        help="random-forest classification with cross-validation",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", help="the HDF5 store (the model is written into it)")
    p.add_argument("--labels", required=True, help="labels file (CSV/JSON: id,label) or property:NAME")
    p.add_argument("--fingerprint", default=None, help="fingerprint name (default: the only/first one)")
    p.add_argument("--name", default=None, help="model name under /models (default: the fingerprint name)")
    p.add_argument(
        "--trees", type=int, default=d.n_estimators,
        help="trees (default: 50 up to 100 labelled structures, 100 up to 1000, 200 beyond)",
    )
    p.add_argument(
        "--max-depth", type=int, default=None, dest="max_depth", help="tree depth (default: unlimited)"
    )
    p.add_argument(
        "--folds", type=int, default=d.cv_folds, help=f"stratified CV folds (default {d.cv_folds})"
    )
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument(
        "--balancing",
        default=d.balancing,
        choices=BALANCING,
        help="auto: BalancedRandomForest if imbalanced-learn is installed, else class weights",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=d.n_repeats,
        help="permutations per energy block (default: 5 up to 100 labelled structures, then ceil(500 / N))",
    )
    p.add_argument(
        "--groups",
        type=int,
        default=d.permutation_groups,
        help=f"energy blocks for the permutation importance (default {d.permutation_groups})",
    )
    p.add_argument("--jobs", type=int, default=1, help="threads of the forest (default 1)")
    p.add_argument(
        "--where", default=None, metavar="EXPR",
        help="only structures whose stored property satisfies NAME OP VALUE, e.g. 'diameter>=6' "
        "(OP: >= <= > < == !=)",
    )
    p.add_argument("--mix-kinds", action="store_true", dest="mix_kinds", help=MIX_KINDS_HELP)
    p.add_argument("--plots", default=None, metavar="DIR", help="write PNG figures into DIR")
    p.add_argument("--no-save", action="store_true", dest="no_save", help="do not store the model")
    p.set_defaults(run=classify_command)


def format_result(result, top: int = 5) -> str:
    """Multi-line summary: classes, CV metrics, confusion matrix, most important energies."""
    import numpy as np

    from ..analysis.classify.evaluation import _groups

    lines = [
        "classes: " + ", ".join(f"{c} ({result.class_counts[c]})" for c in result.classes),
        f"estimator: {result.estimator_name}, {result.config.n_estimators} trees, "
        f"{result.n_folds}-fold stratified CV (seed {result.config.seed})",
        "cross-validated scores (mean ± std over folds):",
    ]
    from ..analysis.classify import CHANCE

    majority = max(result.class_counts.values()) / sum(result.class_counts.values())
    chance = {**CHANCE, "accuracy": majority}
    for key in ("accuracy", "balanced_accuracy_adjusted", "precision", "recall", "f1", "roc_auc"):
        m = result.metrics[key]
        level = f"   (chance {chance[key]:.3f})" if key in chance else ""
        lines.append(f"  {key:<27s} {m['mean']:.3f} ± {m['std']:.3f}{level}")
    lines += [f"WARNING: {w}" for w in result.warnings]
    width = max(len(c) for c in result.classes)
    lines.append("out-of-fold confusion matrix (rows true, columns predicted):")
    lines.append("  " + " " * width + "  " + "  ".join(f"{c:>{width}s}" for c in result.classes))
    for c, row in zip(result.classes, result.confusion, strict=True):
        lines.append(f"  {c:>{width}s}  " + "  ".join(f"{int(v):>{width}d}" for v in row))
    order = np.argsort(result.impurity_importance)[::-1][:top]
    lines.append(
        "highest impurity importance at: "
        + ", ".join(f"{result.energies[k]:.2f} eV ({result.impurity_importance[k]:.3f})" for k in order)
    )
    groups = _groups(len(result.energies), result.config.permutation_groups)
    ranked = sorted(groups, key=lambda g: -result.permutation_importance[g[0]])[: max(1, top // 2 + 1)]
    lines.append(
        "largest permutation importance (energy blocks permuted together): "
        + ", ".join(
            f"{result.energies[g[0]]:.1f}..{result.energies[g[-1]]:.1f} eV "
            f"({result.permutation_importance[g[0]]:+.3f})"
            for g in ranked
        )
    )
    return "\n".join(lines)


def classification_figures(result, out_dir, name: str, window_offsets=None, references=None) -> list[Path]:
    """Confusion matrix, importance versus energy and learning curve PNGs."""
    from .. import plots

    out_dir = Path(out_dir)
    return [
        plots.plot_confusion(
            result.confusion,
            result.classes,
            out_dir / f"{name}_confusion.png",
            title=f"{name}: out-of-fold confusion matrix",
        ),
        plots.plot_importance(
            result.energies,
            result.impurity_importance,
            result.permutation_importance,
            out_dir / f"{name}_importance.png",
            permutation_std=result.permutation_importance_std,
            window_offsets=window_offsets,
            references=references,
            title=f"{name}: feature importance",
        ),
        plots.plot_learning_curve(
            result.learning_curve, out_dir / f"{name}_learning_curve.png",
            title=f"{name}: learning curve ({result.n_folds}-fold CV)",
        ),
    ]


def classify_command(args) -> int:
    from ..analysis.classify import ClassifierConfig, classify_store
    from ..analysis.similarity import window_offsets_from_attrs
    from ..store import open_store
    from .similarity import default_fingerprint

    fingerprint = args.fingerprint or default_fingerprint(args.store)
    config = ClassifierConfig(
        n_estimators=args.trees,
        max_depth=args.max_depth,
        cv_folds=args.folds,
        seed=args.seed,
        balancing=args.balancing,
        n_repeats=args.repeats,
        permutation_groups=args.groups,
        n_jobs=args.jobs,
    )
    name = args.name or fingerprint
    result = classify_store(
        args.store, fingerprint, args.labels, name=name, config=config, save=not args.no_save,
        where=args.where, mix_kinds=args.mix_kinds,
    )
    where = f" where {args.where}" if args.where else ""
    print(
        f"classification of {len(result.ids)} structures by fingerprint {fingerprint} "
        f"(labels {args.labels}{where})"
    )
    print(format_result(result))
    if not args.no_save:
        print(f"model saved: {args.store}:/models/{name}")
    if args.plots:
        with open_store(args.store) as store:
            _, energies, attrs = store.fingerprints(fingerprint)
        offsets = window_offsets_from_attrs(attrs, energies)
        references = str(attrs.get("reference", "")).split("+")
        for p in classification_figures(result, args.plots, name, offsets, references):
            print(f"figure {p}")
    return 0
