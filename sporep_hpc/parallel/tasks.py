"""The task model: resolving inputs, planning (validation, cost and memory model) and computing one
structure.

Everything here is serial and rank-agnostic (what a task computes depends only on its input record
and the run parameters, never on the rank that runs it), except `memory_budget`, the one collective
that agrees on the memory budget all ranks plan with.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import socket
import time
import traceback
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunParameters
from ..errors import InputError, ParameterError, SporepError
from ..store.schema import STATUS_DONE, StructureResult, failed_result, structure_fields
from ..structures import (
    CompactStructure,
    InputRecord,
    as_structure,
    check_structure,
    check_unique_ids,
    list_input_files,
    properties_json,
    records_from_file,
)

log = logging.getLogger(__name__)

EXAMPLES_PREFIX = "examples:"
#: Radius (Å) of the sphere of lattice translations assumed by the integral term of the cost model.
COST_LATTICE_RADIUS = 12.0
#: Weight of the integral term (n_ao² per translation) relative to the eigen term (n_ao³ per k-point), and
#: the fixed cost of any structure (k-point reduction, DOS, journal) in the same units. Least-squares fit
#: of the measured task times of 118 AFLOW/CNT/BaTiO3 structures (1 thread): 3.1e-9 s per n_ao³·n_k,
#: 4.9e-7 s per n_ao²·n_T, 0.02 s per structure; correlation with the measured times 0.86.
COST_INTEGRAL_WEIGHT = 150.0
COST_CONSTANT = 6.0e6
#: Safety factor on the screening radius of the memory estimate: the prefactors of the primitive-pair
#: bound (operators module docstring) add 5-10 % to √(2 ln(1/precision) / α_min) (measured 13.0 vs 12.4 Å
#: for Ba at precision 1e-12, 19.8 vs 19.7 Å at 1e-30).
SCREENING_MARGIN = 1.15
#: In the reason of a structure refused by the memory budget (an execution option, not the structure's
#: own fault: a rerun with a larger --max-memory may compute it).
OVER_BUDGET = "more than max_memory="
#: Bytes per point of the full k-point grid while spglib reduces it (mapping, addresses, their copies).
GRID_POINT_BYTES = 64
#: Fixed reduction chunks of the DOS kernel (sporep_hpc.bands): each holds a copy of a window's grid.
DOS_PARTIALS = 64


# ---------------------------------------------------------------------------- inputs
def input_units(inputs: Iterable[str]) -> list[tuple[str, str, str]]:
    """The inputs as independent units (kind, source, base id), in order; cheap (names only).

    kind is "examples" (a built-in set spec) or "file" (one file of the inputs, directories expanded).
    """
    units: list[tuple[str, str, str]] = []
    for item in inputs:
        item = str(item)
        if item.startswith(EXAMPLES_PREFIX):
            units.append(("examples", item, ""))
        else:
            units.extend(("file", str(path), base) for path, base in list_input_files([item]))
    return units


def expand_unit(unit: tuple[str, str, str]) -> list[InputRecord]:
    """The input records of one unit (reads the file or builds the set)."""
    kind, source, base = unit
    if kind == "examples":
        from ..examples import load_set

        return [
            InputRecord(id, source, "structure", structure, "", properties)
            for id, structure, properties in load_set(source[len(EXAMPLES_PREFIX) :])
        ]
    records = []
    for record in records_from_file(source, base):
        if record.kind == "bands" and Path(record.source).suffix.lower() in (".h5", ".hdf5"):
            records.extend(_store_records(record))
        else:
            records.append(record)
    return records


def resolve_inputs(inputs: Iterable[str], max_id_bytes: int = 64) -> list[InputRecord]:
    """Input records for files, directories, ``examples:<spec>`` sets and our own stores (``*.h5``).

    Ids are checked for uniqueness (InputError before anything runs). Serial; the driver
    distributes `expand_unit` over the ranks instead.
    """
    records = [r for unit in input_units(inputs) for r in expand_unit(unit)]
    check_unique_ids(records, max_id_bytes)
    return records


def _store_records(record: InputRecord) -> list[InputRecord]:
    """One "bands" record per computed structure of one of our stores (source ``path#id``)."""
    from ..store import STATUS_DONE as DONE
    from ..store import open_store

    try:
        with open_store(record.source) as store:
            out = []
            properties = store.all_properties()
            for i, id in enumerate(store.ids):
                if store.status[i] == DONE:
                    structure = store.structure(i) if store.atoms(i)[1].size else None
                    source = f"{record.source}#{id}"
                    out.append(InputRecord(id, source, "bands", structure, properties=properties[i] or None))
            return out
    except SporepError as exc:
        return [InputRecord(record.id, record.source, "failed", error=str(exc))]


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:  # an unreadable band file: its record fails later; the name stands in
        return f"unreadable:{path}:{exc.strerror}"
    return h.hexdigest()


def _record_chunks(r: InputRecord, file_hashes: dict[str, str]):
    """(bytes, in_run, in_record) pieces hashed for one record, in order: the run's digest takes the
    properties, the record's does not (see `input_digests`); the rest enters both."""
    yield json.dumps([r.id, r.kind, properties_json(r.properties)]).encode(), True, False
    yield json.dumps([r.id, r.kind]).encode(), False, True
    s = r.structure
    if isinstance(s, CompactStructure):
        yield json.dumps([list(s.species), list(s.pbc)]).encode(), True, True
        yield np.ascontiguousarray(s.lattice, dtype=np.float64).tobytes(), True, True
        yield np.ascontiguousarray(s.frac_coords, dtype=np.float64).tobytes(), True, True
    elif s is not None:  # disordered or broken pymatgen structure (it fails validation, but is an input)
        try:
            with np.errstate(all="ignore"):  # NaN or inf lattices: pymatgen's arithmetic warns
                text = json.dumps(s.as_dict(), sort_keys=True, default=str)
        except Exception:  # pymatgen cannot serialise it: its formula and sizes stand in
            text = f"{type(s).__name__}:{len(s)}"
        yield text.encode("utf-8", "backslashreplace"), True, True
    if r.kind == "bands":
        path = r.source.split("#")[0] if ".h5#" in r.source or ".hdf5#" in r.source else r.source
        if path not in file_hashes:
            file_hashes[path] = _file_sha256(path)
        yield file_hashes[path].encode(), True, True
    yield b"\0", True, True


def input_digests(records: Sequence[InputRecord]) -> tuple[str, list[str]]:
    """The run's inputs digest (`inputs_digest`) and one digest per record, in one pass.

    A record's digest (SHA-256 hex) covers its id, kind, structure (bit for bit) and band-file
    content: everything its journal entry is computed from. Its properties are left out: they are
    not journaled (the store takes them from the current records), so a changed property does not
    make an entry stale. Band files are hashed once. Serial (rank 0 computes it for everyone).
    """
    whole = hashlib.sha256()
    file_hashes: dict[str, str] = {}
    each = []
    for r in records:
        one = hashlib.sha256()
        for chunk, in_run, in_record in _record_chunks(r, file_hashes):
            if in_run:
                whole.update(chunk)
            if in_record:
                one.update(chunk)
        each.append(one.hexdigest())
    return whole.hexdigest(), each


def inputs_digest(records: Sequence[InputRecord]) -> str:
    """SHA-256 (hex) of what a run computes from: per record, in order, its id, kind, properties and
    structure (lattice, species, fractional coordinates, bit for bit), and for imported band files
    the file's content. File names and locations do not enter: a moved input directory is the same
    input. Serial (rank 0 computes it for everyone).
    """
    return input_digests(records)[0]


# ---------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class PlanEntry:
    """Planning result for one input record (cheap; computed before any task runs).

    Attributes
    ----------
    index : int
        Global structure index (row of the store).
    id : str
        Structure id.
    kind : str
        "structure", "bands" or "failed".
    n_atoms, n_ao, n_k : int
        Atoms, basis functions, irreducible k-points (0 when unknown).
    cost : float
        Cost-model estimate (arbitrary units, comparable across entries).
    error : str
        Reason when `kind` is "failed".
    memory : int
        Estimated peak memory of computing it, bytes (`memory_estimate`; 0 when unknown).
    """

    index: int
    id: str
    kind: str
    n_atoms: int = 0
    n_ao: int = 0
    n_k: int = 0
    cost: float = 0.0
    error: str = ""
    memory: int = 0


def cost_model(n_ao: int, n_k: int, volume: float) -> float:
    """Estimated cost of one structure: n_ao³·n_k (eigen) + w·n_ao²·n_T (integrals) + c.

    n_T, the number of lattice translations in a sphere of COST_LATTICE_RADIUS Å, is
    (4/3)πR³ / volume (at least 1); w = COST_INTEGRAL_WEIGHT, c = COST_CONSTANT. Units are
    arbitrary (about 3 ns on this machine's core); only ratios matter.
    """
    n_t = _translations(volume, COST_LATTICE_RADIUS)
    return float(n_ao) ** 3 * n_k + COST_INTEGRAL_WEIGHT * float(n_ao) ** 2 * n_t + COST_CONSTANT


def _translations(volume: float, radius: float) -> float:
    """Lattice translations in a sphere of `radius` Å around the origin (at least 1)."""
    return max(1.0, 4.0 / 3.0 * math.pi * radius**3 / max(volume, 1e-12))


def screening_radius(alpha_min: float, precision: float) -> float:
    """Upper bound (Å) of the lattice-sum radius: where the overlap of the two most diffuse primitives,
    exponent `alpha_min` (Bohr⁻²) each, decays below `precision`, times SCREENING_MARGIN."""
    from ..operators import BOHR_ANGSTROM

    bohr = math.sqrt(2.0 * math.log(1.0 / precision) / max(alpha_min, 1e-12))
    return SCREENING_MARGIN * bohr * BOHR_ANGSTROM


def stored_translations(lattice: np.ndarray, radius: float) -> float:
    """Upper estimate of the lattice translations whose real-space blocks the operators allocate.

    The operators keep every translation T with some atom pair within `radius` (Å) of each other, i.e.
    T in the difference set of the cell's atoms (inside the cell doubled, edges 2 a_i) widened by a
    ball of `radius`. Its volume follows Steiner's formula for a box with those edges,
    8V + 8 Σ|a_i × a_j| r + 2π Σ|a_i| r² + (4/3)π r³; divided by the cell volume V it counts the
    translations, half of which (one of each ±T pair, plus T = 0) are stored.
    """
    a = np.asarray(lattice, dtype=np.float64)
    volume = abs(float(np.linalg.det(a)))
    faces = sum(float(np.linalg.norm(np.cross(a[i], a[j]))) for i, j in ((0, 1), (0, 2), (1, 2)))
    edges = float(np.sum(np.linalg.norm(a, axis=1)))
    r = radius
    swept = 8.0 * volume + 8.0 * faces * r + 2.0 * math.pi * edges * r**2 + 4.0 / 3.0 * math.pi * r**3
    return swept / max(volume, 1e-12) / 2.0 + 1.0


def memory_estimate(
    n_ao: int, n_k: int, n_grid: int, n_translations: float, dos_bytes: int, n_op: int = 2
) -> int:
    """Peak memory of one structure's arrays, bytes (what `compute_record` allocates beyond the process).

    The sum of: the Bloch matrices, n_op × 16 × n_ao² bytes per k-point (Re and Im of S(k), and T(k)
    or H(k)), for the k-points the operators handle at once (their chunk of operators._PHASED_BYTES,
    at least one k-point), twice (their real form or the eigensolver's copies); the real-space
    blocks, n_op × 8 × n_ao² per stored translation (`stored_translations`), twice (the screened
    copy); LAPACK workspaces, 48 n_ao²; the eigenvalues, 4 copies of 8 n_k n_ao; the full k-grid
    during the spglib reduction, GRID_POINT_BYTES per point; and `dos_bytes`, the fingerprints'
    energy grids (`fingerprint_bytes`). Checked against tracemalloc's peak of `compute_record`
    (tests/test_sizes.py).

    Parameters
    ----------
    n_ao, n_k, n_grid : int
        Basis functions, irreducible k-points, points of the full Monkhorst-Pack grid.
    n_translations : float
        Stored lattice translations (`stored_translations`).
    dos_bytes : int
    n_op : int
        Operator matrices per k-point: 1 for the overlap spectrum, 2 (S and T or H) otherwise
        (`n_operators`).
    """
    from ..operators import _PHASED_BYTES

    square = float(n_ao) ** 2
    per_k = n_op * 16.0 * square
    chunk = max(1, min(n_k, int(_PHASED_BYTES // per_k)))
    matrices = 2.0 * chunk * per_k
    blocks = 2.0 * n_op * 8.0 * square * n_translations
    rest = 48.0 * square + 4 * 8.0 * n_k * n_ao + GRID_POINT_BYTES * float(n_grid) + dos_bytes
    return int(min(matrices + blocks + rest, 2.0**62))


def n_operators(params: RunParameters) -> int:
    """Operator matrices the spectrum of `params.operator` needs per k-point (S alone for "overlap";
    S and T, or S and H, otherwise)."""
    return 1 if params.operator == "overlap" else 2


def fingerprint_bytes(fingerprints: FingerprintSet) -> int:
    """Bytes of the energy grids of one structure's fingerprints: the largest window's DOS with its
    DOS_PARTIALS partial sums (windows are computed one after another), plus every vector."""
    windows = [w for spec in fingerprints.specs.values() for w in spec.windows]
    largest = max((w.n_energies for w in windows), default=0)
    return 8 * ((DOS_PARTIALS + 3) * largest + sum(w.n_energies for w in windows))


def check_memory_budget(params: RunParameters, fingerprints: FingerprintSet, max_memory: int | None) -> None:
    """Refuse, before any work, parameters that exceed `max_memory` (bytes per rank) for every structure.

    The cheapest structure is a 1-atom cell of MAX_ATOMIC_VOLUME with one basis function, one
    irreducible k-point and one translation: its full grid has (2π)³ / (V kdensity³) points. None:
    no budget.

    Raises
    ------
    ParameterError
        Naming the parameter (kdensity or fingerprints), the estimate and the limit.
    """
    from ..config import MAX_ATOMIC_VOLUME, format_bytes

    if max_memory is None:
        return
    n_grid = (2.0 * math.pi / params.kdensity) ** 3 / MAX_ATOMIC_VOLUME
    dos = fingerprint_bytes(fingerprints)
    floor = memory_estimate(1, 1, int(n_grid), 1.0, dos, n_operators(params))
    if floor <= max_memory:
        return
    grid = GRID_POINT_BYTES * n_grid
    if dos >= grid:
        n = max(w.n_energies for spec in fingerprints.specs.values() for w in spec.windows)
        what = f"fingerprints={','.join(params.fingerprints)} (a window of {n} energies)"
    else:
        what = f"kdensity={params.kdensity:g} 1/Å ({n_grid:.3g} k-points)"
    raise ParameterError(
        f"{what} needs about {format_bytes(floor)} per structure even for a 1-atom cell, more than "
        f"max_memory={format_bytes(max_memory)} per rank; raise --max-memory or choose smaller sizes"
    )


def memory_budget(comm: Any, max_memory: int | None) -> int | None:
    """The per-rank memory budget every rank of `comm` applies (collective; the same value everywhere).

    An explicit `max_memory` (bytes) is used as given. Otherwise each rank takes
    `sporep_hpc.config.default_max_memory` for the ranks sharing its host (counted by host name),
    and the smallest over all ranks is applied everywhere: a structure's fate must not depend on
    the rank that plans it. None when no rank can tell its available memory (no budget).
    """
    from ..config import default_max_memory

    if max_memory is not None:
        return max_memory
    hosts = comm.allgather(socket.gethostname())
    mine = default_max_memory(hosts.count(hosts[comm.rank]))
    known = [v for v in comm.allgather(mine) if v is not None]
    return min(known) if known else None


def _planned(index: int, record: InputRecord, params: RunParameters, dos_bytes: int,
             max_memory: int | None) -> PlanEntry:
    """`plan_record` for a record of kind "structure" whose problems raise InputError."""
    from ..basis import load_basis, n_ao
    from ..config import format_bytes
    from ..kpoints import monkhorst_pack_grid

    s = as_structure(record.structure)
    check_structure(s, record.id, max_atoms=params.max_atoms, min_distance=params.min_distance)
    symbols = [site.specie.symbol for site in s]
    basis = load_basis(params.basis, params.exp_to_discard)
    try:
        nao = n_ao(symbols, basis)
        alpha_min = min(float(np.min(sh.exponents)) for e in set(symbols) for sh in basis.element(e))
    except InputError as exc:
        raise InputError(f"structure {record.id!r}: {exc}") from exc
    grid = monkhorst_pack_grid(s.lattice.matrix, params.kdensity, params.kgrid_rounding)
    kpts, _ = structure_kpoints(s, params)
    n_t = stored_translations(s.lattice.matrix, screening_radius(alpha_min, params.precision))
    need = memory_estimate(nao, len(kpts), math.prod(grid), n_t, dos_bytes, n_operators(params))
    if max_memory is not None and need > max_memory:
        raise InputError(
            f"structure {record.id!r}: needs about {format_bytes(need)} ({nao} basis functions, "
            f"{len(kpts)} k-points), {OVER_BUDGET}{format_bytes(max_memory)} per rank"
        )
    cost = cost_model(nao, len(kpts), s.volume)
    return PlanEntry(index, record.id, "structure", len(s), nao, len(kpts), cost, memory=need)


def plan_record(
    index: int, record: InputRecord, params: RunParameters, max_memory: int | None = None,
    dos_bytes: int | None = None,
) -> PlanEntry:
    """Validate one record, estimate its cost, and check its memory estimate against `max_memory`
    (bytes per rank; None: not checked). Whatever the structure raises (InputError, or anything
    pymatgen, spglib or numpy raise on a hostile input) becomes a "failed" entry with a one-line
    reason naming it. `dos_bytes` (`fingerprint_bytes`) is computed from `params` when not given."""
    if record.kind == "failed":
        return PlanEntry(index, record.id, "failed", error=record.error)
    if record.kind == "bands":
        n_atoms = 0 if record.structure is None else len(record.structure)
        return PlanEntry(index, record.id, "bands", n_atoms=n_atoms, cost=1.0)
    if dos_bytes is None:
        dos_bytes = fingerprint_bytes(FingerprintSet.from_parameters(params))
    try:
        return _planned(index, record, params, dos_bytes, max_memory)
    except Exception as exc:  # this structure's failure (see _reason), never the run's
        n_atoms = len(record.structure) if record.structure is not None else 0
        return PlanEntry(index, record.id, "failed", n_atoms=n_atoms, error=_reason(record.id, exc))


def plan_records(
    records: Sequence[InputRecord], params: RunParameters, lo: int = 0, hi: int | None = None,
    max_memory: int | None = None,
) -> list[PlanEntry]:
    """`plan_record` for records[lo:hi] (global indices lo..hi-1), with the memory budget `max_memory`."""
    hi = len(records) if hi is None else hi
    dos_bytes = fingerprint_bytes(FingerprintSet.from_parameters(params))
    return [plan_record(i, records[i], params, max_memory, dos_bytes) for i in range(lo, hi)]


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
    """The fingerprint specifications of a run, by name (same order as the parameters)."""

    specs: dict = field(default_factory=dict)

    @classmethod
    def from_parameters(cls, params: RunParameters) -> FingerprintSet:
        from ..fingerprints import get_spec

        return cls({name: get_spec(name) for name in params.fingerprints})


def _read_imported_bands(record: InputRecord):
    source = record.source
    if "#" in source and source.split("#")[0].lower().endswith((".h5", ".hdf5")):
        from ..store import open_store

        path, id = source.split("#", 1)
        with open_store(path) as store:
            return store.band_structure(store.index_of(id))
    from ..bandfiles import read_bands

    return read_bands(source)


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


def structure_kpoints(structure: Any, params: RunParameters) -> tuple[np.ndarray, np.ndarray]:
    """Irreducible k-points (n_k, 3) and weights (n_k,) of a structure for these parameters."""
    from ..kpoints import irreducible_kpoints

    return irreducible_kpoints(structure, kdensity=params.kdensity, rounding=params.kgrid_rounding)


def compute_part(
    index: int, record: InputRecord, params: RunParameters, chunk: int = 0, n_chunks: int = 1,
    n_threads: int = 1,
) -> tuple[StructureResult, TaskTimes]:
    """Eigenvalues of k-point chunk `chunk` of `n_chunks` (contiguous, np.array_split order) of a structure.

    No fingerprints: see `finish`. The result's id is `chunk_id(...)` when n_chunks > 1; its
    weights are the chunk's share of the full (normalised) weights. Failures are returned, never raised.
    """
    from ..operators import spectrum_with_stats

    t0 = time.perf_counter()
    id = record.id if n_chunks == 1 else chunk_id(record.id, chunk, n_chunks)
    try:
        structure = as_structure(record.structure)
        kpts, weights = structure_kpoints(structure, params)
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
    from ..bands import BandStructure

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
        return _finish_bands(index, record, bands, fingerprints, n_threads, t0)
    except Exception as exc:  # recorded as this structure's failure (see _failure)
        return _failure(index, record.id, record, exc, t0)


def _finish_bands(index, record, bands, fingerprints, n_threads, t0) -> tuple[StructureResult, TaskTimes]:
    from ..fingerprints import fingerprint

    vectors = {
        name: np.asarray(fingerprint(bands, spec, n_threads=n_threads), dtype=np.float64)
        for name, spec in fingerprints.specs.items()
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
        **structure_fields(record.structure),
    )
    return result, TaskTimes(dos=time.perf_counter() - t0)


def compute_record(
    index: int, record: InputRecord, params: RunParameters, fingerprints: FingerprintSet, n_threads: int = 1
) -> tuple[StructureResult, TaskTimes]:
    """Spectrum and fingerprints of one input, in one piece (rank-independent).

    Any failure of this structure (bad input, basis, numerical problem) is returned as
    a failed StructureResult with a one-line reason naming it; it never propagates.
    """
    t0 = time.perf_counter()
    if record.kind == "failed":
        return failed_result(index, record.id, record.error, record.structure), TaskTimes()
    if record.kind == "bands":
        try:
            bands = _read_imported_bands(record)
            result, times = _finish_bands(index, record, bands, fingerprints, n_threads, t0)
        except Exception as exc:  # recorded as this structure's failure (see _failure)
            return _failure(index, record.id, record, exc, t0)
        return result, TaskTimes(other=times.total)
    part, t_part = compute_part(index, record, params, 0, 1, n_threads)
    result, t_finish = finish(index, record, [part], fingerprints, n_threads)
    return result, t_part + t_finish


# ---------------------------------------------------------------------------- task list
@dataclass(frozen=True)
class Task:
    """One unit of scheduled work: a whole structure, or k-point chunk `chunk` of `n_chunks`.

    Attributes
    ----------
    index : int
        Global structure index (plan entry).
    chunk, n_chunks : int
        Chunk number and count (0, 1 for a whole structure).
    cost : float
        Cost-model estimate of this task.
    """

    index: int
    chunk: int = 0
    n_chunks: int = 1
    cost: float = 0.0


def make_tasks(
    plan: Sequence[PlanEntry], finished: Collection[str], size: int, split: bool = True
) -> tuple[list[Task], list[tuple[int, int]]]:
    """Tasks still to run, and the (index, n_chunks) of split structures to be combined afterwards.

    A structure whose cost exceeds one rank's share (total cost / `size`) is split, when `split`
    and size > 1, into contiguous k-point chunks of cost <= half a share where possible: each chunk
    repeats the fixed part (integrals, overheads: cost - n_ao³·n_k) and takes its share of the
    eigen part n_ao³·n_k, so m = ceil(eigen / (share/2 - fixed)), at most n_k; a structure whose
    fixed part alone exceeds half a share is not split. `finished` holds the ids (and chunk ids)
    in the journal. The result depends on `size` only through the chunking, never through the
    values computed.
    """
    todo = [e for e in plan if e.kind != "failed" and e.id not in finished]
    share = sum(e.cost for e in todo) / size
    tasks: list[Task] = []
    combine: list[tuple[int, int]] = []
    for e in todo:
        eigen = float(e.n_ao) ** 3 * e.n_k
        fixed = e.cost - eigen
        room = share / 2 - fixed
        if split and size > 1 and e.kind == "structure" and e.n_k >= 2 and e.cost > share > 0 and room > 0:
            m = min(e.n_k, max(2, math.ceil(eigen / room)))
            sizes = [len(c) for c in np.array_split(np.arange(e.n_k), m)]
            for j in range(m):
                if chunk_id(e.id, j, m) not in finished:
                    tasks.append(Task(e.index, j, m, fixed + eigen * sizes[j] / e.n_k))
            combine.append((e.index, m))
        else:
            tasks.append(Task(e.index, 0, 1, e.cost))
    return tasks, combine
