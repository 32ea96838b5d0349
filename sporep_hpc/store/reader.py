"""Reading a store: `open_store` (Python API), `to_dataframe` (pandas), `read_band_structures`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import fields
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, StoreError
from ..fingerprints import source_kind
from .h5 import open_h5
from .schema import (
    DATASETS,
    SCHEMA_VERSION,
    SPECTRA_SCALARS,
    STATUS_DONE,
    DatasetLayout,
    StructureResult,
    from_fixed,
)
from .validate import ALL_PARTS, StoreCheck

#: The StructureResult fields a row is built from (n_atoms and n_bands follow from the arrays).
_RESULT_FIELDS = frozenset(f.name for f in fields(StructureResult))


def _decode(layout: DatasetLayout, value: Any) -> Any:
    """One structure's value of a dataset as `StructureResult` holds it (inverse of the writer's encoding)."""
    if layout.width:
        return from_fixed(value)
    if layout.dtype == "uint8":  # per-structure properties: UTF-8 JSON text
        return value.tobytes().decode("utf-8")
    if layout.shape == ("n",):
        return float(value) if layout.kinds == "f" else int(value)
    return value


class Store:
    """Read access to a store written by `sporep-hpc run` (a context manager).

    Every accessor first validates the datasets it reads (`sporep_hpc.store.validate`: present,
    dtype, shape, offsets), so a damaged store raises StoreError naming the dataset (exit code 3),
    never a KeyError or a reshape error; `require` validates the parts a caller reads from `file`
    directly, `problems` lists what is wrong.

    Parameters
    ----------
    path : path
        The HDF5 store.
    mode : {"r", "r+"}
        "r+" lets post-processing add /similarity and /models groups.
    comm : mpi4py communicator or None
        Open collectively with mpio on `comm` (size > 1 and MPI-enabled h5py).
    """

    def __init__(self, path: Any, mode: str = "r", comm: Any = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise StoreError(f"{self.path}: no such store")
        self.file = open_h5(self.path, mode, comm)
        version = self.file.attrs.get("schema_version")
        if version is None or "structures" not in self.file:
            self.file.close()
            raise StoreError(f"{self.path} is not a sporep-hpc store (no schema_version or /structures)")
        version = version.decode() if isinstance(version, bytes) else str(version)
        if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
            self.file.close()
            raise StoreError(f"{self.path}: schema_version {version} is not readable by {SCHEMA_VERSION}")
        self.schema_version = version
        self._check = StoreCheck(self.file, version, str(self.path))
        self._cache: dict[str, np.ndarray] = {}

    # context manager ------------------------------------------------------
    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (collective when opened with mpio)."""
        if self.file.id.valid:
            self.file.close()

    # validation -----------------------------------------------------------
    def require(self, *parts: str) -> None:
        """StoreError (exit code 3) naming what is missing or inconsistent in `parts` (default: all).

        Parts: ``"/"`` (root attributes), a group (``"spectra"``, ``"fingerprints"``, ...), a named
        group (``"fingerprints/kinetic"``, ``"models/kinetic"``) or a dataset (``"structures/status"``).
        """
        self._check.require(parts or ALL_PARTS)

    def problems(self, *parts: str) -> list[str]:
        """One line per missing or inconsistent dataset or attribute of `parts` (default: all)."""
        return self._check.problems(parts or ALL_PARTS)

    # helpers --------------------------------------------------------------
    def _dataset(self, key: str):
        """The h5py dataset `key`, validated first."""
        self.require(key)
        return self.file[key]

    def _get(self, key: str) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = self._dataset(key)[()]
        return self._cache[key]

    # root -----------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        """Root attributes (strings decoded)."""
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self.file.attrs.items()}

    @property
    def inputs_digest(self) -> str | None:
        """SHA-256 of the inputs the store was computed from (None for stores without it)."""
        value = self.file["structures"].attrs.get("inputs_digest")
        return None if value is None else (value.decode() if isinstance(value, bytes) else str(value))

    @property
    def parameters(self) -> dict[str, Any]:
        """Run parameters (decoded JSON)."""
        self.require("/")
        return json.loads(self.attrs["parameters"])

    def __len__(self) -> int:
        return int(self._dataset("structures/id").shape[0])

    @property
    def ids(self) -> list[str]:
        """Structure ids in row order."""
        return [from_fixed(x) for x in self._get("structures/id")]

    def index_of(self, id: str) -> int:
        """Row of structure `id` (StoreError if absent)."""
        try:
            return self.ids.index(id)
        except ValueError as exc:
            raise StoreError(f"{self.path}: no structure with id {id!r}") from exc

    @property
    def status(self) -> np.ndarray:
        """(N,) int8: 1 done, -1 failed, 0 pending."""
        return self._get("structures/status")

    @property
    def errors(self) -> list[str]:
        """One-line failure reasons in row order ("" for successful rows)."""
        return [from_fixed(x) for x in self._get("structures/error")]

    def structures(self) -> dict[str, Any]:
        """The /structures table as arrays: id, formula, n_atoms, cell, status, error."""
        return {
            "id": self.ids,
            "formula": [from_fixed(x) for x in self._get("structures/formula")],
            "n_atoms": self._get("structures/n_atoms"),
            "cell": self._get("structures/cell"),
            "status": self.status,
            "error": self.errors,
        }

    def _properties_text(self, i: int) -> str:
        if not self.has_properties:  # stores before schema 1.2
            return ""
        return self._read(i, i + 1, ("structures/properties",))[0]["properties"]

    def properties(self, i: int) -> dict[str, Any]:
        """Per-structure properties of row `i` (e.g. ``{"electronic": "metallic", ...}`` for the
        nanotubes; extended XYZ ``info``); {} when none, or for stores written before schema 1.2."""
        text = self._properties_text(i)
        return json.loads(text) if text else {}

    def all_properties(self) -> list[dict[str, Any]]:
        """`properties` of every row, in row order (one read)."""
        return [json.loads(text) if text else {} for text in self._all_properties_text()]

    def _all_properties_text(self) -> list[str]:
        if not self.has_properties:
            return [""] * len(self)
        return [row["properties"] for row in self._read(0, len(self), ("structures/properties",))]

    @property
    def has_properties(self) -> bool:
        """True when the store has the /structures/properties dataset (schema >= 1.2; StoreError when
        a 1.2 store lacks it)."""
        self.require("structures/properties")
        return "structures/properties" in self.file

    @property
    def sources(self) -> list[str]:
        """Source of every row in row order (``operator:kinetic``, ``dft:vasp:vasprun.xml``, DESIGN.md §8.2);
        "" when unknown: unreadable inputs, and every row of a store written before schema 1.3."""
        self.require("structures/source")
        if "structures/source" not in self.file:
            return [""] * len(self)
        return [from_fixed(x) for x in self._get("structures/source")]

    def atoms(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cell (3,3) Å, numbers (n,), positions (n,3) Å) of row `i`."""
        row = self._read(i, i + 1, ("structures/cell", "structures/numbers", "structures/positions"))[0]
        return row["cell"], row["numbers"], row["positions"]

    def structure(self, i: int):
        """Row `i` as a pymatgen Structure."""
        from pymatgen.core import Lattice, Structure

        cell, numbers, positions = self.atoms(i)
        return Structure(Lattice(cell), numbers.tolist(), positions, coords_are_cartesian=True)

    # rows -----------------------------------------------------------------
    def _read(self, lo: int, hi: int, keys: Sequence[str]) -> list[dict[str, Any]]:
        """Rows [lo, hi) of the datasets `keys` of `DATASETS` (validated first; absent ones of an
        older schema skipped), one {field: value} per row, decoded with the table: each dataset is
        read once over the span, ragged data through its offsets. With spectra/eigenvalues, the
        weights and n_bands are read too and the eigenvalues come as (n_spin, n_k, n_bands)."""
        keys = list(keys)
        if "spectra/eigenvalues" in keys:
            keys += [k for k in ("spectra/weights", "spectra/n_bands") if k not in keys]
        self.require(*keys)
        n = len(self)
        if not 0 <= lo <= hi <= n:
            raise StoreError(f"{self.path}: rows [{lo}, {hi}) are not rows of the store [0, {n})")
        rows: list[dict[str, Any]] = [{} for _ in range(hi - lo)]
        for key in keys:
            layout = DATASETS[key]
            if key not in self.file:  # allowed to be absent (validated): an older schema
                continue
            dset = self.file[key]
            if layout.indexing == "row":
                values = list(dset[lo:hi])
            else:
                off = self.file[f"{key.split('/')[0]}/{layout.indexing}"][lo : hi + 1].astype(np.int64)
                flat = dset[off[0] : off[-1]]
                values = [flat[a - off[0] : b - off[0]] for a, b in pairwise(off)]
            for row, value in zip(rows, values, strict=True):
                row[layout.field] = _decode(layout, value)
        for row in rows:
            if "eigenvalues" in row:
                flat, n_k, n_bands = row["eigenvalues"], len(row["weights"]), int(row["n_bands"])
                n_spin = flat.size // (n_k * n_bands) if n_k * n_bands else 1
                row["eigenvalues"] = flat.reshape(n_spin, n_k, n_bands)
        return rows

    def read_rows(self, lo: int, hi: int, fingerprints: Sequence[str] | None = None) -> list[StructureResult]:
        """Rows [lo, hi) as StructureResults (``index`` = row), every dataset of `schema.DATASETS`
        read once over the span.

        Parameters
        ----------
        lo, hi : int
            First and past-the-last row.
        fingerprints : sequence of str, optional
            Fingerprints to include (default: every stored one; rows of failed structures are NaN).
        """
        names = self.fingerprint_names if fingerprints is None else list(fingerprints)
        for name in names:
            if name not in self.fingerprint_names:
                valid = ", ".join(self.fingerprint_names) or "none"
                raise StoreError(f"{self.path}: no fingerprint {name!r}; stored: {valid}")
        self.require(*(f"fingerprints/{name}" for name in names))
        rows = self._read(lo, hi, [key for key, layout in DATASETS.items() if layout.field])
        values = {name: self.file[f"fingerprints/{name}/values"][lo:hi] for name in names}
        return [
            StructureResult(
                index=lo + j,
                fingerprints={name: values[name][j] for name in names},
                **{k: v for k, v in row.items() if k in _RESULT_FIELDS},
            )
            for j, row in enumerate(rows)
        ]

    # spectra --------------------------------------------------------------
    def spectrum(self, i: int) -> dict[str, Any]:
        """Row `i` of /spectra: kpoints (n_k,3), weights (n_k,), eigenvalues (n_spin,n_k,n_bands) eV, ..."""
        self.require("spectra")
        keys = [key for key, layout in DATASETS.items() if key.startswith("spectra/") and layout.field]
        row = self._read(i, i + 1, keys)[0]
        return {k: row[k] for k in ("kpoints", "weights", "eigenvalues", *SPECTRA_SCALARS)}

    def band_structure(self, i: int):
        """Row `i` as a sporep_hpc.bands.BandStructure (StoreError for a failed row)."""
        from ..bands import BandStructure

        if self.status[i] != STATUS_DONE:
            raise StoreError(f"{self.path}: structure {self.ids[i]!r} has no spectrum (failed or pending)")
        sp = self.spectrum(i)
        return BandStructure(
            sp["eigenvalues"],
            sp["weights"],
            n_electrons=sp["n_electrons"],
            fermi_energy=sp["fermi_energy"],
            kpoints=sp["kpoints"],
        )

    # fingerprints ---------------------------------------------------------
    @property
    def fingerprint_names(self) -> list[str]:
        """Names under /fingerprints (sorted)."""
        return sorted(self.file["fingerprints"]) if "fingerprints" in self.file else []

    def fingerprints(self, name: str) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """(values (N, n_features), energies (n_features,) eV, attrs) of fingerprint `name`.

        Rows of failed structures are NaN.
        """
        if name not in self.fingerprint_names:
            valid = ", ".join(self.fingerprint_names) or "none"
            raise StoreError(f"{self.path}: no fingerprint {name!r}; stored: {valid}")
        self.require(f"fingerprints/{name}")
        grp = self.file[f"fingerprints/{name}"]
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in grp.attrs.items()}
        return grp["values"][()], grp["energies"][()], attrs


def check_kinds(sources: Sequence[str], rows: Sequence[int], what: str, mix_kinds: bool = False) -> None:
    """InputError (exit code 2) when the rows `rows` that `what` compares hold spectra of different kinds
    (operator spectra and DFT bands: `sporep_hpc.fingerprints.source_kind` of `sources`, a store's
    `Store.sources`), unless `mix_kinds` (``--mix-kinds``). Rows of unknown source (stores before schema
    1.3) are not counted: such a store is compared as before. Called by similarity, neighbours and
    classify before they compare."""
    if mix_kinds:
        return
    seen: dict[str, list[str]] = {}
    for i in rows:
        kind = source_kind(sources[int(i)])
        if kind:
            seen.setdefault(kind, []).append(sources[int(i)])
    if len(seen) > 1:
        parts = ", ".join(f"{len(v)} {k} (e.g. {v[0]})" for k, v in sorted(seen.items()))
        raise InputError(
            f"{what} would compare rows of different kinds: {parts}; compare one kind at a "
            "time (DESIGN.md §8.2), or pass --mix-kinds (mix_kinds=True) to compare them anyway"
        )


def open_store(path: Any, mode: str = "r", comm: Any = None) -> Store:
    """Open a store for reading (or "r+" to add post-processing groups). See `Store`."""
    return Store(path, mode, comm)


def to_dataframe(path_or_store: Any):
    """One row per structure: id, formula, n_atoms, status, error, n_kpoints, n_bands, /spectra scalars,
    properties (JSON text) and source (`Store.sources`).

    Returns
    -------
    pandas.DataFrame indexed by id.
    """
    import pandas as pd

    own = not isinstance(path_or_store, Store)
    store = open_store(path_or_store) if own else path_or_store
    try:
        table = store.structures()
        table.pop("cell")
        koff = store._get("spectra/kpoints_offset")
        table["n_kpoints"] = np.diff(koff)
        table["n_bands"] = store._get("spectra/n_bands")
        for name in SPECTRA_SCALARS:
            table[name] = store._get(f"spectra/{name}")
        # JSON text ("" when none; json.loads for a dict); "" throughout for stores before schema 1.2
        table["properties"] = store._all_properties_text()
        table["source"] = store.sources  # "" throughout for stores before schema 1.3
        return pd.DataFrame(table).set_index("id")
    finally:
        if own:
            store.close()


def read_band_structures(path: Any) -> dict[str, Any]:
    """{id: BandStructure} of every successfully computed structure of a store."""
    with open_store(path) as store:
        ids, status = store.ids, store.status
        return {id: store.band_structure(i) for i, id in enumerate(ids) if status[i] == STATUS_DONE}
