"""The HDF5 store layout (DESIGN.md §5): version, dataset names, fixed-width strings, one result row.

The schema lives here and nowhere else. All energies are eV, lengths Å.

```
/                 attrs: schema_version, sporep_hpc_version, created, parameters (JSON), n_ranks
/structures/      attrs: inputs_digest (SHA-256 hex of the inputs of these rows; written by `run`, since 1.1)
                  id S64, formula S64, n_atoms, cell (N,3,3) Å, status (0 pending, 1 done, -1 failed),
                  error S256, atoms_offset (N+1), numbers (M), positions (M,3) Å,
                  properties_offset (N+1), properties (P) uint8 (since 1.2; see below),
                  source S128 (since 1.3: ``operator:<name>`` or ``dft:<code>:<file name>``, DESIGN.md §8.2;
                  "" for inputs that could not be read; absent in older stores: source unknown)
/spectra/         kpoints_offset (N+1), kpoints (K,3) fractional, weights (K), bands_offset (N+1),
                  n_bands (N), eigenvalues (flat: n_spin*n_k*n_bands per structure, C order), n_electrons,
                  fermi_energy, vbm, cbm, band_gap (N) eV
/fingerprints/<name>/  values (N, n_features), energies (n_features) eV (relative to each window's
                  reference); attrs reference ("vbm+cbm"), window (JSON [[e_min, e_max, n], ...] eV),
                  smearing (JSON [{smearing, width, order}, ...]), spec (FingerprintSpec JSON)
```
Per-structure properties (built-in sets' labels such as the nanotubes' ``electronic``, extended XYZ
``info``, pymatgen JSON ``properties``) are canonical JSON text (sorted keys) in UTF-8, stored ragged
like the eigenvalues: the bytes of row i are ``properties[properties_offset[i]:properties_offset[i+1]]``
(no length limit, nothing truncated; empty means no properties). Fixed-width strings would cut
long property sets, and variable-length strings cannot be written collectively with mpio.

A rerun of `sporep-hpc run` compares parameters and inputs_digest with an existing store: equal
means nothing to do; a store without inputs_digest (older, or merged) is never taken as up to date.
Readers accept any 1.x store; datasets added in a minor version may be absent.

n_spin of structure i is ``(bands_offset[i+1]-bands_offset[i]) / (n_k * n_bands[i])``.

`DATASETS` and `GROUP_LAYOUT` are this layout as a table (name, dtype, units, per-row or ragged and by
which offsets): the writer creates and writes the datasets by looping over it, `Store.read_rows` decodes
rows with it, and readers check what they read against it (`sporep_hpc.store.validate`), refusing a
damaged store with StoreError naming the dataset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from ..structures import CompactStructure, as_structure

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1.3"

ID_WIDTH = 64
FORMULA_WIDTH = 64
ERROR_WIDTH = 256
SOURCE_WIDTH = 128
TRUNCATION_MARK = "...[truncated]"

STATUS_PENDING = 0
STATUS_DONE = 1
STATUS_FAILED = -1

#: /spectra scalar columns (one float64 per structure, eV except n_electrons).
SPECTRA_SCALARS = ("n_electrons", "fermi_energy", "vbm", "cbm", "band_gap")

@dataclass(frozen=True)
class DatasetLayout:
    """One dataset of the store: what the writer creates, the reader decodes and validation checks.

    Attributes
    ----------
    shape : tuple of int or str
        One entry per axis: an int (fixed length), ``"n"`` (number of structures: rows of
        /structures/id; a per-row dataset), ``"n+1"`` (row offsets), ``"features"`` (length of the
        ``energies`` dataset of the same group), ``"m"`` or ``"m-1"`` (length of the ``index`` dataset
        of the same group), ``"*"`` (any length), or the name of an offsets dataset of the same group
        whose last value is the length (ragged data: the rows of structure i are
        ``offsets[i]:offsets[i+1]``).
    kinds : str
        Accepted numpy dtype kinds: ``"S"`` fixed-width bytes, ``"i"`` signed and ``"u"`` unsigned
        integers, ``"f"`` floats.
    dtype : str
        The dtype this version writes (``"S64"``: fixed-width bytes of that width).
    units : str
        Attribute ``units`` ("" for none).
    field : str
        The `StructureResult` attribute a /structures or /spectra dataset holds ("" for offsets,
        which follow from the ragged datasets that name them).
    offsets : bool
        Row offsets: start at 0 and never decrease.
    since : str
        Schema version that added the dataset (older stores may lack it; newer ones must have it).
    optional : bool
        May be absent in any version.
    attrs : tuple of (str, str)
        Further attributes the writer sets.
    """

    shape: tuple
    kinds: str
    dtype: str = ""
    units: str = ""
    field: str = ""
    offsets: bool = False
    since: str = "1.0"
    optional: bool = False
    attrs: tuple = ()

    @property
    def indexing(self) -> str:
        """``"row"`` (one entry per structure), ``"offsets"`` (n+1) or the offsets dataset of ragged data."""
        first = self.shape[0]
        return {"n": "row", "n+1": "offsets"}.get(first, first)

    @property
    def width(self) -> int:
        """Width in bytes of a fixed-width string dataset (0 for the others)."""
        return int(self.dtype[1:]) if self.dtype.startswith("S") else 0


def _row(kinds: str, dtype: str, field: str, tail: tuple = (), units: str = "", **kw) -> DatasetLayout:
    return DatasetLayout(("n", *tail), kinds, dtype, units, field, **kw)


def _offsets(since: str = "1.0") -> DatasetLayout:
    return DatasetLayout(("n+1",), "iu", "int64", offsets=True, since=since)


#: Every dataset of /structures and /spectra, in the order the writer creates and writes them.
DATASETS = {
    "structures/id": _row("S", f"S{ID_WIDTH}", "id"),
    "structures/formula": _row("S", f"S{FORMULA_WIDTH}", "formula"),
    "structures/n_atoms": _row("iu", "int64", "n_atoms"),
    "structures/cell": _row("f", "float64", "cell", (3, 3), "angstrom"),
    "structures/status": _row("i", "int8", "status"),
    "structures/error": _row("S", f"S{ERROR_WIDTH}", "error"),
    "structures/atoms_offset": _offsets(),
    "structures/numbers": DatasetLayout(("atoms_offset",), "iu", "int64", field="numbers"),
    "structures/positions": DatasetLayout(("atoms_offset", 3), "f", "float64", "angstrom", "positions"),
    "structures/properties_offset": _offsets(since="1.2"),
    "structures/properties": DatasetLayout(
        ("properties_offset",), "u", "uint8", field="properties", since="1.2",
        attrs=(("encoding", "UTF-8 JSON text per structure (properties_offset)"),),
    ),
    "structures/source": _row("S", f"S{SOURCE_WIDTH}", "source", since="1.3"),
    "spectra/kpoints_offset": _offsets(),
    "spectra/kpoints": DatasetLayout(
        ("kpoints_offset", 3), "f", "float64", "fractional (reciprocal lattice)", "kpoints"
    ),
    "spectra/weights": DatasetLayout(
        ("kpoints_offset",), "f", "float64", "1 (sum 1 per structure)", "weights"
    ),
    "spectra/bands_offset": _offsets(),
    "spectra/n_bands": _row("iu", "int64", "n_bands"),
    "spectra/eigenvalues": DatasetLayout(("bands_offset",), "f", "float64", "eV", "eigenvalues"),
    **{
        f"spectra/{name}": _row("f", "float64", name, units="electrons" if name == "n_electrons" else "eV")
        for name in SPECTRA_SCALARS
    },
}

#: Datasets of each named group under /fingerprints, /similarity, /models (store/groups.py), /neighbours
#: (analysis/neighbours.py). Similarity distances are in eV for the Wasserstein metric, else 1.
GROUP_LAYOUT = {
    "fingerprints": {
        "energies": DatasetLayout(("features",), "f", "float64", "eV"),
        "values": DatasetLayout(("n", "features"), "f", "float64", "states/eV/cell"),
    },
    "similarity": {
        "index": DatasetLayout(("m",), "iu", "int64"),
        "distance": DatasetLayout(("m", "m"), "f", "float64"),
        "linkage": DatasetLayout(("m-1", 4), "f", "float64", optional=True),
    },
    "models": {
        "energies": DatasetLayout(("features",), "f", "float64", "eV"),
        "model": DatasetLayout(("*",), "u", "uint8"),
    },
    "neighbours": {  # k nearest per row
        "index": DatasetLayout(("n", "*"), "i", "int64"),
        "distance": DatasetLayout(("n", "*"), "f", "float64"),
    },
}

#: Groups every store has (/similarity and /models appear only after post-processing).
REQUIRED_GROUPS = ("structures", "spectra", "fingerprints")

#: Root attribute of a merged store: JSON list of {file, rows, created, n_ranks} of its inputs.
MERGED_FROM = "merged_from"

#: Root attributes a reader relies on (JSON object for ``parameters``).
ROOT_ATTRS = ("schema_version", "parameters")


def timestamp() -> str:
    """The current UTC time as the store writes it (``created`` attributes): ``2026-01-31T12:00:00Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_fixed(text: str, width: int) -> bytes:
    """UTF-8 bytes of `text`, at most `width` long; longer text is cut and ends with TRUNCATION_MARK."""
    raw = text.encode("utf-8")
    if len(raw) <= width:
        return raw
    mark = TRUNCATION_MARK.encode()
    return raw[: width - len(mark)].decode("utf-8", "ignore").encode("utf-8") + mark


def from_fixed(raw: bytes | np.bytes_) -> str:
    """Inverse of `to_fixed` (trailing NULs removed)."""
    return bytes(raw).rstrip(b"\0").decode("utf-8", "replace")


@dataclass(frozen=True)
class StructureResult:
    """Everything the store holds for one structure (one row).

    Attributes
    ----------
    index : int
        Global structure index (row of the store).
    id : str
        Stable structure id.
    status : int
        STATUS_DONE or STATUS_FAILED.
    error : str
        One-line reason when failed, else "".
    formula : str
        Reduced formula ("" when unknown, e.g. imported bands without structure).
    cell : ndarray of shape (3, 3), float64, Å
        Lattice vectors as rows (zeros when unknown).
    numbers : ndarray of shape (n_atoms,), int64
        Atomic numbers.
    positions : ndarray of shape (n_atoms, 3), float64, Å
        Cartesian positions.
    kpoints : ndarray of shape (n_k, 3), float64, fractional
    weights : ndarray of shape (n_k,), float64, sum 1
    eigenvalues : ndarray of shape (n_spin, n_k, n_bands), float64, eV
    n_electrons, fermi_energy, vbm, cbm, band_gap : float
        Electrons; eV (NaN when failed).
    fingerprints : dict of str to ndarray of shape (n_features,), float64
        One vector per fingerprint name (empty when failed).
    properties : str
        Per-structure properties as canonical JSON text ("" when none).
    source : str
        Where the spectrum comes from: ``operator:<name>`` or ``dft:<code>:<file name>`` (DESIGN.md §8.2;
        its kind: `sporep_hpc.fingerprints.source_kind`); "" when unknown.
    """

    index: int
    id: str
    status: int
    error: str = ""
    formula: str = ""
    cell: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    numbers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    kpoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    eigenvalues: np.ndarray = field(default_factory=lambda: np.zeros((1, 0, 0)))
    n_electrons: float = float("nan")
    fermi_energy: float = float("nan")
    vbm: float = float("nan")
    cbm: float = float("nan")
    band_gap: float = float("nan")
    fingerprints: dict = field(default_factory=dict)
    properties: str = ""
    source: str = ""

    @property
    def n_atoms(self) -> int:
        return len(self.numbers)

    @property
    def n_kpoints(self) -> int:
        return len(self.weights)

    @property
    def n_bands(self) -> int:
        return int(self.eigenvalues.shape[2])


def structure_fields(structure) -> dict:
    """The /structures fields of a pymatgen Structure or CompactStructure (formula, cell, numbers,
    positions), for any structure a run may meet: a disordered one (partial occupancy) has no single
    atomic number per site, nor has a dummy species, so these keep their formula and cell and get no
    atoms; a cell or position pymatgen cannot give is left at its default (zeros, no atoms). Never
    raises: these fields only describe a row, and a failed row must be written whatever its structure
    is."""
    if structure is None:
        return {}
    fields_: dict = {}
    try:
        with np.errstate(all="ignore"):  # NaN or inf lattices: pymatgen's arithmetic warns
            if isinstance(structure, CompactStructure) and all(structure.symbols):  # ordered, no dummies
                return {"formula": structure.formula, "cell": np.array(structure.lattice, dtype=np.float64),
                        "numbers": structure.numbers.astype(np.int64), "positions": structure.cart_coords}
            structure = as_structure(structure)
            fields_["formula"] = str(structure.composition.reduced_formula)
            fields_["cell"] = np.ascontiguousarray(structure.lattice.matrix, dtype=np.float64).reshape(3, 3)
            numbers = np.asarray(structure.atomic_numbers if structure.is_ordered else [], dtype=np.int64)
            if numbers.size and np.all((numbers >= 1) & (numbers <= 118)):  # not for dummy species
                positions = np.ascontiguousarray(structure.cart_coords, dtype=np.float64).reshape(-1, 3)
                fields_["numbers"], fields_["positions"] = numbers, positions
    except Exception as exc:  # pymatgen raises many types on a broken structure
        log.debug("structure fields incomplete: %s: %s", type(exc).__name__, exc)
    return fields_


def failed_result(index: int, id: str, error: str, structure=None) -> StructureResult:
    """A failed row (structure fields filled as far as the structure allows, see `structure_fields`).

    `error` is kept to its first line, and characters UTF-8 cannot hold (lone surrogates from file
    names that are not UTF-8) are escaped, so the row can always be written."""
    lines = str(error).splitlines()
    error = (lines[0] if lines else "").encode("utf-8", "backslashreplace").decode("utf-8")
    fields_ = structure_fields(structure)
    return StructureResult(index=index, id=id, status=STATUS_FAILED, error=error, **fields_)
