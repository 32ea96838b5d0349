"""Planning a run: validation of every record, the cost model, the memory budget, and the task list
(whole structures, or k-point chunks of big ones). Serial except `memory_budget` (one allreduce).
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..basis import load_basis, n_ao
from ..config import MAX_ATOMIC_VOLUME, RunParameters, default_max_memory, format_bytes
from ..errors import InputError, ParameterError
from ..inputs.records import InputRecord
from ..operators import _PHASED_BYTES, BOHR_ANGSTROM
from ..pipeline import FingerprintSet, Prepared, _reason, chunk_id, prepare
from ..structures import as_structure, check_structure

#: Radius (Å) of the sphere of lattice translations assumed by the integral term of the cost model.
COST_LATTICE_RADIUS = 12.0


#: Weight of the integral term (n_ao² per translation) relative to the eigen term (n_ao³ per k-point), and
#: the fixed cost of any structure (k-point reduction, DOS, journal) in the same units. Least-squares fit
#: of the measured task times of 118 AFLOW/CNT/BaTiO3 structures (1 thread): 3.1e-9 s per n_ao³·n_k,
#: 4.9e-7 s per n_ao²·n_T, 0.02 s per structure; correlation with the measured times 0.86.
COST_INTEGRAL_WEIGHT = 150.0


COST_CONSTANT = 6.0e6


#: Core-seconds per unit of `cost_model`: the CPU time (one thread) of `pipeline.compute_record` divided
#: by the model's cost, summed over 52 structures (BaTiO3, nanotubes of 16-124 atoms, AFLOW prototypes of
#: 2-30 atoms; n_ao 14-496, costs 9e6-2e9): 3.65 s / 7.85e9 = 4.6e-10 (least squares through 0: 3.8e-10
#: and 5.1e-10 in two batches; median ratio per structure 5.2e-10 to 6.8e-10; single structures within a
#: factor 0.6-5, the worst small cells with many k-points). CPU time, not wall time: on the shared
#: machine of the fit (load 6 on 2 cores) the wall time was 3-4 times longer. Printed by ``--dry-run``
#: as estimated core-seconds (`sporep_hpc.parallel.progress.plan_table`).
COST_SECONDS = 5.0e-10


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
    grid : tuple of int
        Monkhorst-Pack grid shape (`sporep_hpc.pipeline.structure_grid`: one point along vacuum
        directions with ``vacuum_kpoints = "gamma"``); () when unknown.
    note : str
        What was read for this input (a calculation folder's chosen file), shown by the plan.
    prepared : Prepared or None
        The computed cell and its irreducible k-points (`sporep_hpc.pipeline.prepare`): the symmetry
        work of the structure, done once here and carried (allgathered with the plan: about 32 bytes
        per k-point and atom on every rank) to the rank that computes it.
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
    grid: tuple[int, ...] = ()
    note: str = ""
    prepared: Prepared | None = field(default=None, compare=False, repr=False)


def cost_model(n_ao: int, n_k: int, volume: float) -> float:
    """Estimated cost of one structure: n_ao³·n_k (eigen) + w·n_ao²·n_T (integrals) + c.

    n_T, the number of lattice translations in a sphere of COST_LATTICE_RADIUS Å, is
    (4/3)πR³ / volume (at least 1); w = COST_INTEGRAL_WEIGHT, c = COST_CONSTANT. One unit is about
    COST_SECONDS core-seconds (5e-10 s: CPU time of one thread, fitted on 52 structures); the
    schedule uses only ratios, the dry run prints costs × COST_SECONDS as estimated core-seconds.
    """
    n_t = _translations(volume, COST_LATTICE_RADIUS)
    return float(n_ao) ** 3 * n_k + COST_INTEGRAL_WEIGHT * float(n_ao) ** 2 * n_t + COST_CONSTANT


def _translations(volume: float, radius: float) -> float:
    """Lattice translations in a sphere of `radius` Å around the origin (at least 1)."""
    return max(1.0, 4.0 / 3.0 * math.pi * radius**3 / max(volume, 1e-12))


def screening_radius(alpha_min: float, precision: float) -> float:
    """Upper bound (Å) of the lattice-sum radius: where the overlap of the two most diffuse primitives,
    exponent `alpha_min` (Bohr⁻²) each, decays below `precision`, times SCREENING_MARGIN."""
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
    a = [[float(x) for x in row] for row in np.asarray(lattice, dtype=np.float64)]  # plain floats: 3x3
    volume = abs(_dot(_cross(a[0], a[1]), a[2]))
    faces = sum(math.sqrt(_dot(c, c)) for c in (_cross(a[0], a[1]), _cross(a[0], a[2]), _cross(a[1], a[2])))
    edges = sum(math.sqrt(_dot(v, v)) for v in a)
    r = radius
    swept = 8.0 * volume + 8.0 * faces * r + 2.0 * math.pi * edges * r**2 + 4.0 / 3.0 * math.pi * r**3
    return swept / max(volume, 1e-12) / 2.0 + 1.0


def _cross(u: list[float], v: list[float]) -> list[float]:
    return [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]]


def _dot(u: list[float], v: list[float]) -> float:
    return u[0] * v[0] + u[1] * v[1] + u[2] * v[2]


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
    if max_memory is not None:
        return max_memory
    hosts = comm.allgather(socket.gethostname())
    mine = default_max_memory(hosts.count(hosts[comm.rank]))
    known = [v for v in comm.allgather(mine) if v is not None]
    return min(known) if known else None


def _planned(index: int, record: InputRecord, params: RunParameters, dos_bytes: int,
             max_memory: int | None) -> PlanEntry:
    """`plan_record` for a record of kind "structure" whose problems raise InputError."""
    s = as_structure(record.structure)
    check_structure(s, record.id, max_atoms=params.max_atoms, min_distance=params.min_distance)
    basis = load_basis(params.basis, params.exp_to_discard)
    try:  # an element the basis lacks fails the structure before any symmetry work
        n_ao(sorted({site.specie.symbol for site in s}), basis)
    except InputError as exc:
        raise InputError(f"structure {record.id!r}: {exc}") from exc
    prepared = prepare(record.structure, params)  # planned in the cell it is computed in; carried to its task
    cell = prepared.structure  # CompactStructure
    symbols = cell.symbols
    nao = n_ao(symbols, basis)
    alpha_min = min(float(np.min(sh.exponents)) for e in set(symbols) for sh in basis.element(e))
    grid = prepared.grid
    kpts = prepared.kpoints
    n_t = stored_translations(cell.lattice, screening_radius(alpha_min, params.precision))
    need = memory_estimate(nao, len(kpts), math.prod(grid), n_t, dos_bytes, n_operators(params))
    if max_memory is not None and need > max_memory:
        raise InputError(
            f"structure {record.id!r}: needs about {format_bytes(need)} ({nao} basis functions, "
            f"{len(kpts)} k-points), {OVER_BUDGET}{format_bytes(max_memory)} per rank"
        )
    cost = cost_model(nao, len(kpts), abs(float(np.linalg.det(cell.lattice))))
    return PlanEntry(index, record.id, "structure", len(cell), nao, len(kpts), cost, memory=need, grid=grid,
                     prepared=prepared)


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
    max_memory: int | None = None, on_planned: Callable[[int], None] | None = None,
) -> list[PlanEntry]:
    """`plan_record` for records[lo:hi] (global indices lo..hi-1), with the memory budget `max_memory`;
    `on_planned(n)` after each record, n the number planned so far (progress)."""
    hi = len(records) if hi is None else hi
    dos_bytes = fingerprint_bytes(FingerprintSet.from_parameters(params))
    entries = []
    for i in range(lo, hi):
        entry = plan_record(i, records[i], params, max_memory, dos_bytes)
        entries.append(replace(entry, note=records[i].note))
        if on_planned is not None:
            on_planned(len(entries))
    return entries


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
