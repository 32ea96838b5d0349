"""A short text report of a store's post-processing (what `make demo` prints), and a side-by-side
comparison of several stores (e.g. the same structures with two operators).

Works on any store: structures are counted by stored formula; the BaTiO3 and nanotube sections appear
only when the store holds those built-in structures (recognised by their stored properties, or for
stores before schema 1.2 by the example catalogue). Reads the store, its /similarity and /models groups
(of a model only its attributes: a model is never loaded); computes nothing expensive: the nanotube
clustering is a scipy linkage of the stored distance sub-matrix of the tubes, compared with the
zone-folding families and the tube kinds by the adjusted Rand index.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from .classify import example_properties

__all__ = ["compare_report", "store_report"]

#: Operators whose spectra have a chemical Fermi level, so that band gaps mean something.
_CHEMICAL_OPERATORS = ("huckel",)
#: Formulas listed by name in the store line; the rest are counted together.
_MAX_FORMULAS = 8


def _properties(store, ids) -> list[dict]:
    """Stored properties of every row; the example catalogue for stores without them."""
    if store.has_properties:
        return [p or {} for p in store.all_properties()]
    known = example_properties(ids)
    return [known.get(i, {}) for i in ids]


def _read(path) -> dict:
    from ..store import STATUS_DONE, open_store

    with open_store(path) as store:
        ids = store.ids
        out = {
            "params": store.parameters,
            "status": store.status,
            "structures": store.structures(),
            "names": store.fingerprint_names,
            "ids": ids,
            "properties": _properties(store, ids),
        }
        done = np.flatnonzero(out["status"] == STATUS_DONE)
        gaps = np.full(len(ids), np.nan)
        for i in done:
            gaps[i] = store.spectrum(int(i))["band_gap"]
        out["gaps"] = gaps
    return out


def _formula(f) -> str:
    return f.decode() if isinstance(f, bytes) else str(f)


def _section_store(path, data) -> list[str]:
    from ..store import STATUS_DONE

    status, ids = data["status"], data["ids"]
    done = int(np.sum(status == STATUS_DONE))
    formulas = Counter(_formula(f) or "(no formula)" for f in data["structures"]["formula"])
    shown = formulas.most_common(_MAX_FORMULAS)
    rest = sum(formulas.values()) - sum(n for _, n in shown)
    groups = ", ".join(f"{k}: {v}" for k, v in shown) + (f", {len(formulas) - len(shown)} other formulas: "
                                                          f"{rest}" if rest else "")
    n_atoms = data["structures"]["n_atoms"]
    run = {k: data["params"][k] for k in ("operator", "basis", "kdensity") if k in data["params"]}
    return [
        f"store {path}",
        f"  {len(ids)} structures by formula ({groups}), {done} done, {len(ids) - done} failed; "
        f"{int(n_atoms.min())}..{int(n_atoms.max())} atoms",
        f"  run parameters {json.dumps(run)}; fingerprints: {', '.join(data['names'])}",
    ]


def _batio3_rows(data) -> list[int]:
    ids = data["ids"]
    return [k for k, p in enumerate(data["properties"]) if "phase" in p and ids[k].startswith("batio3_")]


def _tube_rows(data) -> list[int]:
    return [k for k, p in enumerate(data["properties"]) if {"family", "kind", "diameter"} <= set(p)]


def _section_gaps(data) -> tuple[list[str], dict]:
    """Band gaps of a chemical operator: BaTiO3 polymorphs, nanotubes by zone-folding label, others."""
    if data["params"].get("operator") not in _CHEMICAL_OPERATORS:
        return [], {}
    head = {}
    gaps, ids, props = data["gaps"], data["ids"], data["properties"]
    lines = [f"band gaps ({data['params']['operator']} spectra, eV):"]
    bt = _batio3_rows(data)
    if bt:
        head["BaTiO3 gaps (eV)"] = ", ".join(f"{props[k]['phase']} {gaps[k]:.2f}" for k in bt)
        lines.append(f"  BaTiO3: {head['BaTiO3 gaps (eV)']}")
    tubes = _tube_rows(data)
    for label in sorted({props[k].get("electronic", "") for k in tubes} - {""}):
        for lo, hi in ((0.0, 6.0), (6.0, np.inf)):
            g = np.array([gaps[k] for k in tubes if props[k].get("electronic") == label
                          and lo <= props[k]["diameter"] < hi and np.isfinite(gaps[k])])
            if g.size:
                where = "d < 6 Å" if lo == 0 else "d >= 6 Å"
                lines.append(f"  nanotubes {label} by zone folding, {where}: {g.size} tubes, gap "
                             f"{g.min():.2f}..{g.max():.2f} (median {np.median(g):.2f})")
    other = [k for k in range(len(ids)) if k not in set(bt) | set(tubes) and np.isfinite(gaps[k])]
    for k in other[:12]:
        lines.append(f"  {ids[k]} ({_formula(data['structures']['formula'][k])}): {gaps[k]:.2f}")
    if len(other) > 12:
        lines.append(f"  ... {len(other) - 12} more (see `sporep-hpc info`)")
    return (lines, head) if len(lines) > 1 else ([], {})


def _section_batio3(distance, ids, metric, props: dict) -> tuple[list[str], dict]:
    """Report lines and headline numbers of the BaTiO3 polymorphs' distances (nothing without them)."""
    idx = [k for k, i in enumerate(ids) if i.startswith("batio3_") and "phase" in props.get(i, {})]
    if len(idx) < 2:
        return [], {}
    sub = distance[np.ix_(idx, idx)]
    names = [ids[k].removeprefix("batio3_") for k in idx]
    pairs = sorted((sub[a, b], names[a], names[b]) for a in range(len(idx)) for b in range(a + 1, len(idx)))
    lines = [f"BaTiO3 polymorphs ({metric} distance, closest first):"]
    lines += [f"  {d:10.3g}  {a} - {b}" for d, a, b in pairs]
    lines.append(f"  closest: {pairs[0][1]} and {pairs[0][2]}; farthest: {pairs[-1][1]} and {pairs[-1][2]}")
    return lines, {"BaTiO3 closest pair": f"{pairs[0][1]} and {pairs[0][2]}"}


def _section_tubes(distance, ids, metric, props: dict) -> tuple[list[str], dict]:
    """Report lines and headline numbers of the nanotubes' clustering (nothing without tubes)."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform
    from sklearn.metrics import adjusted_rand_score

    idx = [k for k, i in enumerate(ids) if {"family", "kind", "diameter"} <= set(props.get(i, {}))]
    if len(idx) < 4:
        return [], {}
    head = {}
    tube_ids = [ids[k] for k in idx]
    family = [props[i]["family"] for i in tube_ids]
    kind = [props[i]["kind"] for i in tube_ids]
    sub = distance[np.ix_(idx, idx)]
    z = linkage(squareform(sub, checks=False), "average")
    lines = [f"nanotubes: {len(idx)} tubes; average-linkage clusters of the {metric} distances"]
    for k in (2, 3):
        clusters = fcluster(z, k, criterion="maxclust")
        head.setdefault("tubes: 2-cluster ARI vs family", f"{adjusted_rand_score(family, clusters):+.2f}")
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
    return lines, head


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
    lines += [f"  WARNING: {w}" for w in summary.get("warnings", [])]
    if rec.format != MODEL_FORMAT:
        lines.append(
            f"  the model is stored as a {rec.format} (not loaded): `sporep-hpc predict` refuses it "
            "unless --trust-pickle; retrain it with `sporep-hpc classify`"
        )
    return lines


def _headline(path, data, similarity, model) -> tuple[list[str], dict]:
    """The report lines of one store and its headline numbers (for `compare_report`)."""
    from ..store.groups import load_model, model_names, read_similarity, similarity_names

    lines = _section_store(path, data)
    head = {"operator": data["params"].get("operator", "?")}
    props = dict(zip(data["ids"], data["properties"], strict=True))
    sims = similarity_names(path)
    if sims:
        rec = read_similarity(path, similarity or sims[0])
        metric = rec.attrs.get("metric", "")
        lines.append(f"similarity /similarity/{rec.name}: {metric} on {rec.attrs.get('fingerprint')}")
        for section in (_section_batio3, _section_tubes):
            more, numbers = section(rec.distance, rec.ids, metric, props)
            lines += more
            head.update(numbers)
    more, numbers = _section_gaps(data)
    lines += more
    head.update(numbers)
    names = model_names(path)
    if names:
        lines += _section_model(path, model)
        m = load_model(path, model or names[0], load_estimator=False).attrs.get("metrics", {})
        for key in ("roc_auc", "balanced_accuracy_adjusted"):
            if key in m.get("metrics", {}):
                head[key] = f"{m['metrics'][key]['mean']:.3f} ± {m['metrics'][key]['std']:.3f}"
    return lines, head


def store_report(path, *, similarity: str | None = None, model: str | None = None, plots=None) -> str:
    """The report of a store: contents, BaTiO3 distances, nanotube clustering, band gaps (chemical
    operators), CV scores, figures.

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
    lines, _ = _headline(path, _read(path), similarity, model)
    return "\n".join(lines + _figures(plots))


def compare_report(paths, *, similarity: str | None = None, model: str | None = None, plots=None) -> str:
    """The reports of several stores, then their headline numbers side by side (one column per store).

    Parameters are those of `store_report`; `similarity` and `model` name the groups in every store.
    """
    blocks, heads = [], []
    for path in paths:
        lines, head = _headline(path, _read(path), similarity, model)
        blocks.append("\n".join(lines))
        heads.append(head)
    keys = list(dict.fromkeys(k for h in heads for k in h))
    names = [Path(p).name for p in paths]
    width = max(len(k) for k in keys) + 2
    cols = [max(len(n), *(len(str(h.get(k, "-"))) for k in keys)) + 2
            for n, h in zip(names, heads, strict=True)]
    table = ["side by side:", " " * width + "".join(n.ljust(c) for n, c in zip(names, cols, strict=True))]
    for k in keys:
        cells = (str(h.get(k, "-")).ljust(c) for h, c in zip(heads, cols, strict=True))
        table.append(k.ljust(width) + "".join(cells))
    return "\n\n".join([*blocks, "\n".join(table + _figures(plots))])


def _figures(plots) -> list[str]:
    if plots is None or not Path(plots).is_dir():
        return []
    pngs = sorted(Path(plots).glob("*.png"))
    return ["figures:", *(f"  {p}" for p in pngs)] if pngs else []
