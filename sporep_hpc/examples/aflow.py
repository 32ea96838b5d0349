"""The AFLOW crystallographic prototypes shipped with pymatgen (no download).

Data: ``pymatgen/analysis/prototypes/aflow_prototypes.json.gz`` — the 288 prototypes of M. J. Mehl et al.,
"The AFLOW Library of Crystallographic Prototypes: Part 1", Comput. Mater. Sci. 136, S1 (2017), as
pymatgen StructureNL objects with tags ``aflow`` (prototype label), ``pearson``, ``strukturbericht``
and ``mineral``. The file is read once per process.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import re
from pathlib import Path

from ..errors import InputError

__all__ = ["DATA_FILE", "entries", "prototypes"]

DATA_FILE = "aflow_prototypes.json.gz"


@functools.lru_cache(maxsize=1)
def _load() -> tuple:
    """The raw records (dicts with ``snl`` and ``tags``), read as plain JSON.

    Plain JSON takes ~0.1 s; monty's loadfn, which builds full StructureNL objects (BibTeX parsing
    included), takes seconds. The file is found without importing ``pymatgen.analysis.prototypes``,
    whose import runs that loadfn on it (7.5 s here).
    """
    try:
        spec = importlib.util.find_spec("pymatgen.analysis.prototypes")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("no package pymatgen.analysis.prototypes")
        path = Path(next(iter(spec.submodule_search_locations))) / DATA_FILE
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            data = json.load(fh)
    except (ModuleNotFoundError, FileNotFoundError, OSError, ValueError) as exc:
        raise InputError(f"pymatgen's {DATA_FILE} is not installed or unreadable ({exc})") from exc
    return tuple(data)


def _structure(snl: dict):
    from pymatgen.core import Structure

    return Structure.from_dict(snl)


def _formula(snl: dict) -> str:
    """Reduced formula of a prototype from its sites' species, without building the Structure: listing
    the set (`sporep_hpc.examples.catalogue`) builds no structure."""
    from pymatgen.core import Composition

    counts: dict[str, float] = {}
    for site in snl["sites"]:
        for species in site["species"]:
            counts[species["element"]] = counts.get(species["element"], 0.0) + species["occu"]
    return Composition(counts).reduced_formula


def _clean(value) -> str:
    text = "" if value in (None, "None") else str(value)
    return text.strip()


def _id(label: str, seen: dict) -> str:
    base = "aflow_" + re.sub(r"[^A-Za-z0-9_.-]", "_", label)[:58]
    seen[base] = seen.get(base, 0) + 1
    return base if seen[base] == 1 else f"{base}-{seen[base]}"


def prototypes() -> list[tuple[str, object, dict]]:
    """(id, Structure, tags) of every prototype, in the file's order.

    ids are ``aflow_<prototype label>`` (a suffix ``-2``, ``-3`` for repeated labels); tags hold
    ``aflow``, ``pearson``, ``strukturbericht``, ``mineral`` (empty string when absent), ``spacegroup``
    (international number as str) and ``formula``.
    """
    return [(e.id, e.build(), dict(e.properties)) for e in entries()]


def entries() -> list:
    """Catalogue entries for `sporep_hpc.examples.load_set` (a new Structure on every build)."""
    from . import Entry

    out = []
    seen: dict = {}
    for item in _load():
        snl, tags = item["snl"], item.get("tags", {})
        formula = _formula(snl)
        label = _clean(tags.get("aflow")) or formula
        match = re.search(r"_(\d+)_", label)
        props = {
            "aflow": label,
            "pearson": _clean(tags.get("pearson")),
            "strukturbericht": _clean(tags.get("strukturbericht")),
            "mineral": _clean(tags.get("mineral")),
            "spacegroup": match.group(1) if match else "",
            "formula": formula,
        }
        out.append(Entry(_id(label, seen), len(snl["sites"]), props, functools.partial(_structure, snl)))
    return out
