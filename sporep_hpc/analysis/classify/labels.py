"""Labels of structures by id.

Labels come from a CSV/JSON file (id, label) or from a property of the structures (``property:NAME``,
e.g. ``property:electronic`` for the nanotubes' metallic/semiconducting label).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import InputError

PROPERTY_PREFIX = "property:"


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
