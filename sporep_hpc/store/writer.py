"""Writing a complete store: preallocated datasets, one contiguous block of rows per rank.

`write_store` is collective over `comm` (all ranks call it with identical `header`
and `fingerprint_meta`); each rank passes the rows [lo, hi) it owns (possibly none).
Sizes are allgathered, ragged offsets come from an exclusive scan, strings are
fixed width, nothing is compressed. With `comm` None (or one rank) it is a plain
serial writer: that is the fallback path, where rank 0 passes every row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import StoreError
from .h5 import open_h5, write_rows
from .schema import (
    ERROR_WIDTH,
    FORMULA_WIDTH,
    ID_WIDTH,
    SCHEMA_VERSION,
    SPECTRA_SCALARS,
    UNITS,
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


def _sizes(rows: Sequence[StructureResult]) -> np.ndarray:
    out = np.zeros((len(rows), 4), dtype=np.int64)
    for i, r in enumerate(rows):
        out[i] = (r.n_atoms, r.n_kpoints, r.eigenvalues.size, len(r.properties.encode("utf-8")))
    return out


def _offsets(sizes: np.ndarray, base: int) -> np.ndarray:
    return base + np.concatenate(([0], np.cumsum(sizes)))[:-1]


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
        fp_values = {n: _fingerprint_block(rows, n, len(fingerprint_meta[n].energies)) for n in names}
    except StoreError as exc:
        problem = str(exc)
    if comm is not None and comm.size > 1:  # every rank agrees before the first collective
        problem = next((p for p in comm.allgather(problem) if p), "")
    if problem:
        raise StoreError(f"cannot write {path}: {problem}")
    sizes = _sizes(rows)
    local = sizes.sum(axis=0) if len(rows) else np.zeros(4, dtype=np.int64)
    if comm is not None and comm.size > 1:
        counts = np.array(comm.allgather((lo, len(rows), *local.tolist())), dtype=np.int64)
        base = comm.exscan(local.copy())  # collective on every rank; rank 0 gets None
        base = np.zeros(4, dtype=np.int64) if comm.rank == 0 else base
        starts = np.concatenate(([0], np.cumsum(counts[:, 1])))[:-1]
        held = counts[:, 1] > 0
        if counts[:, 1].sum() != n_total or not np.array_equal(counts[held, 0], starts[held]):
            blocks = counts[:, :2].tolist()
            raise StoreError(f"row blocks (lo, n) {blocks} do not tile [0, {n_total}) in rank order")
        total = counts[:, 2:].sum(axis=0)
    else:
        if len(rows) != n_total or lo != 0:
            raise StoreError(f"a serial write needs all {n_total} rows from 0; got {len(rows)} from {lo}")
        base = np.zeros(4, dtype=np.int64)
        total = local
    n_atoms_total, n_k_total, n_eig_total, n_prop_total = (int(x) for x in total)
    atom_off = _offsets(sizes[:, 0], int(base[0]))
    k_off = _offsets(sizes[:, 1], int(base[1]))
    e_off = _offsets(sizes[:, 2], int(base[2]))
    p_off = _offsets(sizes[:, 3], int(base[3]))
    last = lo + len(rows) == n_total and len(rows) > 0

    def cat(arrays, shape_tail, dtype):
        if not arrays:
            return np.zeros((0, *shape_tail), dtype=dtype)
        return np.concatenate([np.asarray(a, dtype=dtype).reshape(-1, *shape_tail) for a in arrays])

    def with_end(offsets, end):
        return np.append(offsets, end) if last else offsets

    with open_h5(path, "w", comm) as f:
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["sporep_hpc_version"] = header.version
        f.attrs["created"] = header.created
        f.attrs["parameters"] = header.parameters_json
        f.attrs["n_ranks"] = int(header.n_ranks)
        n = n_total
        g = f.create_group("structures")
        if header.inputs_digest:
            g.attrs["inputs_digest"] = header.inputs_digest
        s = f.create_group("spectra")
        fg = f.create_group("fingerprints")
        dsets = {
            "structures/id": g.create_dataset("id", (n,), dtype=f"S{ID_WIDTH}"),
            "structures/formula": g.create_dataset("formula", (n,), dtype=f"S{FORMULA_WIDTH}"),
            "structures/n_atoms": g.create_dataset("n_atoms", (n,), dtype=np.int64),
            "structures/cell": g.create_dataset("cell", (n, 3, 3), dtype=np.float64),
            "structures/status": g.create_dataset("status", (n,), dtype=np.int8),
            "structures/error": g.create_dataset("error", (n,), dtype=f"S{ERROR_WIDTH}"),
            "structures/atoms_offset": g.create_dataset("atoms_offset", (n + 1,), dtype=np.int64),
            "structures/numbers": g.create_dataset("numbers", (n_atoms_total,), dtype=np.int64),
            "structures/positions": g.create_dataset("positions", (n_atoms_total, 3), dtype=np.float64),
            "structures/properties_offset": g.create_dataset(
                "properties_offset", (n + 1,), dtype=np.int64
            ),
            "structures/properties": g.create_dataset("properties", (n_prop_total,), dtype=np.uint8),
            "spectra/kpoints_offset": s.create_dataset("kpoints_offset", (n + 1,), dtype=np.int64),
            "spectra/kpoints": s.create_dataset("kpoints", (n_k_total, 3), dtype=np.float64),
            "spectra/weights": s.create_dataset("weights", (n_k_total,), dtype=np.float64),
            "spectra/bands_offset": s.create_dataset("bands_offset", (n + 1,), dtype=np.int64),
            "spectra/n_bands": s.create_dataset("n_bands", (n,), dtype=np.int64),
            "spectra/eigenvalues": s.create_dataset("eigenvalues", (n_eig_total,), dtype=np.float64),
        }
        for name in SPECTRA_SCALARS:
            dsets[f"spectra/{name}"] = s.create_dataset(name, (n,), dtype=np.float64)
        for key, unit in UNITS.items():
            dsets[key].attrs["units"] = unit
        dsets["structures/properties"].attrs["encoding"] = "UTF-8 JSON text per structure (properties_offset)"
        fp_dsets = {}
        for name in names:
            meta = fingerprint_meta[name]
            energies = np.asarray(meta.energies, dtype=np.float64)
            grp = fg.create_group(name)
            for key in sorted(meta.attrs):
                value = meta.attrs[key]
                grp.attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
            e = grp.create_dataset("energies", (len(energies),), dtype=np.float64)
            e.attrs["units"] = "eV"
            v = grp.create_dataset("values", (n, len(energies)), dtype=np.float64)
            v.attrs["units"] = "states/eV/cell"
            fp_dsets[name] = (e, v, energies)

        def w(dset, start, data):  # write, then agree: a failure on any rank stops every rank here
            agree(comm, path, lambda: write_rows(dset, start, data))

        ids = np.array([to_fixed(r.id, ID_WIDTH) for r in rows], dtype=f"S{ID_WIDTH}")
        w(dsets["structures/id"], lo, ids)
        w(
            dsets["structures/formula"],
            lo,
            np.array([to_fixed(r.formula, FORMULA_WIDTH) for r in rows], dtype=f"S{FORMULA_WIDTH}"),
        )
        w(dsets["structures/n_atoms"], lo, sizes[:, 0])
        w(dsets["structures/cell"], lo, cat([r.cell for r in rows], (3, 3), np.float64))
        w(dsets["structures/status"], lo, np.array([r.status for r in rows], dtype=np.int8))
        w(
            dsets["structures/error"],
            lo,
            np.array([to_fixed(r.error, ERROR_WIDTH) for r in rows], dtype=f"S{ERROR_WIDTH}"),
        )
        w(dsets["structures/atoms_offset"], lo, with_end(atom_off, n_atoms_total))
        w(dsets["structures/numbers"], int(base[0]), cat([r.numbers for r in rows], (), np.int64))
        w(dsets["structures/positions"], int(base[0]), cat([r.positions for r in rows], (3,), np.float64))
        w(dsets["structures/properties_offset"], lo, with_end(p_off, n_prop_total))
        props = b"".join(r.properties.encode("utf-8") for r in rows)
        w(dsets["structures/properties"], int(base[3]), np.frombuffer(props, dtype=np.uint8))
        w(dsets["spectra/kpoints_offset"], lo, with_end(k_off, n_k_total))
        w(dsets["spectra/kpoints"], int(base[1]), cat([r.kpoints for r in rows], (3,), np.float64))
        w(dsets["spectra/weights"], int(base[1]), cat([r.weights for r in rows], (), np.float64))
        w(dsets["spectra/bands_offset"], lo, with_end(e_off, n_eig_total))
        w(dsets["spectra/n_bands"], lo, np.array([r.n_bands for r in rows], dtype=np.int64))
        w(dsets["spectra/eigenvalues"], int(base[2]), cat([r.eigenvalues for r in rows], (), np.float64))
        for name in SPECTRA_SCALARS:
            w(dsets[f"spectra/{name}"], lo, np.array([getattr(r, name) for r in rows], dtype=np.float64))
        for name in names:
            e, v, energies = fp_dsets[name]
            w(e, 0, energies if (comm is None or comm.rank == 0) else energies[:0])
            w(v, lo, fp_values[name])
