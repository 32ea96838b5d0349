"""Checking a store against its layout (`schema.DATASETS`, `schema.GROUP_LAYOUT`) before reading it.

A reader names the parts of the store it uses; each dataset of those parts is checked once:

- present (unless the store's schema version predates it, `DatasetLayout.since`), and a dataset;
- of an accepted dtype kind;
- of the shape its layout gives: ``n`` rows of /structures/id, ``n + 1`` offsets, a ragged length
  equal to the last value of its offsets, the fingerprint length of the group's ``energies``, ...;
- offsets start at 0 and never decrease;
- the cross-checks between datasets: ``n_atoms`` equals the rows of ``atoms_offset``, each
  structure's eigenvalues fill whole ``n_k × n_bands`` blocks, a similarity ``index`` holds store
  rows.

A problem is one line naming the dataset (``/spectra/kpoints_offset: missing``), and the checks a
dataset depends on (its offsets, /structures/id for ``n``) are part of its own, so a part is valid only
when everything needed to read it is. `StoreCheck.require` raises the problems as one StoreError
(exit code 3). Checks read only metadata, offsets and per-structure counts (a few integers per
structure), never the bulk data; nothing is written.

Parts are ``"/"`` (root attributes), a group (``"structures"``, ``"spectra"``, ``"fingerprints"``,
``"similarity"``, ``"models"``, ``"neighbours"``: every dataset in it), a named group
(``"fingerprints/kinetic"``) or a dataset (``"structures/status"``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import StoreError
from .schema import DATASETS, GROUP_LAYOUT, REQUIRED_GROUPS, ROOT_ATTRS, SCHEMA_VERSION

__all__ = ["ALL_PARTS", "StoreCheck", "require"]

#: Everything a store can hold (what `sporep-hpc info` checks).
ALL_PARTS = ("/", "structures", "spectra", *GROUP_LAYOUT)

#: How many problems a StoreError message lists (`sporep-hpc info` lists all).
SHOWN = 3

_KIND_NAMES = {"S": "fixed-width bytes", "i": "signed integer", "u": "unsigned integer", "f": "float"}


def _version(text: str) -> tuple[int, ...]:
    """(major, minor) of a schema version; an unreadable one counts as the current version."""
    try:
        return tuple(int(x) for x in text.split("."))
    except ValueError:
        return _version(SCHEMA_VERSION)


def _pattern(key: str) -> str:
    """`key` with the name of a named group replaced by ``*`` (``similarity/*/index``)."""
    top, *rest = key.split("/")
    return f"{top}/*/{rest[-1]}" if top in GROUP_LAYOUT else key


class StoreCheck:
    """The validation of one open store, each dataset checked at most once.

    Parameters
    ----------
    file : h5py.File
        The open store (any mode; only read).
    version : str
        Its ``schema_version`` (decides which datasets must exist, `DatasetLayout.since`).
    name : str
        How messages name the store (its path).
    """

    def __init__(self, file: h5py.File, version: str, name: str) -> None:
        self.file = file
        self.version = _version(version)
        self.name = name
        self._problems: dict[str, list[str]] = {}
        self._values: dict[str, np.ndarray] = {}

    # public ---------------------------------------------------------------------------------------
    def problems(self, parts: Iterable[str] = ALL_PARTS) -> list[str]:
        """One line per missing or inconsistent dataset or attribute of `parts` (empty: all valid)."""
        out: list[str] = []
        for key in self._expand(parts):
            out.extend(p for p in self._check(key) if p not in out)
        return out

    def require(self, parts: Iterable[str] = ALL_PARTS) -> None:
        """StoreError (exit code 3) naming the first problems of `parts`, if any."""
        found = self.problems(parts)
        if found:
            more = len(found) - SHOWN
            tail = f"; and {more} more (`sporep-hpc info {self.name}` lists them)" if more > 0 else ""
            raise StoreError(f"{self.name}: damaged store: {'; '.join(found[:SHOWN])}{tail}")

    # parts -> dataset keys ------------------------------------------------------------------------
    def _expand(self, parts: Iterable[str]) -> list[str]:
        keys: list[str] = []
        for part in parts:
            part = part.strip("/") or "/"
            top = part.split("/")[0]
            if part == "/" or part in DATASETS:
                keys.append(part)
            elif part in REQUIRED_GROUPS and part in GROUP_LAYOUT:  # /fingerprints: every named group
                keys.append(f"group:{part}")
                keys.extend(self._named_groups(part))
            elif part in GROUP_LAYOUT:  # /similarity, /models: optional
                keys.extend(self._named_groups(part))
            elif part in REQUIRED_GROUPS:  # /structures, /spectra
                keys.append(f"group:{part}")
                keys.extend(k for k in DATASETS if k.startswith(part + "/"))
            elif top in GROUP_LAYOUT and part.count("/") == 1:  # a named group
                keys.append(f"group:{part}")
                keys.extend(f"{part}/{ds}" for ds in GROUP_LAYOUT[top])
            elif top in GROUP_LAYOUT and part.count("/") == 2:  # one dataset of a named group
                keys.append(part)
            else:
                raise ValueError(f"unknown store part {part!r}")  # a programming error, not the store's
        return keys

    def _named_groups(self, group: str) -> list[str]:
        obj = self.file.get(group)
        if not isinstance(obj, h5py.Group):
            return []
        return [f"group:{group}/{name}" for name in sorted(obj)]

    # checks -----------------------------------------------------------------------------------
    def _check(self, key: str) -> list[str]:
        """Problems of `key` (a dataset, ``"/"`` or ``"group:<path>"``), including those it depends on."""
        if key not in self._problems:
            self._problems[key] = []  # a dependency cycle cannot recurse forever
            try:
                if key == "/":
                    found = self._check_root()
                elif key.startswith("group:"):
                    found = self._check_group(key.removeprefix("group:"))
                else:
                    found = self._check_dataset(key)
            except OSError as exc:  # HDF5 cannot read what the metadata promises
                found = [f"/{key.removeprefix('group:')}: unreadable ({exc})"]
            self._problems[key] = found
        return self._problems[key]

    def _check_root(self) -> list[str]:
        attrs = self.file.attrs
        found = [f"/: attribute {name!r} missing" for name in ROOT_ATTRS if name not in attrs]
        if "parameters" in attrs:
            raw = attrs["parameters"]
            try:
                value = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
            except (ValueError, UnicodeDecodeError):
                value = None
            if not isinstance(value, dict):
                found.append("/: attribute 'parameters' is not a JSON object")
        return found

    def _check_group(self, path: str) -> list[str]:
        obj = self.file.get(path)
        if obj is None:
            return [f"/{path}: missing"]
        if not isinstance(obj, h5py.Group):
            return [f"/{path}: not a group"]
        top = path.split("/")[0]
        if top in GROUP_LAYOUT and "/" in path:  # a named group: its datasets
            return [p for ds in GROUP_LAYOUT[top] for p in self._check(f"{path}/{ds}")]
        return []

    def _check_dataset(self, key: str) -> list[str]:
        top, *_, name = key.split("/")
        layout = GROUP_LAYOUT[top][name] if top in GROUP_LAYOUT else DATASETS[key]
        parent = key.rsplit("/", 1)[0]
        if not isinstance(self.file.get(parent), h5py.Group):
            return self._check(f"group:{parent}") or [f"/{parent}: not a group"]
        obj = self.file[parent].get(name)
        if obj is None:
            optional = layout.optional or self.version < _version(layout.since)
            return [] if optional else [f"/{key}: missing"]
        if not isinstance(obj, h5py.Dataset):
            return [f"/{key}: not a dataset"]
        if obj.dtype.kind not in layout.kinds:
            wanted = " or ".join(_KIND_NAMES[k] for k in layout.kinds)
            return [f"/{key}: dtype {obj.dtype}, expected {wanted}"]
        found, expected, labels = [], [], []
        for dim in layout.shape:
            size, deps = self._dimension(parent, dim)
            found.extend(p for p in deps if p not in found)
            expected.append(size)
            labels.append(str(dim) if isinstance(dim, int) or size is None else f"{dim}={size}")
        if found:
            return found  # cannot say what the shape should be
        fits = len(obj.shape) == len(expected) and all(
            e is None or e == s for e, s in zip(expected, obj.shape, strict=False)
        )
        if not fits:
            return [f"/{key}: shape {obj.shape}, expected ({', '.join(labels)})"]
        if layout.offsets:
            found.extend(self._check_offsets(key))
        cross = _CROSS_CHECKS.get(_pattern(key))
        if cross is not None and not found:
            found.extend(cross(self, key))
        return found

    def _dimension(self, parent: str, dim: int | str) -> tuple[int | None, list[str]]:
        """(expected length or None for any, problems of the datasets it comes from) of one axis."""
        if isinstance(dim, int):
            return dim, []
        if dim == "*":
            return None, []
        if dim in ("n", "n+1"):
            deps = self._check("structures/id")
            n = None if deps else int(self.file["structures/id"].shape[0])
            return (None if n is None else n + (dim == "n+1")), deps
        if dim == "features":
            source, axis_value = f"{parent}/energies", lambda d: int(d.shape[0])
        elif dim in ("m", "m-1"):
            source, axis_value = f"{parent}/index", lambda d: int(d.shape[0]) - (dim == "m-1")
        else:  # a ragged length: the last value of the offsets dataset `dim` of this group
            source, axis_value = f"{parent}/{dim}", lambda d: int(self.values(f"{parent}/{dim}")[-1])
        deps = self._check(source)
        if deps:
            return None, deps
        if source not in self.file:  # absent and allowed to be (older schema): nothing can be ragged
            return 0, []
        return axis_value(self.file[source]), []

    def values(self, key: str) -> np.ndarray:
        """The whole (small) dataset `key` (offsets, counts), read once."""
        if key not in self._values:
            self._values[key] = self.file[key][()]
        return self._values[key]

    def _check_offsets(self, key: str) -> list[str]:
        off = self.values(key)
        if off[0] != 0:
            return [f"/{key}: starts at {int(off[0])}, expected 0"]
        down = np.flatnonzero(np.diff(off.astype(np.int64)) < 0)
        if down.size:
            i = int(down[0])
            return [f"/{key}: decreases from {int(off[i])} to {int(off[i + 1])} at row {i + 1}"]
        return []


# ---- cross-checks between datasets (run once the dataset's own layout holds) -------------------------


def _n_atoms_match_offsets(check: StoreCheck, key: str) -> list[str]:
    deps = check._check("structures/atoms_offset")
    if deps:
        return deps
    counts = np.diff(check.values("structures/atoms_offset").astype(np.int64))
    bad = np.flatnonzero(check.values(key) != counts)
    if bad.size:
        i = int(bad[0])
        return [
            f"/{key}: row {i} says {int(check.values(key)[i])} atoms but "
            f"/structures/atoms_offset gives {int(counts[i])}"
        ]
    return []


def _whole_band_blocks(check: StoreCheck, key: str) -> list[str]:
    deps = [p for k in ("spectra/kpoints_offset", "spectra/n_bands") for p in check._check(k)]
    if deps:
        return deps
    size = np.diff(check.values("spectra/bands_offset").astype(np.int64))
    block = np.diff(check.values("spectra/kpoints_offset").astype(np.int64)) * check.values(
        "spectra/n_bands"
    ).astype(np.int64)
    bad = np.flatnonzero(np.where(block > 0, size % np.maximum(block, 1), size) != 0)
    if bad.size:
        i = int(bad[0])
        return [
            f"/{key}: row {i} has {int(size[i])} eigenvalues, not a multiple of n_k × n_bands = "
            f"{int(block[i])} (/spectra/kpoints_offset, /spectra/n_bands)"
        ]
    return []


def _index_holds_store_rows(check: StoreCheck, key: str) -> list[str]:
    deps = check._check("structures/id")
    if deps:
        return deps
    n = int(check.file["structures/id"].shape[0])
    index = check.values(key)
    bad = np.flatnonzero((index < 0) | (index >= n))
    if bad.size:
        return [f"/{key}: row {int(bad[0])} is {int(index[bad[0]])}, not a store row in [0, {n})"]
    return []


_CROSS_CHECKS: dict[str, Callable[[StoreCheck, str], list[str]]] = {
    "structures/n_atoms": _n_atoms_match_offsets,
    "spectra/eigenvalues": _whole_band_blocks,
    "similarity/*/index": _index_holds_store_rows,
}


def require(file: h5py.File, path: Any, parts: Iterable[str]) -> None:
    """Validate `parts` of an open store file (for readers that do not go through `Store`).

    Raises
    ------
    StoreError
        Naming the first missing or inconsistent datasets.
    """
    version = file.attrs.get("schema_version", SCHEMA_VERSION)
    version = version.decode() if isinstance(version, bytes) else str(version)
    StoreCheck(file, version, str(Path(path))).require(parts)
