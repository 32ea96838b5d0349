"""Writing a complete store: preallocated datasets, one contiguous block of rows per rank.

`write_store` is collective over `comm` (all ranks call it with identical `header`
and `fingerprint_meta`); each rank passes the rows [lo, hi) it owns (possibly none).
The datasets are those of `schema.DATASETS`, created and written in its order by one
loop: sizes are allgathered, ragged offsets come from an exclusive scan, strings are
fixed width, nothing is compressed. With `comm` None (or one rank) it is a plain
serial writer: that is the fallback path, where rank 0 passes every row.

`write_store_atomically` is how `run` and `merge` write a store: a space check, the
write into ``<store>.partial`` (collective, or on rank 0), removal of the partial file
on any failure (agreed by every rank), and the rename into place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..agreement import all_call, root_call
from ..errors import StoreError
from .h5 import mpio_available, open_h5, write_rows
from .schema import (
    DATASETS,
    GROUP_LAYOUT,
    MERGED_FROM,
    SCHEMA_VERSION,
    SPECTRA_SCALARS,
    DatasetLayout,
    StructureResult,
    to_fixed,
)


@dataclass(frozen=True)
class FingerprintMeta:
    """Per-fingerprint store metadata (identical on every rank).

    Attributes
    ----------
    energies : ndarray of shape (n_features,), float64, eV
        Energy grid (relative to each window's reference).
    attrs : dict
        Attributes of /fingerprints/<name>: reference, window, smearing, spec (JSON strings or scalars).
    """

    energies: np.ndarray
    attrs: Mapping[str, Any]


@dataclass(frozen=True)
class StoreHeader:
    """Root attributes of a store (identical on every rank)."""

    parameters_json: str
    created: str
    n_ranks: int
    version: str
    inputs_digest: str = ""  # SHA-256 of the run's inputs (attribute of /structures when set)
    merged_from: str = ""  # JSON list of the inputs of a merge (root attribute when set)


def _encode(layout: DatasetLayout, value: Any) -> np.ndarray:
    """One structure's value of a dataset as an array of the dataset's dtype."""
    if layout.width:
        return np.array(to_fixed(value, layout.width), dtype=layout.dtype)
    if isinstance(value, str):  # per-structure properties: UTF-8 bytes
        return np.frombuffer(value.encode("utf-8"), dtype=np.uint8)
    return np.asarray(value, dtype=layout.dtype)


def _columns(rows: Sequence[StructureResult]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(data of every dataset of `DATASETS` that holds a field, in rows order; the per-row sizes of
    the ragged data of each offsets dataset). StoreError when two datasets ragged by the same offsets
    disagree on a row's size (e.g. positions and numbers)."""
    data: dict[str, np.ndarray] = {}
    sizes: dict[str, np.ndarray] = {}
    for key, layout in DATASETS.items():
        if not layout.field:
            continue
        tail = tuple(layout.shape[1:])
        parts = [_encode(layout, getattr(r, layout.field)).reshape(-1, *tail) for r in rows]
        if layout.indexing == "row":
            data[key] = np.array(parts, dtype=layout.dtype).reshape(len(rows), *tail)
            continue
        offsets = f"{key.split('/')[0]}/{layout.indexing}"
        counts = np.array([len(p) for p in parts], dtype=np.int64)
        if offsets in sizes and not np.array_equal(sizes[offsets], counts):
            i = int(np.flatnonzero(sizes[offsets] != counts)[0])
            raise StoreError(
                f"structure {rows[i].id!r}: {layout.field} has {counts[i]} rows but "
                f"{sizes[offsets][i]} by the other data indexed by {offsets}"
            )
        sizes[offsets] = counts
        data[key] = np.concatenate(parts) if parts else np.zeros((0, *tail), dtype=layout.dtype)
    return data, sizes


def _fingerprint_block(rows: Sequence[StructureResult], name: str, n_features: int) -> np.ndarray:
    values = np.full((len(rows), n_features), np.nan)
    for k, r in enumerate(rows):
        if name in r.fingerprints:
            vec = np.asarray(r.fingerprints[name], dtype=np.float64)
            if vec.shape != (n_features,):
                raise StoreError(
                    f"structure {r.id!r}: fingerprint {name!r} has shape {vec.shape}, "
                    f"expected ({n_features},)"
                )
            values[k] = vec
    return values


def agree(comm: Any, path: Any, write: Any) -> None:
    """Run `write` (one collective write) on this rank, then raise the same StoreError on every rank
    of `comm` if it failed on any of them (a full disk, a quota, an I/O error): no rank goes on to
    the next collective while another has left. Raised inside the file's ``with`` block, the error
    makes every rank close the file together."""
    problem = ""
    try:
        write()
    except (OSError, RuntimeError, StoreError) as exc:  # h5py reports I/O errors as OSError/RuntimeError
        problem = f"{exc}"
    if comm is not None and comm.size > 1:
        failed = [(r, p) for r, p in enumerate(comm.allgather(problem)) if p]
        problem = "; ".join(f"rank {r}: {p}" for r, p in failed)
    if problem:
        raise StoreError(f"cannot write {path}: {problem}")


def write_store(
    path: Any,
    rows: Sequence[StructureResult],
    lo: int,
    n_total: int,
    header: StoreHeader,
    fingerprint_meta: Mapping[str, FingerprintMeta],
    comm: Any = None,
) -> None:
    """Create the store at `path` and write this rank's rows (collective over `comm`).

    Parameters
    ----------
    path : path
        File to create (truncated if it exists).
    rows : sequence of StructureResult
        This rank's rows, with indices lo, lo+1, ..., lo+len(rows)-1 in that order.
    lo : int
        Global index of the first row of this rank.
    n_total : int
        Number of structures in the store (rows over all ranks).
    header : StoreHeader
        Root attributes.
    fingerprint_meta : mapping of name to FingerprintMeta
        Fingerprints to store (sorted by name on disk).
    comm : mpi4py communicator or None
        Ranks that share the file (mpio); None for a serial write.
    """
    names = sorted(fingerprint_meta)
    problem = ""
    try:
        for k, r in enumerate(rows):
            if r.index != lo + k:
                raise StoreError(f"row {k} of this rank has index {r.index}, expected {lo + k}")
        data, sizes = _columns(rows)
        fp_values = {n: _fingerprint_block(rows, n, len(fingerprint_meta[n].energies)) for n in names}
    except StoreError as exc:
        problem = str(exc)
    if comm is not None and comm.size > 1:  # every rank agrees before the first collective
        problem = next((p for p in comm.allgather(problem) if p), "")
    if problem:
        raise StoreError(f"cannot write {path}: {problem}")
    offsets = [key for key, layout in DATASETS.items() if layout.indexing == "offsets"]
    local = np.array([sizes[key].sum() for key in offsets], dtype=np.int64)
    if comm is not None and comm.size > 1:
        counts = np.array(comm.allgather((lo, len(rows), *local.tolist())), dtype=np.int64)
        base = comm.exscan(local.copy())  # collective on every rank; rank 0 gets None
        base = np.zeros(len(offsets), dtype=np.int64) if comm.rank == 0 else base
        starts = np.concatenate(([0], np.cumsum(counts[:, 1])))[:-1]
        held = counts[:, 1] > 0
        if counts[:, 1].sum() != n_total or not np.array_equal(counts[held, 0], starts[held]):
            blocks = counts[:, :2].tolist()
            raise StoreError(f"row blocks (lo, n) {blocks} do not tile [0, {n_total}) in rank order")
        total = counts[:, 2:].sum(axis=0)
    else:
        if len(rows) != n_total or lo != 0:
            raise StoreError(f"a serial write needs all {n_total} rows from 0; got {len(rows)} from {lo}")
        base = np.zeros(len(offsets), dtype=np.int64)
        total = local
    start = {key: int(b) for key, b in zip(offsets, base, strict=True)}  # this rank's first ragged row
    length = {key: int(t) for key, t in zip(offsets, total, strict=True)}  # ragged rows in the store
    last = lo + len(rows) == n_total and len(rows) > 0
    for key in offsets:  # this rank's offsets: an exclusive scan of its sizes, the end on the last rank
        ends = start[key] + np.cumsum(sizes[key])
        data[key] = np.concatenate(([start[key]], ends if last else ends[:-1])).astype(np.int64)
        if not rows:
            data[key] = data[key][:0]

    with open_h5(path, "w", comm) as f:
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["sporep_hpc_version"] = header.version
        f.attrs["created"] = header.created
        f.attrs["parameters"] = header.parameters_json
        f.attrs["n_ranks"] = int(header.n_ranks)
        if header.merged_from:
            f.attrs[MERGED_FROM] = header.merged_from
        for group in ("structures", "spectra", "fingerprints"):
            f.create_group(group)
        if header.inputs_digest:
            f["structures"].attrs["inputs_digest"] = header.inputs_digest
        dsets = {}
        for key, layout in DATASETS.items():
            rows_on_disk = {"row": n_total, "offsets": n_total + 1}.get(layout.indexing)
            if rows_on_disk is None:  # ragged
                rows_on_disk = length[f"{key.split('/')[0]}/{layout.indexing}"]
            dsets[key] = create_dataset(f, key, layout, shape=(rows_on_disk, *layout.shape[1:]))
        fp_dsets = {}
        fp_layout = GROUP_LAYOUT["fingerprints"]
        for name in names:
            meta = fingerprint_meta[name]
            energies = np.asarray(meta.energies, dtype=np.float64)
            grp = f["fingerprints"].create_group(name)
            for key in sorted(meta.attrs):
                value = meta.attrs[key]
                grp.attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
            e = create_dataset(grp, "energies", fp_layout["energies"], shape=(len(energies),))
            v = create_dataset(grp, "values", fp_layout["values"], shape=(n_total, len(energies)))
            fp_dsets[name] = (e, v, energies)

        def w(dset, at, values):  # write, then agree: a failure on any rank stops every rank here
            agree(comm, path, lambda: write_rows(dset, at, values))

        for key, layout in DATASETS.items():
            ragged = layout.indexing not in ("row", "offsets")
            w(dsets[key], start[f"{key.split('/')[0]}/{layout.indexing}"] if ragged else lo, data[key])
        for name in names:
            e, v, energies = fp_dsets[name]
            w(e, 0, energies if (comm is None or comm.rank == 0) else energies[:0])
            w(v, lo, fp_values[name])


def create_dataset(parent: Any, key: str, layout: DatasetLayout, **kwargs: Any) -> Any:
    """Dataset `key` of h5py group `parent`, of `layout`'s dtype, with its attributes (units, ...);
    `kwargs` go to h5py (shape, data, chunks)."""
    dset = parent.create_dataset(key, dtype=layout.dtype, **kwargs)
    if layout.units:
        dset.attrs["units"] = layout.units
    for name, value in layout.attrs:
        dset.attrs[name] = value
    return dset


def writes_collectively(comm: Any) -> bool:
    """True when the ranks of `comm` write a store together (mpio); else rank 0 writes every row."""
    return comm is not None and comm.size > 1 and mpio_available()


def partial_path(path: Any) -> Path:
    """``<path>.partial``: where a store is written before it is renamed into place."""
    path = Path(path)
    return path.with_name(path.name + ".partial")


def store_bytes(rows: Sequence[StructureResult]) -> int:
    """Bytes these rows take in the store (datasets only; HDF5's metadata is small beside them)."""
    strings = sum(layout.width for layout in DATASETS.values())
    total = 0
    for r in rows:
        floats = r.eigenvalues.size + 4 * r.n_kpoints + 4 * r.n_atoms + 9 + len(SPECTRA_SCALARS)
        floats += sum(np.size(v) for v in r.fingerprints.values())
        total += 8 * floats + len(r.properties.encode("utf-8")) + strings + 40
    return total


def check_space(path: Path, needed: int) -> None:
    """StoreError if the file system of `path` has less than `needed` bytes (plus 5 % and 1 MiB) free."""
    try:
        fs = os.statvfs(path.parent)
    except OSError:
        return  # cannot tell: the write itself will say
    free = fs.f_bavail * fs.f_frsize
    if free < needed * 1.05 + (1 << 20):
        raise StoreError(
            f"not enough space for the store {path}: it needs about {needed / 1e6:.1f} MB and "
            f"{free / 1e6:.1f} MB are free"
        )


def write_store_atomically(
    path: Any,
    rows: Sequence[StructureResult],
    lo: int,
    n_total: int,
    header: StoreHeader,
    fingerprint_meta: Mapping[str, FingerprintMeta],
    comm: Any = None,
) -> int:
    """Write the store `path` whole or not at all (collective over `comm`); return its size in bytes.

    The store is written as `partial_path(path)` (a partial file of an earlier attempt is removed
    first) after checking the file system has room for it, then renamed to `path` (replacing it).
    With `writes_collectively(comm)` every rank passes its block of rows [lo, lo + len(rows)) and
    the ranks write together (`write_store`); otherwise rank 0 passes every row (lo 0) and writes
    alone, and the rows of the other ranks are ignored.

    Raises
    ------
    StoreError
        On every rank (``agreed``) when there is not enough space or any write fails (full disk,
        quota, permission): the partial file is then removed and `path` is left as it was.
    """
    path = Path(path)
    tmp = partial_path(path)
    parallel = writes_collectively(comm)
    needed = store_bytes(rows) if parallel or comm is None or comm.rank == 0 else 0
    if comm is not None and comm.size > 1:
        needed = sum(comm.allgather(needed))

    def _prepare() -> None:
        tmp.unlink(missing_ok=True)
        check_space(tmp, needed)

    try:
        root_call(comm, _prepare)
        if parallel:
            all_call(comm, lambda: write_store(tmp, rows, lo, n_total, header, fingerprint_meta, comm))
        else:
            root_call(comm, lambda: write_store(tmp, rows, 0, n_total, header, fingerprint_meta, None))
    except StoreError:
        root_call(comm, lambda: tmp.unlink(missing_ok=True))
        raise

    def _rename() -> int:
        os.replace(tmp, path)
        return path.stat().st_size

    return root_call(comm, _rename)
