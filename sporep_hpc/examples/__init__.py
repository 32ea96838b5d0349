"""Built-in structure sets, generated or read from installed packages (no downloads).

A set is named by a spec ``NAME[?FILTER=VALUE[&FILTER=VALUE...]]`` (an ``examples:`` prefix is accepted):

* ``cnt``    single-wall carbon nanotubes, 4 <= n <= 12, 0 <= m <= n (`cnt.nanotube`)
* ``batio3`` the four BaTiO3 polymorphs (`batio3.polymorphs`)
* ``aflow``  the AFLOW crystallographic prototypes shipped with pymatgen (`aflow.prototypes`)

Filters common to every set: ``max_atoms``, ``min_atoms`` (atoms per cell) and ``limit`` (first k after
the other filters); each set adds equality filters on its properties (e.g. ``cnt?kind=armchair``,
``cnt?metallic=1``, ``aflow?strukturbericht=A1``). Structures are built only after filtering, so
``cnt?max_atoms=120`` never constructs the 1,588-atom (12,11) tube.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from ..errors import ParameterError

__all__ = ["ENTRY_FILTERS", "Entry", "ExampleSet", "catalogue", "load_set", "parse_spec", "registry"]

PREFIX = "examples:"
ENTRY_FILTERS = ("max_atoms", "min_atoms", "limit")


@dataclass(frozen=True)
class Entry:
    """One structure of a built-in set, not yet built.

    Attributes
    ----------
    id : str
        Unique identifier within the set (also the store id), ASCII, <= 64 bytes.
    n_atoms : int
        Atoms in the cell that `build` returns.
    properties : dict
        JSON-serialisable properties (labels for classification, tags).
    build : callable
        ``build() -> pymatgen.core.Structure``.
    """

    id: str
    n_atoms: int
    properties: dict
    build: Callable = field(repr=False, compare=False)


@dataclass(frozen=True)
class ExampleSet:
    """A named set: description, property filters and a function listing its entries."""

    name: str
    description: str
    property_filters: tuple[str, ...]
    entries: Callable[[], list[Entry]] = field(repr=False, compare=False)


def _cnt_entries() -> list[Entry]:
    from . import cnt

    out = []
    for n, m in cnt.chiralities():
        info = cnt.nanotube_info(n, m)
        out.append(
            Entry(f"cnt_{n}_{m}", info.n_atoms, info.as_properties(), lambda n=n, m=m: cnt.nanotube(n, m))
        )
    return out


def _batio3_entries() -> list[Entry]:
    from . import batio3

    return batio3.entries()


def _aflow_entries() -> list[Entry]:
    from . import aflow

    return aflow.entries()


_SETS = {
    "cnt": ExampleSet(
        "cnt",
        "single-wall carbon nanotubes (n,m), 4<=n<=12, 0<=m<=n; label metallic = (n-m) mod 3 == 0",
        ("n", "m", "kind", "family", "metallic", "electronic"),
        _cnt_entries,
    ),
    "batio3": ExampleSet(
        "batio3",
        "BaTiO3 polymorphs: cubic Pm-3m, tetragonal P4mm, orthorhombic Amm2, rhombohedral R3m",
        ("phase", "spacegroup"),
        _batio3_entries,
    ),
    "aflow": ExampleSet(
        "aflow",
        "AFLOW crystallographic prototypes shipped with pymatgen (mineral / Strukturbericht tags)",
        ("strukturbericht", "mineral", "spacegroup", "pearson"),
        _aflow_entries,
    ),
}


def registry() -> dict[str, ExampleSet]:
    """The built-in sets by name."""
    return dict(_SETS)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``[examples:]NAME[?k=v&...]`` into the set name and its filters (validated names)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ParameterError(f"example set spec must be a non-empty string; got {spec!r}")
    text = spec.strip()
    if text.startswith(PREFIX):
        text = text[len(PREFIX):]
    name, _, query = text.partition("?")
    if name not in _SETS:
        valid = ", ".join(sorted(_SETS))
        raise ParameterError(f"example set must be one of {valid}; got {name!r} (from {spec!r})")
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise ParameterError(f"example set filter {query!r} must look like key=value&key=value") from exc
    allowed = ENTRY_FILTERS + _SETS[name].property_filters
    filters: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            raise ParameterError(
                f"filter of example set {name!r} must be one of {', '.join(allowed)}; got {key!r}"
            )
        if key in filters:
            raise ParameterError(f"filter {key!r} of example set {name!r} given twice")
        filters[key] = value
    return name, filters


def _as_count(key: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError as exc:
        raise ParameterError(f"filter {key} must be a non-negative integer; got {value!r}") from exc
    if number < 0:
        raise ParameterError(f"filter {key} must be a non-negative integer; got {value!r}")
    return number


def catalogue(spec: str) -> list[Entry]:
    """The entries of a spec after filtering, not built (cheap: use it to count or list)."""
    name, filters = parse_spec(spec)
    entries = _SETS[name].entries()
    if "max_atoms" in filters:
        limit = _as_count("max_atoms", filters["max_atoms"])
        entries = [e for e in entries if e.n_atoms <= limit]
    if "min_atoms" in filters:
        limit = _as_count("min_atoms", filters["min_atoms"])
        entries = [e for e in entries if e.n_atoms >= limit]
    for key, value in filters.items():
        if key in ENTRY_FILTERS:
            continue
        entries = [e for e in entries if str(e.properties.get(key, "")).lower() == value.lower()]
    if "limit" in filters:
        entries = entries[: _as_count("limit", filters["limit"])]
    return entries


def load_set(spec: str) -> list[tuple[str, object, dict]]:
    """Build the structures of a built-in set.

    Parameters
    ----------
    spec : str
        ``[examples:]NAME[?FILTER=VALUE&...]``, e.g. ``"cnt?max_atoms=120"``, ``"batio3"``.

    Returns
    -------
    list of (id, pymatgen.core.Structure, properties dict)
        In the set's fixed order (ids are unique).

    Raises
    ------
    ParameterError
        Unknown set or filter, or a malformed filter value; the message names the valid ones.
    """
    return [(e.id, e.build(), dict(e.properties)) for e in catalogue(spec)]
