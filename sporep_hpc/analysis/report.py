"""A short text report of a store's post-processing (what `make demo` prints).

Reads the store, its /similarity and /models groups (of a model only its attributes: a model is never
loaded); computes nothing expensive: the nanotube clustering is a scipy linkage of the stored distance
sub-matrix of the tubes, compared with the zone-folding families and the tube kinds by the adjusted Rand
index.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from .classify import example_properties

__all__ = ["store_report"]


def _section_store(path) -> list[str]:
    from ..store import STATUS_DONE, open_store

    with open_store(path) as store:
        params = store.parameters
        status = store.status
        n_atoms = store.structures()["n_atoms"]
        names = store.fingerprint_names
        ids = store.ids
    done = int(np.sum(status == STATUS_DONE))
    prefixes = Counter(i.split("_")[0] for i in ids)
    run = {k: params[k] for k in ("operator", "basis", "kdensity") if k in params}
    return [
        f"store {path}",
        f"  {len(ids)} structures ({', '.join(f'{k}: {v}' for k, v in sorted(prefixes.items()))}), "
        f"{done} done, {len(ids) - done} failed; {int(n_atoms.min())}..{int(n_atoms.max())} atoms",
        f"  run parameters {json.dumps(run)}; fingerprints: {', '.join(names)}",
    ]


def _section_batio3(distance, ids, metric) -> list[str]:
    idx = [k for k, i in enumerate(ids) if i.startswith("batio3_")]
    if len(idx) < 2:
        return []
    sub = distance[np.ix_(idx, idx)]
    names = [ids[k].removeprefix("batio3_") for k in idx]
    pairs = sorted((sub[a, b], names[a], names[b]) for a in range(len(idx)) for b in range(a + 1, len(idx)))
    lines = [f"BaTiO3 polymorphs ({metric} distance, closest first):"]
    lines += [f"  {d:10.3g}  {a} - {b}" for d, a, b in pairs]
    lines.append(f"  closest: {pairs[0][1]} and {pairs[0][2]}; farthest: {pairs[-1][1]} and {pairs[-1][2]}")
    return lines


def _section_tubes(distance, ids, metric) -> list[str]:
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform
    from sklearn.metrics import adjusted_rand_score

    idx = [k for k, i in enumerate(ids) if i.startswith("cnt_")]
    if len(idx) < 4:
        return []
    props = example_properties([ids[k] for k in idx])
    tube_ids = [ids[k] for k in idx]
    family = [props[i]["family"] for i in tube_ids]
    kind = [props[i]["kind"] for i in tube_ids]
    sub = distance[np.ix_(idx, idx)]
    z = linkage(squareform(sub, checks=False), "average")
    lines = [f"nanotubes: {len(idx)} tubes; average-linkage clusters of the {metric} distances"]
    for k in (2, 3):
        clusters = fcluster(z, k, criterion="maxclust")
        lines.append(
            f"  {k} clusters: adjusted Rand index vs family (metallic/semi-1/semi-2) "
            f"{adjusted_rand_score(family, clusters):+.2f}, vs kind (zigzag/armchair/chiral) "
            f"{adjusted_rand_score(kind, clusters):+.2f}"
        )
        for c in sorted(set(clusters)):
            members = [t for t, cl in zip(tube_ids, clusters, strict=True) if cl == c]
            fam = Counter(f for f, cl in zip(family, clusters, strict=True) if cl == c)
            knd = Counter(x for x, cl in zip(kind, clusters, strict=True) if cl == c)
            show = ", ".join(members[:6]) + (", ..." if len(members) > 6 else "")
            lines.append(f"    cluster {c}: {len(members)} tubes [{dict(fam)}; {dict(knd)}] {show}")
    same = np.equal.outer(np.array(family), np.array(family))
    off = ~np.eye(len(idx), dtype=bool)
    lines.append(
        f"  mean distance within a family {sub[same & off].mean():.4g}, "
        f"between families {sub[~same].mean():.4g}"
    )
    masked = sub + np.diag(np.full(len(idx), np.inf))
    nearest = np.argmin(masked, axis=1)
    for what, labels in (("family", family), ("kind", kind)):
        lab = np.array(labels)
        hits = int(np.sum(lab[nearest] == lab))
        counts = np.array(list(Counter(labels).values()))
        chance = float((counts * (counts - 1)).sum() / (len(idx) * (len(idx) - 1)))
        lines.append(
            f"  nearest tube has the same {what}: {hits}/{len(idx)} "
            f"(random neighbour: {chance * len(idx):.1f}/{len(idx)})"
        )
    diam = np.array([props[i]["diameter"] for i in tube_ids])
    iu = np.triu_indices(len(idx), 1)
    corr = np.corrcoef(np.abs(diam[:, None] - diam[None, :])[iu], sub[iu])[0, 1]
    lines.append(f"  correlation of the distance with the diameter difference: {corr:+.2f}")
    return lines


def _section_model(path, name) -> list[str]:
    from ..store.groups import MODEL_FORMAT, load_model, model_names

    names = model_names(path)
    if not names:
        return []
    # the metrics are attributes: the model itself is never loaded here
    rec = load_model(path, name or names[0], load_estimator=False)
    summary = rec.attrs.get("metrics", {})
    m = summary.get("metrics", {})
    counts = summary.get("class_counts", {})
    lines = [
        f"classifier /models/{rec.name}: {summary.get('estimator', '')} on fingerprint "
        f"{rec.attrs.get('fingerprint')}, labels {rec.attrs.get('label_source')} "
        f"({', '.join(f'{k} {v}' for k, v in counts.items())}), {summary.get('n_folds')}-fold stratified CV:",
    ]
    for key in ("accuracy", "balanced_accuracy_adjusted", "f1", "roc_auc"):
        if key in m:
            lines.append(f"  {key:<27s} {m[key]['mean']:.3f} ± {m[key]['std']:.3f}")
    if "confusion" in summary:
        lines.append(f"  confusion (rows true {summary['classes']}): {summary['confusion']}")
    if rec.format != MODEL_FORMAT:
        lines.append(
            f"  the model is stored as a {rec.format} (not loaded): `sporep-hpc predict` refuses it "
            "unless --trust-pickle; retrain it with `sporep-hpc classify`"
        )
    return lines


def store_report(path, *, similarity: str | None = None, model: str | None = None, plots=None) -> str:
    """The report of a store: contents, BaTiO3 distances, nanotube clustering, CV scores, figures.

    Parameters
    ----------
    path : path
        The store.
    similarity : str, optional
        /similarity group (default: the first one).
    model : str, optional
        /models group (default: the first one).
    plots : path, optional
        Directory whose PNG files are listed.
    """
    from ..store.groups import read_similarity, similarity_names

    lines = _section_store(path)
    sims = similarity_names(path)
    if sims:
        rec = read_similarity(path, similarity or sims[0])
        metric = rec.attrs.get("metric", "")
        lines.append(f"similarity /similarity/{rec.name}: {metric} on {rec.attrs.get('fingerprint')}")
        lines += _section_batio3(rec.distance, rec.ids, metric)
        lines += _section_tubes(rec.distance, rec.ids, metric)
    lines += _section_model(path, model)
    if plots is not None and Path(plots).is_dir():
        pngs = sorted(Path(plots).glob("*.png"))
        if pngs:
            lines.append("figures:")
            lines += [f"  {p}" for p in pngs]
    return "\n".join(lines)
