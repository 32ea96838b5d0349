"""The task model: resolving inputs, planning (validation + cost model) and computing one structure.

Everything here is serial and rank-agnostic: what a task computes depends only on
its input record and the run parameters, never on the rank that runs it.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import RunParameters
from ..errors import InputError, SporepError
from ..store.schema import STATUS_DONE, StructureResult, failed_result, structure_fields
from ..structures import InputRecord, check_structure, check_unique_ids, collect_inputs

log = logging.getLogger(__name__)

EXAMPLES_PREFIX = "examples:"
#: Radius (Å) of the sphere of lattice translations assumed by the integral term of the cost model.
COST_LATTICE_RADIUS = 12.0
#: Weight of the integral term (n_ao² per translation) relative to the eigen term (n_ao³ per k-point).
COST_INTEGRAL_WEIGHT = 0.5


# ---------------------------------------------------------------------------- inputs
def resolve_inputs(inputs: Iterable[str], max_id_bytes: int = 64) -> list[InputRecord]:
    """Input records for files, directories, ``examples:<spec>`` sets and our own stores (``*.h5``).

    Ids are checked for uniqueness (InputError before anything runs).
    """
    records: list[InputRecord] = []
    for item in inputs:
        item = str(item)
        if item.startswith(EXAMPLES_PREFIX):
            from ..examples import load_set

            for id, structure, properties in load_set(item[len(EXAMPLES_PREFIX) :]):
                records.append(InputRecord(id, item, "structure", structure, "", properties))
            continue
        for record in collect_inputs([item]):
            if record.kind == "bands" and Path(record.source).suffix.lower() in (".h5", ".hdf5"):
                records.extend(_store_records(record))
            else:
                records.append(record)
    check_unique_ids(records, max_id_bytes)
    return records


def _store_records(record: InputRecord) -> list[InputRecord]:
    """One "bands" record per computed structure of one of our stores (source ``path#id``)."""
    from ..store import STATUS_DONE as DONE
    from ..store import open_store

    try:
        with open_store(record.source) as store:
            out = []
            for i, id in enumerate(store.ids):
                if store.status[i] == DONE:
                    structure = store.structure(i) if store.atoms(i)[1].size else None
                    out.append(InputRecord(id, f"{record.source}#{id}", "bands", structure))
            return out
    except SporepError as exc:
        return [InputRecord(record.id, record.source, "failed", error=str(exc))]


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
    """

    index: int
    id: str
    kind: str
    n_atoms: int = 0
    n_ao: int = 0
    n_k: int = 0
    cost: float = 0.0
    error: str = ""


def cost_model(n_ao: int, n_k: int, volume: float) -> float:
    """Estimated cost of one structure: n_ao³·n_k (eigen) + w·n_ao²·n_T (integrals).

    n_T, the number of lattice translations in a sphere of COST_LATTICE_RADIUS Å, is
    (4/3)πR³ / volume (at least 1).
    """
    n_t = max(1.0, 4.0 / 3.0 * math.pi * COST_LATTICE_RADIUS**3 / max(volume, 1e-12))
    return float(n_ao) ** 3 * n_k + COST_INTEGRAL_WEIGHT * float(n_ao) ** 2 * n_t


def plan_record(index: int, record: InputRecord, params: RunParameters) -> PlanEntry:
    """Validate one record and estimate its cost; an InputError becomes a "failed" entry."""
    if record.kind == "failed":
        return PlanEntry(index, record.id, "failed", error=record.error)
    if record.kind == "bands":
        return PlanEntry(index, record.id, "bands", cost=1.0)
    from ..basis import load_basis, n_ao
    from ..kpoints import irreducible_kpoints

    s = record.structure
    try:
        check_structure(s, record.id, max_atoms=params.max_atoms, min_distance=params.min_distance)
        symbols = [site.specie.symbol for site in s]
        try:
            nao = n_ao(symbols, load_basis(params.basis, params.exp_to_discard))
        except InputError as exc:
            raise InputError(f"structure {record.id!r}: {exc}") from exc
        kpts, _ = irreducible_kpoints(s, kdensity=params.kdensity)
    except InputError as exc:
        return PlanEntry(index, record.id, "failed", n_atoms=len(s), error=str(exc))
    cost = cost_model(nao, len(kpts), s.volume)
    return PlanEntry(index, record.id, "structure", len(s), nao, len(kpts), cost)


def plan_records(records: Sequence[InputRecord], params: RunParameters, lo: int = 0, hi: int | None = None):
    """`plan_record` for records[lo:hi] (global indices lo..hi-1)."""
    hi = len(records) if hi is None else hi
    return [plan_record(i, records[i], params) for i in range(lo, hi)]


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


def compute_record(
    index: int, record: InputRecord, params: RunParameters, fingerprints: FingerprintSet, n_threads: int = 1
) -> tuple[StructureResult, TaskTimes]:
    """Spectrum and fingerprints of one input (rank-independent).

    Any failure of this structure (bad input, basis, numerical problem) is returned as
    a failed StructureResult with a one-line reason naming it; it never propagates.
    """
    from ..fingerprints import fingerprint

    t0 = time.perf_counter()
    t_int = t_eig = 0.0
    structure = record.structure
    try:
        if record.kind == "bands":
            bands = _read_imported_bands(record)
        elif record.kind == "structure":
            from ..operators import spectrum_with_stats

            bands, stats = spectrum_with_stats(
                structure,
                operator=params.operator,
                basis=params.basis,
                kdensity=params.kdensity,
                exp_to_discard=params.exp_to_discard,
                precision=params.precision,
                lindep=params.lindep,
                n_threads=n_threads,
            )
            t_int, t_eig = float(stats.t_integrals), float(stats.t_eigen)
        else:
            return failed_result(index, record.id, record.error, structure), TaskTimes()
        t1 = time.perf_counter()
        vectors = {
            name: np.asarray(fingerprint(bands, spec, n_threads=n_threads), dtype=np.float64)
            for name, spec in fingerprints.specs.items()
        }
        t_dos = time.perf_counter() - t1
        eig = np.ascontiguousarray(bands.eigenvalues, dtype=np.float64)
        kpts = getattr(bands, "kpoints", None)
        if kpts is None:
            kpts = np.full((eig.shape[1], 3), np.nan)  # imported bands without k-points
        kpts = np.asarray(kpts, dtype=np.float64).reshape(-1, 3)
        result = StructureResult(
            index=index,
            id=record.id,
            status=STATUS_DONE,
            kpoints=kpts,
            weights=np.asarray(bands.weights, dtype=np.float64),
            eigenvalues=eig,
            **_edges(bands),
            fingerprints=vectors,
            **structure_fields(structure),
        )
    except SporepError as exc:
        msg = str(exc)
        if record.id not in msg:
            msg = f"structure {record.id!r}: {msg}"
        elapsed = TaskTimes(other=time.perf_counter() - t0)
        return failed_result(index, record.id, msg.splitlines()[0], structure), elapsed
    except Exception as exc:  # isolate any other failure of one structure; logged with its traceback
        log.warning("structure %r failed:\n%s", record.id, traceback.format_exc())
        msg = f"structure {record.id!r}: internal error {type(exc).__name__}: {exc}".splitlines()[0]
        return failed_result(index, record.id, msg, structure), TaskTimes(other=time.perf_counter() - t0)
    total = time.perf_counter() - t0
    return result, TaskTimes(t_int, t_eig, t_dos, 0.0, max(0.0, total - t_int - t_eig - t_dos))
