"""Merging stores made with identical parameters into one store (MPI-parallel).

`merge_stores` checks the inputs agree (schema major version, run parameters, fingerprint
grids and attributes; the first difference is named), that ids are unique across them and
that no row is pending, then writes the merged store through the store's own writer
(`sporep_hpc.store.write_store_atomically`): with h5py built for MPI every rank reads one
contiguous block of output rows from the inputs (`Store.read_rows`) and the ranks write
collectively; otherwise rank 0 does all of it. The output is written under ``<output>.partial``
(removed on failure) and renamed when complete.

Post-processing groups of the inputs (/similarity, /models) describe those stores alone and are
not copied (a warning says so). Row order: the inputs' rows one after the other, or, with the
manifest of `sporep-hpc split`, the order of the original list, so that merging the chunk stores
of a job array gives the store of one run over the whole list (up to ``created``/``n_ranks``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..agreement import all_call, root_call
from ..errors import StoreError
from ..params import differences
from ..store import (
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_PENDING,
    FingerprintMeta,
    StoreHeader,
    StructureResult,
    open_store,
    timestamp,
    write_store_atomically,
    writes_collectively,
)
from .schedule import block_range

log = logging.getLogger(__name__)

#: The parts of an input store a merge reads (validated by `read_summary`, `Store.require`).
MERGED_PARTS = ("/", "structures", "spectra", "fingerprints")


@dataclass(frozen=True)
class StoreSummary:
    """What `merge_stores` needs to know about one input before reading rows.

    Attributes
    ----------
    path : str
    ids : list of str
        Structure ids in row order.
    status : ndarray of shape (n_rows,), int8
    parameters_json : str
        Root attribute ``parameters``.
    schema_version : str
    fingerprints : dict of str to (ndarray of shape (n_features,), float64, eV; dict)
        Energy grid and attributes of each fingerprint.
    created : str
    n_ranks : int
    """

    path: str
    ids: list
    status: np.ndarray
    parameters_json: str
    schema_version: str
    fingerprints: dict
    created: str
    n_ranks: int


@dataclass(frozen=True)
class MergeReport:
    """Outcome of a merge.

    Attributes
    ----------
    output : str
    n_inputs, n_rows, n_done, n_failed : int
    seconds : float
        Wall time of the whole merge.
    bytes_written : int
        Size of the merged file.
    n_ranks : int
        Ranks that took part; ``parallel`` tells whether they wrote collectively (mpio).
    parallel : bool
    """

    output: str
    n_inputs: int
    n_rows: int
    n_done: int
    n_failed: int
    seconds: float
    bytes_written: int
    n_ranks: int
    parallel: bool


def _attr(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (bytes decoded, numpy scalars unwrapped)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def read_summary(path: str | Path) -> StoreSummary:
    """Ids, status, parameters and fingerprint grids of one store (StoreError if it is not one, or if
    anything a merge reads is missing or inconsistent)."""
    with open_store(path) as store:
        store.require(*MERGED_PARTS)  # `read_block` then reads these parts
        f = store.file
        fingerprints = {}
        for name in store.fingerprint_names:
            grp = f[f"fingerprints/{name}"]
            fingerprints[name] = (grp["energies"][()], {k: _attr(v) for k, v in grp.attrs.items()})
        attrs = store.attrs
        dropped = [name for name in ("similarity", "models") if name in f]
        if dropped:
            log.warning(
                "%s: /%s not merged (computed on that store alone; recompute on the merged store)",
                path,
                ", /".join(dropped),
            )
        return StoreSummary(
            path=str(path),
            ids=store.ids,
            status=np.asarray(store.status),
            parameters_json=str(attrs["parameters"]),
            schema_version=store.schema_version,
            fingerprints=fingerprints,
            created=str(attrs.get("created", "")),
            n_ranks=int(attrs.get("n_ranks", 0)),
        )


def check_compatible(summaries: Sequence[StoreSummary]) -> None:
    """Raise StoreError unless all stores can be merged: same schema major version, parameters, fingerprints.

    The message names the first differing parameter (dotted for nested ones, e.g.
    ``fingerprint_specs.kinetic.width``) with its two values and the two files.
    """
    if not summaries:
        raise StoreError("merge needs at least one input store")
    ref = summaries[0]
    ref_params = json.loads(ref.parameters_json)
    major = ref.schema_version.split(".")[0]
    for s in summaries[1:]:
        if s.schema_version.split(".")[0] != major:
            raise StoreError(
                f"cannot merge: schema_version {ref.schema_version} in {ref.path} "
                f"but {s.schema_version} in {s.path}"
            )
        diff = differences(ref_params, json.loads(s.parameters_json))
        if diff:
            raise StoreError(
                f"cannot merge stores made with different parameters: {diff[0]} (from {ref.path} to {s.path})"
            )
        if sorted(s.fingerprints) != sorted(ref.fingerprints):
            raise StoreError(
                f"cannot merge: fingerprints {sorted(ref.fingerprints)} in {ref.path} "
                f"but {sorted(s.fingerprints)} in {s.path}"
            )
        for name, (energies, attrs) in ref.fingerprints.items():
            other_energies, other_attrs = s.fingerprints[name]
            if not np.array_equal(energies, other_energies):
                raise StoreError(
                    f"cannot merge: fingerprint {name!r} has different energy grids in {ref.path} "
                    f"and {s.path}"
                )
            diff = differences(attrs, other_attrs)
            if diff:
                raise StoreError(
                    f"cannot merge: fingerprint {name!r} attribute {diff[0]} (from {ref.path} to {s.path})"
                )


def merge_plan(
    summaries: Sequence[StoreSummary], order: Sequence[str] | None = None
) -> list[tuple[int, int]]:
    """(input index, row) of every output row.

    Ids must be unique across the inputs and no row may be pending. Without `order` the rows
    follow the inputs one after the other; with `order` (ids, e.g. from a split manifest) the
    rows follow it and the ids must be exactly those of `order`.
    """
    where: dict[str, tuple[int, int]] = {}
    for k, s in enumerate(summaries):
        pending = np.flatnonzero(s.status == STATUS_PENDING)
        if pending.size:
            raise StoreError(
                f"{s.path}: {pending.size} row(s) pending (e.g. {s.ids[pending[0]]!r}): "
                "an incomplete store cannot be merged"
            )
        for row, id in enumerate(s.ids):
            if id in where:
                k0, row0 = where[id]
                raise StoreError(
                    f"duplicate id {id!r}: row {row0} of {summaries[k0].path} and row {row} of {s.path}; "
                    "ids must be unique across the merged stores"
                )
            where[id] = (k, row)
    if order is None:
        return [where[id] for s in summaries for id in s.ids]
    order = list(order)
    missing = [id for id in order if id not in where]
    extra = sorted(set(where) - set(order))
    if missing or extra or len(set(order)) != len(order):
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} expected id(s) missing (e.g. {missing[:3]}; a chunk not run or not given?)"
            )
        if extra:
            parts.append(f"{len(extra)} id(s) not in the manifest (e.g. {extra[:3]})")
        if len(set(order)) != len(order):
            parts.append("the manifest repeats ids")
        raise StoreError("stores do not match the split manifest: " + "; ".join(parts))
    return [where[id] for id in order]


def read_block(
    summaries: Sequence[StoreSummary], plan: Sequence[tuple[int, int]], lo: int, hi: int, names: Sequence[str]
) -> list[StructureResult]:
    """Output rows [lo, hi) read from the inputs (`Store.read_rows`, once over the span of the rows
    wanted from each input), in index order."""
    by_input: dict[int, list[tuple[int, int]]] = {}
    for index in range(lo, hi):
        k, row = plan[index]
        by_input.setdefault(k, []).append((row, index))
    out: list[StructureResult] = []
    for k in sorted(by_input):
        wanted = by_input[k]
        r0 = min(row for row, _ in wanted)
        with open_store(summaries[k].path) as store:
            span = store.read_rows(r0, max(row for row, _ in wanted) + 1, names)
        out.extend(replace(span[row - r0], index=index) for row, index in wanted)
    return sorted(out, key=lambda r: r.index)


def merge_stores(
    inputs: Sequence[str | Path],
    output: str | Path,
    comm: Any = None,
    *,
    order: Sequence[str] | None = None,
    force: bool = False,
) -> MergeReport:
    """Merge `inputs` into `output` (collective over `comm`: every rank calls it with the same arguments).

    Parameters
    ----------
    inputs : sequence of path
        Stores written by `sporep-hpc run` with identical parameters.
    output : path
        The merged store; must not exist unless `force`. Written as ``<output>.partial`` then renamed.
    comm : mpi4py communicator or None
        With several ranks and h5py built for MPI, rows are read and written in parallel
        (collective mpio writes); otherwise rank 0 merges alone.
    order : sequence of str, optional
        Output row order by id (`sporep_hpc.parallel.split.expected_ids` of a split manifest); the ids of
        the inputs must be exactly these.
    force : bool
        Replace an existing `output`.

    Raises
    ------
    StoreError
        Incompatible inputs (the differing parameter is named), duplicate ids, pending rows,
        ids not matching `order`, an existing output, or an input that is not a store.
    """
    t0 = time.perf_counter()
    output = Path(output)
    inputs = [str(p) for p in inputs]

    def _prepare():
        if not inputs:
            raise StoreError("merge needs at least one input store")
        resolved = {Path(p).resolve() for p in inputs}
        if output.resolve() in resolved:
            raise StoreError(f"output {output} is also an input")
        if len(resolved) != len(inputs):
            raise StoreError("an input store is given twice")
        if output.exists() and not force:
            raise StoreError(f"output {output} exists (use --force to replace it)")
        summaries = [read_summary(p) for p in inputs]
        check_compatible(summaries)
        plan = merge_plan(summaries, order)
        created = timestamp()
        return summaries, plan, created

    summaries, plan, created = root_call(comm, _prepare)
    ref = summaries[0]
    names = sorted(ref.fingerprints)
    meta = {
        name: FingerprintMeta(energies=ref.fingerprints[name][0], attrs=ref.fingerprints[name][1])
        for name in names
    }
    size = 1 if comm is None else comm.size
    provenance = [
        {"file": s.path, "rows": len(s.ids), "created": s.created, "n_ranks": s.n_ranks} for s in summaries
    ]
    header = StoreHeader(
        parameters_json=ref.parameters_json,
        created=created,
        n_ranks=size,
        version=__version__,
        merged_from=json.dumps(provenance),
    )
    n = len(plan)
    parallel = writes_collectively(comm)
    if parallel:
        lo, hi = block_range(n, size, comm.rank)
    else:
        if size > 1 and comm.rank == 0:
            log.info("h5py without MPI (or SPOREP_FORCE_SERIAL_HDF5=1): rank 0 merges alone")
        lo, hi = (0, n) if comm is None or comm.rank == 0 else (n, n)
    rows = all_call(comm, lambda: read_block(summaries, plan, lo, hi, names))
    nbytes = write_store_atomically(output, rows, lo, n, header, meta, comm)
    status = np.array([summaries[k].status[row] for k, row in plan], dtype=np.int8)
    n_done, n_failed = int((status == STATUS_DONE).sum()), int((status == STATUS_FAILED).sum())
    return MergeReport(
        str(output), len(inputs), n, n_done, n_failed, time.perf_counter() - t0, nbytes, size, parallel
    )


__all__ = [
    "MergeReport",
    "StoreSummary",
    "check_compatible",
    "merge_plan",
    "merge_stores",
    "read_block",
    "read_summary",
]
