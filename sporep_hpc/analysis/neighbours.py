"""Exact k nearest neighbours between fingerprints (DESIGN §8.5), in MPI tiles, without an N × N matrix.

Every row's k nearest other rows (self excluded), nearest first, for the metrics of
`sporep_hpc.analysis.similarity` (euclidean, cosine, tanimoto, wasserstein). Ties are broken by the
smaller row index: the neighbours of a row are the k smallest (distance, index) pairs, a total order,
so the result is unique.

How it is computed:

* The distance tiles are those of `similarity.tile_grid`: the upper triangle of ``tile`` × ``tile``
  blocks, dealt round-robin to the ranks. Each tile is computed by one rank with the same inputs
  (`similarity.pairwise_distances`, the same kernels), so every distance has the same bits at any rank
  count, and d(i, j) = d(j, i) exactly (a tile serves its rows and, transposed, its columns).
* Each rank keeps, for every row, the k best (distance, index) pairs of the tiles it computed
  (``(n, k)`` arrays), updated tile by tile by the kernel `_ext.distances.topk_block`; memory is
  O(n·k) plus one tile, never an n × n matrix.
* The partial lists are merged by row blocks (`block_range`, an all-to-all) and the merged lists are
  gathered on every rank. The merge keeps the k smallest pairs of a union of disjoint candidate sets,
  which does not depend on how the pairs were split over the ranks: 1, 2 or 3 ranks give identical
  arrays.
* The rows may come from an h5py dataset instead of an array (`nearest_neighbours` with ``x`` a
  dataset): they are then read tile by tile (out of core); only the (n, k) lists live in memory.

``k`` must be at most n − 1 (n − 0 for queries, `query_neighbours`): a larger ``k`` is refused with a
ParameterError rather than clipped, so a stored ``(n, k)`` array always has exactly k real neighbours.

Store layout (written by `compute_neighbours`)::

    /neighbours/<fingerprint>_<metric>/  index (N, k) int64: store rows of the neighbours, nearest first;
                                         distance (N, k) float64 (metric units, eV for wasserstein);
                                         attrs: metric, fingerprint, k, tile, created
                                         rows of structures without a fingerprint: index -1, distance NaN

Communicators are arguments (``comm=None`` means serial); this module does not import mpi4py or h5py.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._ext import load
from .._validation import check_choice, check_interval
from ..agreement import all_call
from ..errors import ParameterError, StoreError
from ..fingerprints import source_kind
from ..parallel.schedule import block_range
from ..store.lock import locked
from ..store.schema import GROUP_LAYOUT, timestamp
from ..store.writer import create_dataset
from ..threads import resolve_threads
from .similarity import METRICS, pairwise_distances, tile_grid, window_offsets_from_attrs

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TILE",
    "GROUP",
    "Neighbours",
    "NeighboursRecord",
    "QueryResult",
    "compute_neighbours",
    "nearest_neighbours",
    "query_fingerprints",
    "query_neighbours",
    "query_store",
    "read_neighbours",
]

GROUP = "neighbours"
#: Tile edge (rows). Larger than similarity's: each tile is prepared afresh (`pairwise_distances`) and the
#: top-k update reads it twice. Measured on 8000 x 1024 random vectors, euclidean, k = 10, one core:
#: 512 -> 6.5 s, 1024 -> 4.9 s, 2048 -> 7.2 s.
DEFAULT_TILE = 1024
#: Index of an empty slot of a k-best list (larger than any row index, so every real pair precedes it).
_EMPTY = np.iinfo(np.int64).max


@dataclass(frozen=True)
class Neighbours:
    """The k nearest rows of each row (or query), nearest first.

    Attributes
    ----------
    index : ndarray of shape (n, k), int64
        Row numbers of the neighbours (of the searched matrix), ties by the smaller number.
    distance : ndarray of shape (n, k), float64
        Their distances, ascending along each row (metric units; eV for wasserstein).
    metric : str
    """

    index: np.ndarray
    distance: np.ndarray
    metric: str


# ---- validation --------------------------------------------------------------------------------------


def _rows_shape(name: str, x: Any) -> tuple[Any, tuple[int, int]]:
    """`x` as C float64 rows checked finite, or (out of core) a 2-D dataset left as it is."""
    if not isinstance(x, np.ndarray) and hasattr(x, "shape") and hasattr(x, "__getitem__"):
        shape = tuple(int(s) for s in x.shape)
        if len(shape) != 2:
            raise ParameterError(f"{name} must be 2-D (n_structures, n_features); got shape {shape}")
        return x, shape
    arr = np.ascontiguousarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ParameterError(f"{name} must be a 2-D array (n_structures, n_features); got shape {arr.shape}")
    return _check_finite(name, arr, 0), arr.shape


def _check_finite(name: str, rows: np.ndarray, first: int) -> np.ndarray:
    """`rows` (rows first, first + 1, ... of `name`) unless one holds a NaN or an infinity."""
    if not np.all(np.isfinite(rows)):
        bad = np.argwhere(~np.isfinite(rows))[0]
        value = float(rows[tuple(bad)])
        raise ParameterError(f"{name} must be finite; row {first + bad[0]} feature {bad[1]} is {value!r}")
    return rows


def _read(name: str, x: Any, lo: int, hi: int) -> np.ndarray:
    """Rows [lo, hi) of `x`; rows of a dataset (out of core) are checked here, arrays were checked whole."""
    if isinstance(x, np.ndarray):
        return x[lo:hi]
    return _check_finite(name, np.ascontiguousarray(x[lo:hi], dtype=np.float64), lo)


def _check_k(k: int, largest: int, what: str) -> int:
    if largest < 1:
        raise ParameterError(f"{what} needs at least one candidate row; there are none")
    check_interval("k", k, 1, largest, integer=True)
    return int(k)


# ---- tiles and k-best lists --------------------------------------------------------------------------


def _empty_lists(n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full((n, k), np.inf), np.full((n, k), _EMPTY, dtype=np.int64)


def _merge_tile(block, row0, col0, *, transpose, skip_self, best_d, best_i, n_threads) -> None:
    """Merge one distance tile into the k-best lists of its rows (or, `transpose`, its columns)."""
    topk = load("distances").topk_block
    status = topk(block=block, row0=row0, col0=col0, transpose=transpose, skip_self=skip_self, best_d=best_d,
                  best_i=best_i, n_threads=n_threads)
    if status != 0:
        raise RuntimeError(f"top-k kernel failed with status {status} (tile at row {row0}, column {col0})")


def _combine(best_d: np.ndarray, best_i: np.ndarray, k: int, comm) -> tuple[np.ndarray, np.ndarray]:
    """The k smallest (distance, index) pairs of every row over the ranks' partial lists, on every rank.

    Each rank receives the partial lists of its block of rows (`block_range`) from every rank, keeps the
    k smallest pairs (lexicographic: distance, then index) and the blocks are gathered on all ranks.
    """
    if comm is None or comm.size == 1:
        return best_d, best_i
    n = best_d.shape[0]
    bounds = [block_range(n, comm.size, r) for r in range(comm.size)]
    got = comm.alltoall([(best_d[lo:hi], best_i[lo:hi]) for lo, hi in bounds])
    d = np.concatenate([g[0] for g in got], axis=1)
    i = np.concatenate([g[1] for g in got], axis=1)
    order = np.lexsort((i, d), axis=1)[:, :k]
    mine = (np.take_along_axis(d, order, axis=1), np.take_along_axis(i, order, axis=1))
    parts = comm.allgather(mine)
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _finish(best_d: np.ndarray, best_i: np.ndarray, metric: str) -> Neighbours:
    unfilled = np.flatnonzero(np.any(best_i == _EMPTY, axis=1))
    if unfilled.size:  # only NaN distances are never inserted (finite rows with overflowing products)
        raise ParameterError(
            f"{metric} distances of row {unfilled[0]} are not numbers (NaN): fingerprint values too large?"
        )
    return Neighbours(best_i, best_d, metric)


def _self_lists(x, n, k, metric, kw, comm, tile, n_threads) -> tuple[np.ndarray, np.ndarray]:
    """This rank's partial k-best lists over its tiles of `tile_grid` (rows read tile by tile)."""
    size, rank = (1, 0) if comm is None else (comm.size, comm.rank)
    best_d, best_i = _empty_lists(n, k)
    held = (-1, None)  # the row block of the current tile row, read once per tile row
    for t in tile_grid(n, tile, size, rank):
        if held[0] != t.r0:
            held = (t.r0, _read("x", x, t.r0, t.r1))
        a = held[1]
        lists = {"best_d": best_d[t.r0 : t.r1], "best_i": best_i[t.r0 : t.r1], "n_threads": n_threads}
        if t.diagonal:
            block = pairwise_distances(a, None, metric, n_threads=n_threads, **kw)
            _merge_tile(block, t.r0, t.c0, transpose=False, skip_self=True, **lists)
            continue
        block = pairwise_distances(a, _read("x", x, t.c0, t.c1), metric, n_threads=n_threads, **kw)
        _merge_tile(block, t.r0, t.c0, transpose=False, skip_self=False, **lists)
        _merge_tile(
            block, t.r0, t.c0, transpose=True, skip_self=False, best_d=best_d[t.c0 : t.c1],
            best_i=best_i[t.c0 : t.c1], n_threads=n_threads,
        )
    return best_d, best_i


def nearest_neighbours(
    x: Any,
    k: int,
    metric: str = "cosine",
    *,
    energies: np.ndarray | None = None,
    window_offsets: Sequence[int] | np.ndarray | None = None,
    comm: Any = None,
    tile: int = DEFAULT_TILE,
    n_threads: int | None = None,
) -> Neighbours:
    """The k nearest other rows of every row of `x`, computed in tiles shared by the ranks of `comm`.

    Every rank of `comm` calls this and gets the same result.

    Parameters
    ----------
    x : array_like of shape (n, n_features), float64, or an h5py Dataset
        Fingerprints, one structure per row. A dataset is read tile by tile (out of core; its values
        are checked finite tile by tile).
    k : int
        Neighbours per row, in [1, n − 1] (a larger k is refused, not clipped).
    metric : {"euclidean", "cosine", "tanimoto", "wasserstein"}
    energies, window_offsets : see `similarity.pairwise_distances` (wasserstein only).
    comm : mpi4py communicator, optional
        None means one process.
    tile : int
        Tile edge in rows; fixed by the caller, never derived from the rank count.
    n_threads : int, optional
        OpenMP threads per rank.

    Returns
    -------
    Neighbours
        index (n, k) row numbers and distance (n, k), nearest first, ties by the smaller row number;
        identical for any number of ranks.
    """
    check_choice("metric", metric, METRICS)
    check_interval("tile", tile, 1, None, integer=True)
    threads = resolve_threads(n_threads)
    x, (n, _) = _rows_shape("x", x)
    k = _check_k(k, n - 1, "nearest neighbours")
    kw = {"energies": energies, "window_offsets": window_offsets}
    best_d, best_i = all_call(comm, lambda: _self_lists(x, n, k, metric, kw, comm, int(tile), threads))
    return _finish(*_combine(best_d, best_i, k, comm), metric)


def query_neighbours(
    queries: Any,
    x: Any,
    k: int,
    metric: str = "cosine",
    *,
    energies: np.ndarray | None = None,
    window_offsets: Sequence[int] | np.ndarray | None = None,
    comm: Any = None,
    tile: int = DEFAULT_TILE,
    n_threads: int | None = None,
) -> Neighbours:
    """The k nearest rows of `x` to each row of `queries` (a query equal to a row finds it at distance 0).

    Parameters
    ----------
    queries : array_like of shape (m, n_features), float64
    x : array_like of shape (n, n_features), float64, or an h5py Dataset (read tile by tile)
    k : int
        In [1, n].
    metric, energies, window_offsets, comm, tile, n_threads : see `nearest_neighbours`.

    Returns
    -------
    Neighbours
        index (m, k) rows of `x` and distance (m, k), nearest first, ties by the smaller row; identical
        for any number of ranks (the tiles of queries × rows are dealt round-robin).
    """
    check_choice("metric", metric, METRICS)
    check_interval("tile", tile, 1, None, integer=True)
    threads = resolve_threads(n_threads)
    q, (m, f) = _rows_shape("queries", queries)
    x, (n, fx) = _rows_shape("x", x)
    if f != fx:
        raise ParameterError(f"queries must have {fx} features like the searched rows; got {f}")
    k = _check_k(k, n, "a query")
    kw = {"energies": energies, "window_offsets": window_offsets}
    tile = int(tile)

    def lists() -> tuple[np.ndarray, np.ndarray]:
        size, rank = (1, 0) if comm is None else (comm.size, comm.rank)
        best_d, best_i = _empty_lists(m, k)
        row_blocks = range(math.ceil(m / tile))
        col_blocks = range(math.ceil(n / tile))
        for t, (i, j) in enumerate(itertools.product(row_blocks, col_blocks)):
            if t % size != rank:
                continue
            r0, r1, c0, c1 = i * tile, min(m, (i + 1) * tile), j * tile, min(n, (j + 1) * tile)
            block = pairwise_distances(q[r0:r1], _read("x", x, c0, c1), metric, n_threads=threads, **kw)
            _merge_tile(
                block, r0, c0, transpose=False, skip_self=False, best_d=best_d[r0:r1], best_i=best_i[r0:r1],
                n_threads=threads,
            )
        return best_d, best_i

    best_d, best_i = all_call(comm, lists)
    return _finish(*_combine(best_d, best_i, k, comm), metric)


# ---- the store-level job: /fingerprints/<name> in, /neighbours/<name> out ----------------------------


@dataclass(frozen=True)
class NeighboursRecord:
    """A /neighbours/<name> group, aligned with the store rows.

    Attributes
    ----------
    name : str
        Group name (``<fingerprint>_<metric>``).
    index : ndarray of shape (N, k), int64
        Store rows of the neighbours of each store row, nearest first; -1 for rows without a fingerprint.
    distance : ndarray of shape (N, k), float64
        Their distances (eV for wasserstein); NaN for rows without a fingerprint.
    ids : list of str
        Structure ids of all N store rows.
    attrs : dict
        metric, fingerprint, k, tile, created.
    """

    name: str
    index: np.ndarray
    distance: np.ndarray
    ids: list
    attrs: dict

    def lists(self) -> dict[str, list[tuple[str, float]]]:
        """{id: [(neighbour id, distance), ...]} for every row that has neighbours."""
        out = {}
        for r, sid in enumerate(self.ids):
            if self.index.shape[1] and self.index[r, 0] >= 0:
                pairs = zip(self.index[r], self.distance[r], strict=True)
                out[sid] = [(self.ids[j], float(d)) for j, d in pairs]
        return out


def _usable_rows(store, fingerprint: str, mix_kinds: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict, list]:
    """(values of the usable rows, their store rows, energies, fingerprint attrs, all ids); InputError
    when the usable rows are of different kinds, unless `mix_kinds` (`store.reader.check_kinds`)."""
    from ..store import STATUS_DONE
    from ..store.reader import check_kinds

    values, energies, attrs = store.fingerprints(fingerprint)
    usable = (store.status == STATUS_DONE) & np.all(np.isfinite(values), axis=1)
    rows = np.flatnonzero(usable).astype(np.int64)
    check_kinds(store.sources, rows, f"{store.path}: neighbours of fingerprint {fingerprint!r}", mix_kinds)
    return np.ascontiguousarray(values[rows]), rows, energies, attrs, store.ids


def _write_group(path: Path, name: str, index: np.ndarray, distance: np.ndarray, attrs: dict, comm) -> None:
    """Create /neighbours/<name> (replacing it) and write the (N, k) arrays every rank holds.

    With mpio every rank creates the same datasets and writes its `block_range` of rows collectively
    (an empty selection when it has none); without it (SPOREP_FORCE_SERIAL_HDF5=1, or h5py without MPI)
    rank 0 writes everything.
    """
    with locked(path, comm):  # one writer per store
        from ..store.h5 import mpio_available, open_h5, write_rows

        size, rank = (1, 0) if comm is None else (comm.size, comm.rank)
        parallel = size > 1 and mpio_available()
        writer = parallel or rank == 0

        def create():
            if not writer:
                return None
            f = open_h5(path, "r+", comm if parallel else None)
            try:
                grp = f.require_group(GROUP)
                if name in grp:
                    del grp[name]
                g = grp.create_group(name)
                for key, value in attrs.items():
                    g.attrs[key] = value
                layout = GROUP_LAYOUT[GROUP]  # dtypes from the store's table
                dsets = (
                    create_dataset(g, "index", layout["index"], shape=index.shape),
                    create_dataset(g, "distance", layout["distance"], shape=distance.shape),
                )
                dsets[1].attrs["units"] = "eV" if attrs["metric"] == "wasserstein" else "1"
            except (OSError, KeyError, ValueError) as exc:
                f.close()
                raise StoreError(f"{path}: cannot create /{GROUP}/{name}: {exc}") from exc
            return f, dsets

        opened = all_call(comm, create)

        def write():
            if opened is None:
                return
            f, dsets = opened
            lo, hi = block_range(index.shape[0], size, rank) if parallel else (0, index.shape[0])
            try:
                write_rows(dsets[0], lo, index[lo:hi])
                write_rows(dsets[1], lo, distance[lo:hi])
            finally:
                f.close()

        all_call(comm, write)  # every rank returns once the group is complete (or learns that it failed)


def compute_neighbours(
    path: Any,
    fingerprint: str,
    k: int,
    metric: str = "cosine",
    *,
    comm: Any = None,
    tile: int = DEFAULT_TILE,
    n_threads: int | None = None,
    mix_kinds: bool = False,
) -> NeighboursRecord:
    """The k nearest neighbours of every structure of a store, written to /neighbours/<fingerprint>_<metric>.

    Every rank of `comm` calls this. Structures without a fingerprint (failed, or non-finite values) are
    neither searched nor found; their rows hold index -1 and distance NaN.

    Parameters
    ----------
    path : path
        The store (must hold /fingerprints/<fingerprint>); modified in place.
    fingerprint : str
    k : int
        Neighbours per structure, in [1, n − 1] for n structures with a fingerprint.
    metric : {"euclidean", "cosine", "tanimoto", "wasserstein"}
    comm, tile, n_threads : see `nearest_neighbours`.
    mix_kinds : bool
        Compare rows of different kinds (operator spectra and DFT bands; refused by default).

    Returns
    -------
    NeighboursRecord
        What was written (the same on every rank).
    """
    from ..store import open_store

    check_choice("metric", metric, METRICS)
    path = Path(path)
    name = f"{fingerprint}_{metric}"

    def read():
        with open_store(path) as store:
            return _usable_rows(store, fingerprint, mix_kinds)

    values, rows, energies, attrs, ids = all_call(comm, read)
    if rows.size < len(ids) and (comm is None or comm.rank == 0):
        log.warning("neighbours %s: %d of %d structures have no fingerprint and are left out",
                    name, len(ids) - rows.size, len(ids))
    offsets = window_offsets_from_attrs(attrs, energies) if metric == "wasserstein" else None
    found = nearest_neighbours(
        values, k, metric, energies=energies, window_offsets=offsets, comm=comm, tile=tile,
        n_threads=n_threads,
    )
    index = np.full((len(ids), found.index.shape[1]), -1, dtype=np.int64)
    distance = np.full(index.shape, np.nan)
    index[rows] = rows[found.index]
    distance[rows] = found.distance
    created = timestamp() if comm is None else comm.bcast(timestamp(), root=0)
    group_attrs = {
        "metric": metric, "fingerprint": fingerprint, "k": int(k), "tile": int(tile), "created": created,
    }
    _write_group(path, name, index, distance, group_attrs, comm)
    return NeighboursRecord(name, index, distance, ids, group_attrs)


def read_neighbours(path: Any, name: str) -> NeighboursRecord:
    """Read /neighbours/<name> of a store (one process)."""
    from ..store import open_store

    with open_store(path) as store:
        f = store.file
        key = f"{GROUP}/{name}"
        if key not in f:
            stored = ", ".join(sorted(f[GROUP])) if GROUP in f else "none"
            raise StoreError(f"{path}: no neighbours {name!r}; stored: {stored}")
        g = f[key]
        attrs = {a: (v.decode() if isinstance(v, bytes) else v) for a, v in g.attrs.items()}
        index, distance = g["index"][()], g["distance"][()]
        ids = store.ids
    if index.shape != distance.shape or index.shape[0] != len(ids):
        raise StoreError(
            f"{path}: /{GROUP}/{name} has index {index.shape} and distance {distance.shape} "
            f"for {len(ids)} rows"
        )
    return NeighboursRecord(name, index, distance, ids, attrs)


# ---- queries: new structures or band files against a store ------------------------------------------


@dataclass(frozen=True)
class QueryResult:
    """The stored structures nearest to each query.

    Attributes
    ----------
    ids : list of str
        Ids of the queries that have a fingerprint, in input order.
    neighbours : Neighbours
        index (m, k) store rows and distance (m, k), nearest first.
    stored_ids : list of str
        Ids of all store rows (``stored_ids[neighbours.index[q, j]]``).
    failed : dict of str to str
        Queries whose fingerprint could not be computed, with the reason.
    """

    ids: list
    neighbours: Neighbours
    stored_ids: list
    failed: dict

    def as_dict(self) -> dict[str, list[list]]:
        """{query id: [[stored id, distance], ...]} (the CLI's --json)."""
        nb = self.neighbours
        return {
            q: [[self.stored_ids[j], float(d)] for j, d in zip(nb.index[r], nb.distance[r], strict=True)]
            for r, q in enumerate(self.ids)
        }


def _store_setup(parameters_json: str, spec_json: str | None, fingerprint: str):
    """(RunParameters, FingerprintSet of `fingerprint`) from a store's root `parameters` and the spec attr."""
    from ..config import RunParameters
    from ..fingerprints import FingerprintSpec
    from ..pipeline import FingerprintSet

    try:
        data = json.loads(parameters_json)
        data.pop("fingerprint_specs", None)
        data["fingerprints"] = tuple(data["fingerprints"])
        params = RunParameters(**data)
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"the store's parameters cannot be used for new structures: {exc}") from exc
    if not spec_json:
        raise StoreError(f"fingerprint {fingerprint!r} has no stored specification (attribute spec)")
    return params, FingerprintSet({fingerprint: FingerprintSpec.from_json(spec_json)})


def query_fingerprints(
    path: Any, fingerprint: str, inputs: Sequence[str], *, comm: Any = None, n_threads: int | None = None,
    kinds: Sequence[str] | None = None,
) -> tuple[list[str], np.ndarray, dict[str, str]]:
    """Fingerprints of new structures or band files, computed with the store's own parameters.

    The per-structure pipeline of `sporep-hpc run` (`parallel.plan.plan_record`, `pipeline.compute_record`);
    the inputs are shared by the ranks in blocks and gathered on every rank. `kinds`: the kinds of
    spectra accepted (`sporep_hpc.fingerprints.KINDS`; None: any); an input of another kind fails.

    Returns
    -------
    ids : list of str
        Inputs with a fingerprint, in input order.
    values : ndarray of shape (len(ids), n_features), float64
    failed : dict of str to str
        The other inputs with their reason.
    """
    from ..inputs.resolve import resolve_inputs
    from ..parallel.plan import plan_record
    from ..pipeline import compute_record
    from ..store import open_store

    threads = resolve_threads(n_threads)

    def setup():
        with open_store(path) as store:
            parameters = store.attrs.get("parameters")
            _, _, attrs = store.fingerprints(fingerprint)
        if parameters is None:
            raise StoreError(f"{path}: no root attribute 'parameters'")
        return (*_store_setup(parameters, attrs.get("spec"), fingerprint), resolve_inputs(inputs))

    params, fps, records = all_call(comm, setup)
    size, rank = (1, 0) if comm is None else (comm.size, comm.rank)
    lo, hi = block_range(len(records), size, rank)
    mine = []
    for i in range(lo, hi):
        entry = plan_record(i, records[i], params)
        if entry.kind == "failed":
            mine.append((records[i].id, None, entry.error))
            continue
        result, _ = compute_record(i, records[i], params, fps, threads)
        kind = source_kind(result.source)
        if kinds is not None and result.error == "" and kind not in kinds:
            reason = (f"{kind} spectrum, the store's rows compared are {' and '.join(kinds)} spectra: "
                      "compare one kind at a time (DESIGN.md §8.2), or pass --mix-kinds to compare anyway")
            mine.append((result.id, None, reason))
            continue
        mine.append((result.id, result.fingerprints.get(fingerprint), result.error))
    done = [item for part in ([mine] if comm is None else comm.allgather(mine)) for item in part]
    ids = [qid for qid, v, _ in done if v is not None]
    failed = {qid: err for qid, v, err in done if v is None}
    n_features = len(fps.specs[fingerprint].energies)
    values = np.array([v for _, v, _ in done if v is not None], dtype=np.float64)
    values = values.reshape(len(ids), n_features)
    return ids, values, failed


def query_store(
    path: Any,
    inputs: Sequence[str],
    k: int,
    metric: str = "cosine",
    *,
    fingerprint: str,
    comm: Any = None,
    tile: int = DEFAULT_TILE,
    n_threads: int | None = None,
    mix_kinds: bool = False,
) -> QueryResult:
    """The k stored structures nearest to each input (structure files, directories, band files, stores).

    Read-only: nothing is written to the store. Every rank of `comm` calls this and gets the same result.

    Parameters
    ----------
    path : path
        The store.
    inputs : sequence of str
        What `sporep-hpc run` accepts; fingerprints are computed with the store's parameters.
    k : int
        In [1, n] for n stored structures with a fingerprint.
    metric, fingerprint, comm, tile, n_threads, mix_kinds : see `compute_neighbours` (`mix_kinds`: the
        stored rows searched).
    """
    from ..store import open_store

    check_choice("metric", metric, METRICS)

    def read():
        with open_store(path) as store:
            found = _usable_rows(store, fingerprint, mix_kinds)
            return *found, sorted({source_kind(store.sources[int(r)]) for r in found[1]} - {""})

    values, rows, energies, attrs, stored_ids, kinds = all_call(comm, read)
    _check_k(k, rows.size, "a query")
    ids, queries, failed = query_fingerprints(path, fingerprint, inputs, comm=comm, n_threads=n_threads,
                                              kinds=None if mix_kinds or not kinds else kinds)
    if comm is None or comm.rank == 0:
        for qid, reason in failed.items():
            log.error("query %s: no fingerprint: %s", qid, reason)
    offsets = window_offsets_from_attrs(attrs, energies) if metric == "wasserstein" else None
    if not ids:
        empty = Neighbours(np.zeros((0, k), dtype=np.int64), np.zeros((0, k)), metric)
        return QueryResult([], empty, stored_ids, failed)
    found = query_neighbours(
        queries, values, k, metric, energies=energies, window_offsets=offsets, comm=comm, tile=tile,
        n_threads=n_threads,
    )
    return QueryResult(ids, Neighbours(rows[found.index], found.distance, metric), stored_ids, failed)
