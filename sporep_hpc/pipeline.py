"""One input end to end, serial and rank-agnostic: k-points, spectrum (operator or imported bands),
band edges and fingerprints, with the wall time of each phase.

What a task computes depends only on its input record and the run parameters, never on the rank
that runs it. Failures of a structure are returned as failed rows with a one-line reason naming
it; they never propagate.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .bandfiles import is_qe_xml, read_bands
from .bands import BandStructure
from .basis import load_basis
from .config import RunParameters
from .errors import SporepError
from .fingerprints import DFT_PRESET, FingerprintSpec, fingerprint, get_spec, source_kind, spec_kinds
from .huckel import provenance as huckel_provenance
from .inputs.records import InputRecord
from .kpoints import irreducible_kpoints, kpoint_grid
from .operators import BOHR_ANGSTROM, spectrum_with_stats
from .store import open_store
from .store.schema import STATUS_DONE, StructureResult, failed_result, structure_fields
from .store.writer import FingerprintMeta
from .structures import Symmetrized, as_cell, symmetry_of

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- computing
@dataclass(frozen=True)
class TaskTimes:
    """Wall time of one task by phase, seconds."""
    integrals: float = 0.0
    eigen: float = 0.0
    dos: float = 0.0
    io: float = 0.0
    other: float = 0.0

    @property
    def total(self) -> float:
        return self.integrals + self.eigen + self.dos + self.io + self.other

    def __add__(self, other: TaskTimes) -> TaskTimes:
        return TaskTimes(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[float, ...]:
        return (self.integrals, self.eigen, self.dos, self.io, self.other)


PHASES = ("integrals", "eigen", "dos", "io", "other")


@dataclass(frozen=True)
class FingerprintSet:
    """The fingerprint specifications of a run, by group name (same order as the parameters), and the
    kinds of rows each is computed for (default `sporep_hpc.fingerprints.spec_kinds`)."""

    specs: dict = field(default_factory=dict)
    kinds: dict = field(default_factory=dict)

    @classmethod
    def from_parameters(cls, params: RunParameters) -> FingerprintSet:
        return cls({name: get_spec(name) for name in params.fingerprints})

    def kinds_of(self, name: str) -> tuple[str, ...]:
        """The kinds of rows (`sporep_hpc.fingerprints.KINDS`) group `name` is computed for."""
        return self.kinds.get(name) or spec_kinds(self.specs[name])

    def for_kind(self, kind: str) -> dict[str, FingerprintSpec]:
        """The fingerprints computed for rows of `kind` (none for an unknown kind): the other kind's rows
        are NaN in a group, as failed rows are."""
        return {name: spec for name, spec in self.specs.items() if kind in self.kinds_of(name)}

    def for_records(self, records: Sequence[InputRecord]) -> FingerprintSet:
        """These fingerprints, plus group ``dft_fermi`` (DFT_PRESET, for DFT bands only) when `records`
        hold band inputs and none of the run's fingerprints applies to DFT bands (``kinetic``, on absolute
        energies, does not): band files always get a fingerprint, kept apart from operator spectra."""
        if any(r.kind == "bands" for r in records) and not self.for_kind("dft"):
            name = f"dft_{DFT_PRESET}"
            return FingerprintSet({**self.specs, name: get_spec(DFT_PRESET)}, {**self.kinds, name: ("dft",)})
        return self

    def parameters_json(self, params: RunParameters) -> str:
        """The store's root ``parameters`` attribute: run parameters plus the full specifications (and, for
        the huckel operator, the h_l table with each value's published source: `huckel.provenance`)."""
        data = asdict(params)
        data["fingerprint_specs"] = {name: json.loads(s.to_json()) for name, s in self.specs.items()}
        if params.operator == "huckel":
            data["huckel_parameters"] = huckel_provenance()
        return json.dumps(data, sort_keys=True)

    def store_meta(self) -> dict[str, FingerprintMeta]:
        """Store metadata of each fingerprint: energies (eV) and the attributes of its group."""
        out = {}
        for name, spec in self.specs.items():
            windows = json.loads(spec.to_json())["windows"]
            attrs = {
                "spec": spec.to_json(),  # the full specification (FingerprintSpec.from_json)
                "reference": "+".join(w["reference"] for w in windows),  # e.g. "vbm+cbm"
                # [e_min (eV), e_max (eV), n_energies] per window
                "window": json.dumps([[w["e_min"], w["e_max"], w["n_energies"]] for w in windows]),
                "smearing": json.dumps([{k: w[k] for k in ("smearing", "width", "order")} for w in windows]),
                "kinds": "+".join(self.kinds_of(name)),  # rows it is computed for: "operator", "dft"
            }
            out[name] = FingerprintMeta(energies=spec.energies, attrs=attrs)
        return out


def _read_imported_bands(record: InputRecord, params: RunParameters) -> BandStructure:
    """The band structure of a "bands" record: a row of one of our stores (source ``path#id``), or a band
    file (`sporep_hpc.bandfiles.read_bands`: npz, vasprun.xml, QE XML with `params.allow_unconverged`,
    pymatgen BandStructure JSON)."""
    source = record.source
    if "#" in source and source.split("#")[0].lower().endswith((".h5", ".hdf5")):
        path, id = source.split("#", 1)
        with open_store(path) as store:
            return store.band_structure(store.index_of(id))
    return read_bands(source, allow_unconverged=params.allow_unconverged)


def record_source(record: InputRecord, params: RunParameters) -> str:
    """The `/structures/source` of a record's row (DESIGN.md §8.2): ``operator:<params.operator>`` for a
    structure; ``dft:<code>:<file name>`` for a band file (code ``npz``, ``vasp``, ``qe`` or ``pymatgen``,
    from the file as `sporep_hpc.bandfiles.read_bands` picks its reader); for a row of one of our stores
    (``path#id``), that row's own source, or ``dft:store:<file name>#<id>`` when the store does not record
    it (written before schema 1.3: imported eigenvalues count as DFT bands); "" for an unreadable input.
    Never raises (a store that cannot be opened makes the row fail elsewhere)."""
    if record.kind == "structure":
        return f"operator:{params.operator}"
    if record.kind != "bands":
        return ""
    path = record.source
    name = Path(path).name
    if "#" in path and path.split("#")[0].lower().endswith((".h5", ".hdf5")):
        store_path, id = path.split("#", 1)
        try:
            with open_store(store_path) as store:
                source = store.sources[store.index_of(id)]
        except SporepError:
            source = ""
        return source or f"dft:store:{Path(store_path).name}#{id}"
    suffix = Path(path).suffix.lower()
    code = {".npz": "npz", ".json": "pymatgen"}.get(suffix) or ("qe" if is_qe_xml(path) else "vasp")
    return f"dft:{code}:{name}"


def computed_structure(structure: Any, params: RunParameters) -> Symmetrized:
    """The cell a structure is computed in, how many of them the given cell holds, and its point group
    (`sporep_hpc.structures.symmetry_of`, one symmetry search).

    By default its standardized primitive cell, so that a primitive cell, a conventional cell and a
    supercell of one crystal give the same k-points, spectrum and fingerprints; with ``keep_cell`` the
    structure itself and 1.
    """
    return symmetry_of(structure, params.keep_cell)


def _edges(bands: Any) -> dict[str, float]:
    """n_electrons, fermi_energy, vbm, cbm, band_gap (NaN where undefined, e.g. without n_electrons)."""
    out = dict.fromkeys(("fermi_energy", "vbm", "cbm", "band_gap"), float("nan"))
    out["n_electrons"] = float("nan") if bands.n_electrons is None else float(bands.n_electrons)
    try:
        edges = bands.edges
    except SporepError:
        return out
    for key in ("fermi_energy", "vbm", "cbm", "band_gap"):
        out[key] = float(getattr(edges, key))
    return out


def _reason(id: str, exc: BaseException) -> str:
    """One-line reason, naming structure `id`, for an exception raised by one structure's work.

    A SporepError is the structure's own problem; any other exception (from pymatgen, spglib, numpy
    or our code) is logged with its traceback and reported as an "internal error" (a resumed run
    retries those, see sporep_hpc.parallel.journal.INTERNAL).
    """
    if isinstance(exc, SporepError):
        msg = str(exc)
        if id not in msg:
            msg = f"structure {id!r}: {msg}"
    else:  # isolate any other failure of one structure; logged with its traceback
        log.warning("structure %r failed:\n%s", id, traceback.format_exc())
        msg = f"structure {id!r}: internal error {type(exc).__name__}: {exc}"
    lines = msg.splitlines()
    return lines[0] if lines and lines[0].strip() else f"structure {id!r}: failed ({type(exc).__name__})"


def _failure(index: int, id: str, record: InputRecord, exc: BaseException, t0: float):
    """A failed row for an exception raised while computing `record` (one line, naming the structure)."""
    msg = _reason(record.id, exc)
    return failed_result(index, id, msg, record.structure), TaskTimes(other=time.perf_counter() - t0)


#: Marks a k-point chunk in a journal id. Structure ids never hold a control character
#: (`sporep_hpc.structures.clean_id`, `check_unique_ids`), so no structure id can equal a chunk id,
#: whatever its input file is called (``x#k0of12.cif`` beside a split ``x``).
CHUNK_MARK = "\x1f"


def chunk_id(id: str, chunk: int, n_chunks: int) -> str:
    """Journal id of k-point chunk `chunk` of `n_chunks` of structure `id`: ``id + CHUNK_MARK +
    "k<chunk>of<n_chunks>"``."""
    return f"{id}{CHUNK_MARK}k{chunk}of{n_chunks}"


_CHUNK_ID = re.compile(rf"^(.*){CHUNK_MARK}k\d+of\d+$", re.DOTALL)


def structure_id(journal_id: str) -> str:
    """The structure id of a journal id: `id` itself, or the id whose chunk `chunk_id` names."""
    m = _CHUNK_ID.match(journal_id)
    return m.group(1) if m else journal_id


#: Points of the radial grid of `_function_radius` (from 0 to a bound of the radius: steps of about 1e-4
#: of it, 0.002 Bohr for carbon at precision 1e-12).
_RADIAL_POINTS = 10001


@functools.lru_cache(maxsize=1024)
def _function_radius(basis_name: str, exp_to_discard: float, symbol: str, amplitude: float) -> float:
    """Largest r (Bohr) where a basis function of `symbol` reaches `amplitude`, to a grid step: the last
    point of a radial grid with max over its shells of |R_l(r)| √((2l+1)/4π) ≥ amplitude (R_l(r) =
    Σ c r^l e^{−α r²}, the normalised contraction; √((2l+1)/4π) bounds the real spherical harmonics);
    0 when none does. The grid ends where the bound Σ|c| r^l e^{−α_min r²} √((2l+1)/4π) falls below
    `amplitude` (found by fixed-point iteration from above, as the operators' screening radii)."""
    radius = 0.0
    for sh in load_basis(basis_name, exp_to_discard).element(symbol):
        angular = math.sqrt((2 * sh.l + 1) / (4.0 * math.pi))
        scale = float(np.sum(np.abs(sh.kernel_coefficients))) * angular / amplitude
        alpha, end = float(sh.exponents.min()), 1e3
        for _ in range(60):
            end = math.sqrt(max(math.log(scale) + sh.l * math.log(max(end, 1.0)), 0.0) / alpha)
        r = np.linspace(0.0, end + 1.0, _RADIAL_POINTS)
        tail = sh.kernel_coefficients[:, None] * np.exp(-np.outer(sh.exponents, r * r))
        value = np.abs(tail.sum(axis=0)) * r**sh.l * angular
        above = np.flatnonzero(value >= amplitude)
        if above.size:
            radius = max(radius, float(r[above[-1]]))
    return radius


def vacuum_gap(structure: Any, params: RunParameters) -> float | None:
    """Smallest empty slab (Å) across a cell face that makes that lattice direction "vacuum" (one k-point
    with ``vacuum_kpoints = "gamma"``; DESIGN.md §8.4); None with ``"full"``.

    Twice the radius of the structure's most extended basis function at the lattice-sum `precision`:
    the radius beyond which every function of `params.basis` (after `exp_to_discard`) on the
    structure's elements has amplitude below √precision (`_function_radius`). Two functions on either
    side of such a gap meet below √precision each, so their overlap and kinetic integrals are of the
    order of `precision` (Hartree) or smaller: the Bloch matrices change along that direction by that
    much, the spectrum by about as much, far below what a fingerprint resolves (tests/test_vacuum.py:
    ≤ 1e-6 relative; measured at most 1.1e-8, on the (4, 0) tube). Carbon at precision 1e-12: 9.6 Å
    (nanotubes with 10 Å of vacuum qualify); aluminium: 12.0 Å; at 1e-8: 7.6 and 9.6 Å. Elements the
    basis lacks are skipped here (the operators report them); None when it has none of them.
    """
    if params.vacuum_kpoints == "full":
        return None
    basis = load_basis(params.basis, params.exp_to_discard)
    symbols = sorted(set(as_cell(structure).symbols) & set(basis.shells))
    if not symbols:
        return None
    amplitude = math.sqrt(params.precision)
    radius = max(_function_radius(params.basis, params.exp_to_discard, e, amplitude) for e in symbols)
    return 2.0 * radius * BOHR_ANGSTROM if radius > 0 else None


def structure_grid(structure: Any, params: RunParameters) -> tuple[int, int, int]:
    """Monkhorst-Pack grid shape of a structure for these parameters (one point along its vacuum
    directions with ``vacuum_kpoints = "gamma"``: `vacuum_gap`, `sporep_hpc.kpoints.kpoint_grid`)."""
    return kpoint_grid(structure, params.kdensity, params.kgrid_rounding, vacuum_gap(structure, params))


@dataclass(frozen=True)
class Prepared:
    """A structure as it is computed, made once (by the planner) and carried to the rank computing it.

    Attributes
    ----------
    structure : CompactStructure
        The cell computed (`computed_structure`: by default the standardized primitive cell).
    n_cells : int
        How many such cells the input cell holds.
    grid : tuple of 3 int
        Its Monkhorst-Pack grid shape (`structure_grid`).
    kpoints : ndarray of shape (n_k, 3), float64, fractional
        Irreducible k-points of that grid, reduced by the point group of `computed_structure`.
    weights : ndarray of shape (n_k,), float64, sum 1
    seconds : float, s
        Time this took (the symmetry search, the grid and its reduction).
    """

    structure: Any
    n_cells: int
    grid: tuple[int, int, int]
    kpoints: np.ndarray
    weights: np.ndarray
    seconds: float = 0.0


def prepare(structure: Any, params: RunParameters) -> Prepared:
    """The computed cell and its irreducible k-points: the symmetry work (spglib) of one structure."""
    t0 = time.perf_counter()
    cell = computed_structure(structure, params)
    arrays = as_cell(cell.structure)
    grid = structure_grid(arrays, params)
    kpoints, weights = irreducible_kpoints(arrays, grid=grid, rotations=cell.rotations)
    return Prepared(cell.structure, cell.n_cells, grid, kpoints, weights, time.perf_counter() - t0)


def compute_part(
    index: int, record: InputRecord, params: RunParameters, chunk: int = 0, n_chunks: int = 1,
    n_threads: int = 1, prepared: Prepared | None = None,
) -> tuple[StructureResult, TaskTimes]:
    """Eigenvalues of k-point chunk `chunk` of `n_chunks` (contiguous, np.array_split order) of a structure.

    No fingerprints: see `finish`. The result's id is `chunk_id(...)` when n_chunks > 1; its
    weights are the chunk's share of the full (normalised) weights. `prepared`: the planner's
    `prepare` of this record (made here when not given). Failures are returned, never raised.
    """
    t0 = time.perf_counter()
    id = record.id if n_chunks == 1 else chunk_id(record.id, chunk, n_chunks)
    try:
        prepared = prepared or prepare(record.structure, params)
        structure = prepared.structure
        kpts, weights = prepared.kpoints, prepared.weights
        part = np.array_split(np.arange(len(weights)), n_chunks)[chunk]
        bands, stats = spectrum_with_stats(
            structure,
            operator=params.operator,
            basis=params.basis,
            kpoints=kpts[part],
            weights=weights[part],
            exp_to_discard=params.exp_to_discard,
            precision=params.precision,
            lindep=params.lindep,
            n_threads=n_threads,
            huckel_k=params.huckel_k,
            huckel_weighted=params.huckel_weighted,
        )
    except Exception as exc:  # recorded as this structure's failure (see _failure)
        return _failure(index, id, record, exc, t0)
    result = StructureResult(
        index=index,
        id=id,
        status=STATUS_DONE,
        kpoints=np.asarray(kpts[part], dtype=np.float64),
        weights=np.asarray(weights[part], dtype=np.float64),
        eigenvalues=np.ascontiguousarray(bands.eigenvalues, dtype=np.float64),
        n_electrons=float("nan") if bands.n_electrons is None else float(bands.n_electrons),
        source=record_source(record, params),
        **structure_fields(structure),
    )
    total = time.perf_counter() - t0
    rest = max(0.0, total - stats.t_integrals - stats.t_eigen)
    times = TaskTimes(stats.t_integrals, stats.t_eigen, 0.0, 0.0, rest)
    return result, times


def finish(
    index: int, record: InputRecord, parts: Sequence[StructureResult], fingerprints: FingerprintSet,
    n_threads: int = 1,
) -> tuple[StructureResult, TaskTimes]:
    """The full row of a structure from its k-point parts (in chunk order): band edges and fingerprints.

    A failed part makes the structure fail with that part's reason.
    """
    t0 = time.perf_counter()
    bad = next((p for p in parts if p.status != STATUS_DONE), None)
    if bad is not None:
        return failed_result(index, record.id, bad.error, record.structure), TaskTimes()
    try:
        n_e = parts[0].n_electrons
        bands = BandStructure(
            np.concatenate([p.eigenvalues for p in parts], axis=1),
            np.concatenate([p.weights for p in parts]),
            n_electrons=None if np.isnan(n_e) else n_e,
            kpoints=np.concatenate([p.kpoints for p in parts]),
        )
        first = parts[0]  # the cell computed (`computed_structure`), not the input's; parts read back
        # from a journal have no source (the driver sets every row's source at assembly)
        row = {"formula": first.formula, "cell": first.cell, "numbers": first.numbers,
               "positions": first.positions, "source": first.source}
        return _finish_bands(index, record, bands, fingerprints, n_threads, t0, row, "operator")
    except Exception as exc:  # recorded as this structure's failure (see _failure)
        return _failure(index, record.id, record, exc, t0)


def _finish_bands(index, record, bands, fingerprints, n_threads, t0, row: dict, kind: str, n_cells: int = 1
                  ) -> tuple[StructureResult, TaskTimes]:
    """The done row of `bands`: band edges, the fingerprints of `kind` (`FingerprintSet.for_kind`)
    divided by `n_cells`, and the /structures fields and source in `row`."""
    vectors = {
        name: np.asarray(fingerprint(bands, spec, n_threads=n_threads), dtype=np.float64) / n_cells
        for name, spec in fingerprints.for_kind(kind).items()
    }
    kpts = bands.kpoints
    if kpts is None:
        kpts = np.full((bands.eigenvalues.shape[1], 3), np.nan)  # imported bands without k-points
    result = StructureResult(
        index=index,
        id=record.id,
        status=STATUS_DONE,
        kpoints=np.asarray(kpts, dtype=np.float64).reshape(-1, 3),
        weights=np.asarray(bands.weights, dtype=np.float64),
        eigenvalues=np.ascontiguousarray(bands.eigenvalues, dtype=np.float64),
        fingerprints=vectors,
        **_edges(bands),
        **row,
    )
    return result, TaskTimes(dos=time.perf_counter() - t0)


def compute_record(
    index: int, record: InputRecord, params: RunParameters, fingerprints: FingerprintSet, n_threads: int = 1,
    prepared: Prepared | None = None,
) -> tuple[StructureResult, TaskTimes]:
    """Spectrum and fingerprints of one input, in one piece (rank-independent); `prepared`: see
    `compute_part`.

    Any failure of this structure (bad input, basis, numerical problem) is returned as
    a failed StructureResult with a one-line reason naming it; it never propagates.
    """
    t0 = time.perf_counter()
    if record.kind == "failed":
        return failed_result(index, record.id, record.error, record.structure), TaskTimes()
    if record.kind == "bands":
        try:
            bands = _read_imported_bands(record, params)
            # per primitive cell like computed spectra: the calculation's cell holds n_cells of them
            n_cells = 1 if record.structure is None else computed_structure(record.structure, params)[1]
            row = {**structure_fields(record.structure), "source": record_source(record, params)}
            kind = source_kind(row["source"])
            result, times = _finish_bands(index, record, bands, fingerprints, n_threads, t0, row, kind,
                                          n_cells)
        except Exception as exc:  # recorded as this structure's failure (see _failure)
            return _failure(index, record.id, record, exc, t0)
        return result, TaskTimes(other=times.total)
    part, t_part = compute_part(index, record, params, 0, 1, n_threads, prepared)
    result, t_finish = finish(index, record, [part], fingerprints, n_threads)
    return result, t_part + t_finish
