"""Distance matrices between fingerprints (DESIGN §3 "Distances"), in MPI tiles, and clustering.

Metrics between rows a, b of a fingerprint matrix:

* ``euclidean``   ‖a − b‖₂
* ``cosine``      1 − a·b/(‖a‖‖b‖); two zero vectors 0, one zero vector 1
* ``tanimoto``    1 − a·b/(‖a‖² + ‖b‖² − a·b) (pymatgen's real-valued Tanimoto index as a distance);
  both zero 0
* ``wasserstein`` per window: W₁ between the curves normalised to unit area on the window's energy grid,
  ∫|F_a − F_b| dE with F the cumulative sums (a step function between grid points, as
  `scipy.stats.wasserstein_distance` with the grid as values and the curves as weights); summed over
  windows; a window with zero area in one vector only contributes its width, in both 0. Needs
  non-negative curves.

The tile decomposition depends only on N and the tile size, never on the rank count: each tile is
computed by exactly one rank with the same inputs, so 1, 2 or 3 ranks give bitwise identical matrices.
Only the upper triangle of tiles is computed; diagonal tiles are symmetrised from their upper half.
Communicators are arguments (``comm=None`` means serial); this module does not import mpi4py or h5py.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .._ext import load
from .._validation import check_choice, check_interval
from ..config import METRICS
from ..errors import ParameterError, SporepError, StoreError
from ..threads import resolve_threads

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TILE",
    "METRICS",
    "DistanceTiles",
    "SimilarityResult",
    "Tile",
    "cluster",
    "compute_similarity",
    "distance_matrix",
    "pairwise_distances",
    "tile_grid",
    "window_offsets_from_attrs",
    "window_offsets_from_sizes",
]

LINKAGE_METHODS = ("single", "complete", "average", "weighted", "centroid", "median", "ward")
DEFAULT_TILE = 512


@dataclass(frozen=True)
class Tile:
    """One block of the distance matrix: rows [r0, r1) × columns [c0, c1), with r0 <= c0."""

    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def diagonal(self) -> bool:
        """True for a block on the diagonal (square, r0 == c0)."""
        return self.r0 == self.c0


def tile_grid(n: int, tile: int, size: int = 1, rank: int = 0) -> list[Tile]:
    """The upper-triangle tiles that `rank` of `size` computes (pure; independent of the rank count's
    effect on values).

    Tiles are the blocks (I, J), I <= J, of a grid of `tile` × `tile` blocks over an n × n matrix,
    numbered row-major and dealt round-robin: tile t goes to rank t mod size. Diagonal and
    off-diagonal tiles alternate along each row of blocks, so the work is balanced within one tile.
    """
    check_interval("n", n, 0, None, integer=True)
    check_interval("tile", tile, 1, None, integer=True)
    check_interval("size", size, 1, None, integer=True)
    check_interval("rank", rank, 0, size - 1, integer=True)
    n_blocks = math.ceil(n / tile) if n else 0
    tiles = []
    t = 0
    for i in range(n_blocks):
        for j in range(i, n_blocks):
            if t % size == rank:
                tiles.append(Tile(i * tile, min(n, (i + 1) * tile), j * tile, min(n, (j + 1) * tile)))
            t += 1
    return tiles


def window_offsets_from_sizes(sizes: Sequence[int]) -> np.ndarray:
    """Feature offsets (n_windows + 1,) int32 from the number of energies in each window."""
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1:
        raise ParameterError(f"window sizes must be positive integers; got {sizes!r}")
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)


# ---- preparation (validation at the public edge) ------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    """Rows ready for the kernels; built once per matrix so every tile uses identical inputs."""

    metric: str
    rows: np.ndarray  # (n, f) float64 C: centred rows (euclidean), raw rows, or cumulative sums
    sq: np.ndarray | None  # (n,) squared norms of `rows` (dot metrics)
    step: np.ndarray | None  # (f,) grid steps inside windows (wasserstein)
    offsets: np.ndarray | None  # (n_windows + 1,) int32
    zero: np.ndarray | None  # (n, n_windows) uint8
    widths: np.ndarray | None  # (n_windows,)


def _as_rows(name: str, x: object) -> np.ndarray:
    arr = np.ascontiguousarray(x, dtype=np.float64)
    if arr.ndim != 2:
        raise ParameterError(f"{name} must be a 2-D array (n_structures, n_features); got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ParameterError(f"{name} must be finite; row {bad[0]} feature {bad[1]} is {arr[tuple(bad)]!r}")
    return arr


def _wasserstein_grid(energies: object, offsets: object, n_features: int):
    if energies is None:
        raise ParameterError("metric 'wasserstein' needs the fingerprint energies (n_features,) in eV")
    e = np.ascontiguousarray(energies, dtype=np.float64)
    if e.shape != (n_features,):
        raise ParameterError(f"energies must have shape ({n_features},); got {e.shape}")
    off = (
        np.array([0, n_features], dtype=np.int32)
        if offsets is None
        else np.ascontiguousarray(offsets, dtype=np.int32)
    )
    if off.ndim != 1 or off.size < 2 or off[0] != 0 or off[-1] != n_features or np.any(np.diff(off) < 1):
        raise ParameterError(
            f"window offsets must rise strictly from 0 to n_features={n_features}; got {off.tolist()}"
        )
    step = np.zeros(n_features)
    widths = np.empty(off.size - 1)
    for w, (lo, hi) in enumerate(itertools.pairwise(off)):
        de = np.diff(e[lo:hi])
        if np.any(de <= 0):
            raise ParameterError(f"energies of window {w} must increase strictly")
        step[lo : hi - 1] = de
        widths[w] = e[hi - 1] - e[lo]
    return step, off, widths


def _prepare(x: np.ndarray, metric: str, energies=None, window_offsets=None, centre=None) -> _Prepared:
    if metric == "wasserstein":
        step, off, widths = _wasserstein_grid(energies, window_offsets, x.shape[1])
        if np.any(x < 0):
            raise ParameterError("metric 'wasserstein' needs non-negative fingerprints (a DOS)")
        cdf = np.empty_like(x)
        zero = np.zeros((x.shape[0], off.size - 1), dtype=np.uint8)
        for w, (lo, hi) in enumerate(itertools.pairwise(off)):
            cum = np.cumsum(x[:, lo:hi], axis=1)
            area = cum[:, -1].copy()
            zero[:, w] = area == 0
            area[area == 0] = 1.0
            cdf[:, lo:hi] = cum / area[:, None]
        return _Prepared(metric, cdf, None, step, off, zero, widths)
    rows = x if centre is None else np.ascontiguousarray(x - centre)
    return _Prepared(metric, rows, np.einsum("ij,ij->i", rows, rows), None, None, None, None)


def _block(a: _Prepared, ia: slice, b: _Prepared, ib: slice, n_threads: int) -> np.ndarray:
    """Distances rows[ia] × rows[ib] through the kernel."""
    kernel = load("distances")
    ra = np.ascontiguousarray(a.rows[ia])
    rb = np.ascontiguousarray(b.rows[ib])
    out = np.empty((ra.shape[0], rb.shape[0]))
    if a.metric == "wasserstein":
        status = kernel.wasserstein_block(
            cdf_a=ra, cdf_b=rb, step=a.step, offsets=a.offsets, zero_a=np.ascontiguousarray(a.zero[ia]),
            zero_b=np.ascontiguousarray(b.zero[ib]), widths=a.widths, out=out, n_threads=n_threads,
        )
    else:
        status = kernel.dot_metric_block(
            metric=kernel.METRIC_CODES[a.metric], a=ra, b=rb, sq_a=np.ascontiguousarray(a.sq[ia]),
            sq_b=np.ascontiguousarray(b.sq[ib]), out=out, n_threads=n_threads,
        )
    if status != 0:
        raise RuntimeError(f"distance kernel failed with status {status} (metric {a.metric!r})")
    return out


def _check_common(metric: str, n_threads: int | None) -> int:
    check_choice("metric", metric, METRICS)
    return resolve_threads(n_threads)


def pairwise_distances(
    x: np.ndarray,
    y: np.ndarray | None = None,
    metric: str = "cosine",
    *,
    energies: np.ndarray | None = None,
    window_offsets: Sequence[int] | np.ndarray | None = None,
    n_threads: int | None = None,
) -> np.ndarray:
    """Distances between the rows of `x` and of `y` (default: `x` itself), serial.

    Parameters
    ----------
    x : array_like of shape (n_x, n_features), float64
        Fingerprints, one structure per row.
    y : array_like of shape (n_y, n_features), optional
        Second set; when omitted the result is the symmetric (n_x, n_x) matrix with zero diagonal.
    metric : {"euclidean", "cosine", "tanimoto", "wasserstein"}
    energies : array_like of shape (n_features,), eV
        Energy grid of the features (wasserstein only).
    window_offsets : array_like of int, shape (n_windows + 1,)
        Feature offsets of the concatenated windows (wasserstein only; default one window).
    n_threads : int, optional
        OpenMP threads of the kernel (default from `resolve_threads`).

    Returns
    -------
    ndarray of shape (n_x, n_y), float64
        Distances in the units of the metric (wasserstein: eV).
    """
    threads = _check_common(metric, n_threads)
    xa = _as_rows("x", x)
    if y is None:
        return distance_matrix(
            xa, metric, energies=energies, window_offsets=window_offsets, n_threads=threads
        )
    ya = _as_rows("y", y)
    if ya.shape[1] != xa.shape[1]:
        raise ParameterError(f"y must have {xa.shape[1]} features like x; got {ya.shape[1]}")
    centre = xa.mean(axis=0) if metric == "euclidean" and xa.size else None
    pa = _prepare(xa, metric, energies, window_offsets, centre)
    pb = _prepare(ya, metric, energies, window_offsets, centre)
    return _block(pa, slice(None), pb, slice(None), threads)


class DistanceTiles:
    """The tiles of one symmetric distance matrix that one rank computes.

    Parameters
    ----------
    x : array_like of shape (n, n_features), float64
        All fingerprints (every rank holds them; the N × N matrix itself need not fit in memory).
    metric, energies, window_offsets : see `pairwise_distances`.
    comm : mpi4py communicator, optional
        Ranks share the tiles round-robin (`tile_grid`); None means one rank.
    tile : int
        Tile edge (rows); fixed by the caller, never derived from the rank count.
    n_threads : int, optional
        OpenMP threads per rank.
    """

    def __init__(
        self,
        x: np.ndarray,
        metric: str = "cosine",
        *,
        energies=None,
        window_offsets=None,
        comm=None,
        tile: int = DEFAULT_TILE,
        n_threads: int | None = None,
    ) -> None:
        self.n_threads = _check_common(metric, n_threads)
        check_interval("tile", tile, 1, None, integer=True)
        xa = _as_rows("x", x)
        centre = xa.mean(axis=0) if metric == "euclidean" and xa.size else None
        self.metric = metric
        self.n = xa.shape[0]
        self.tile = int(tile)
        self._prep = _prepare(xa, metric, energies, window_offsets, centre)
        size, rank = (1, 0) if comm is None else (comm.size, comm.rank)
        self.tiles = tile_grid(self.n, self.tile, size, rank)
        # every rank learns how many write rounds there are (the same collectives on every rank)
        counts = [len(self.tiles)] if comm is None else comm.allgather(len(self.tiles))
        self.rounds = max(counts) if counts else 0

    def compute(self, t: Tile) -> np.ndarray:
        """Distances of tile `t`, shape (t.r1 - t.r0, t.c1 - t.c0); diagonal tiles exactly symmetric."""
        out = _block(self._prep, slice(t.r0, t.r1), self._prep, slice(t.c0, t.c1), self.n_threads)
        if t.diagonal:
            upper = np.triu(out, 1)
            out = upper + upper.T
        return out

    def __iter__(self) -> Iterator[tuple[Tile, np.ndarray]]:
        for t in self.tiles:
            yield t, self.compute(t)


def distance_matrix(
    x: np.ndarray,
    metric: str = "cosine",
    *,
    energies=None,
    window_offsets=None,
    comm=None,
    tile: int = DEFAULT_TILE,
    n_threads: int | None = None,
) -> np.ndarray:
    """The full symmetric (n, n) distance matrix in memory, computed in tiles shared by the ranks of
    `comm` and gathered on every rank (for matrices that fit; use the store writer otherwise).

    Returns
    -------
    ndarray of shape (n, n), float64
        Symmetric, zero diagonal; identical bits for any rank count.
    """
    tiles = DistanceTiles(
        x, metric, energies=energies, window_offsets=window_offsets, comm=comm, tile=tile, n_threads=n_threads
    )
    mine = list(tiles)
    parts = [mine] if comm is None else comm.allgather(mine)
    out = np.zeros((tiles.n, tiles.n))
    for rank_tiles in parts:
        for t, block in rank_tiles:
            out[t.r0 : t.r1, t.c0 : t.c1] = block
            out[t.c0 : t.c1, t.r0 : t.r1] = block.T
    return out


def cluster(distance: np.ndarray, method: str = "average") -> np.ndarray:
    """Hierarchical clustering of a symmetric distance matrix (scipy linkage).

    Parameters
    ----------
    distance : ndarray of shape (n, n), float64
        Symmetric with zero diagonal (checked to 1e-12 relative).
    method : str
        scipy linkage method; "ward", "centroid" and "median" assume euclidean distances.

    Returns
    -------
    ndarray of shape (n - 1, 4), float64
        scipy linkage matrix (merged clusters, height, size). Empty (0, 4) when n < 2.
    """
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    check_choice("method", method, LINKAGE_METHODS)
    d = np.asarray(distance, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ParameterError(f"distance must be a square matrix; got shape {d.shape}")
    if d.shape[0] < 2:
        return np.zeros((0, 4))
    scale = max(float(np.abs(d).max()), 1e-300)
    if not np.allclose(d, d.T, rtol=0, atol=1e-12 * scale) or np.any(np.diag(d) != 0):
        raise ParameterError("distance must be symmetric with a zero diagonal")
    return linkage(squareform(d, checks=False), method=method)


# ---- the store-level job: fingerprints in, /similarity/<name> out -------------------------------------


@dataclass(frozen=True)
class SimilarityResult:
    """What `compute_similarity` wrote.

    Attributes
    ----------
    name : str
        Group under /similarity.
    metric, fingerprint : str
    ids : list of str
        Structure ids of the matrix rows (failed structures are left out).
    index : ndarray of shape (n,), int64
        Their store rows.
    linkage : ndarray of shape (n-1, 4) or None
        scipy linkage (None when n > max_linkage or n < 2).
    """

    name: str
    metric: str
    fingerprint: str
    ids: list
    index: np.ndarray
    linkage: np.ndarray | None


def window_offsets_from_attrs(attrs: dict, energies: np.ndarray) -> np.ndarray:
    """Window offsets of a stored fingerprint: from its spec attribute when it lists windows with
    ``n_energies``, else from restarts of the energy grid (a non-increasing step), else one window."""
    import json

    n = int(np.asarray(energies).size)
    spec = attrs.get("spec")
    if isinstance(spec, str):
        try:
            spec = json.loads(spec)
        except ValueError:
            spec = None
    windows = spec.get("windows") if isinstance(spec, dict) else None
    listed = isinstance(windows, list) and bool(windows)
    if listed and all(isinstance(w, dict) and "n_energies" in w for w in windows):
        sizes = [int(w["n_energies"]) for w in windows]
        if sum(sizes) == n:
            return window_offsets_from_sizes(sizes)
    restarts = np.flatnonzero(np.diff(np.asarray(energies, dtype=np.float64)) <= 0) + 1
    return np.concatenate([[0], restarts, [n]]).astype(np.int32)


def compute_similarity(
    path,
    fingerprint: str,
    metric: str = "cosine",
    *,
    name: str | None = None,
    comm=None,
    tile: int = DEFAULT_TILE,
    linkage_method: str = "average",
    max_linkage: int = 20000,
    n_threads: int | None = None,
    mix_kinds: bool = False,
) -> SimilarityResult:
    """Distance matrix of a stored fingerprint, written to /similarity/<name> with its clustering.

    Every rank of `comm` calls this. Each rank reads the fingerprints, computes its tiles
    (`tile_grid`) and the tiles are written collectively (`store.groups.write_similarity`), never
    holding the N × N matrix. Rank 0 then reads the matrix back for the linkage when n <= max_linkage.

    Parameters
    ----------
    path : path
        The store (must hold /fingerprints/<fingerprint>).
    fingerprint : str
        Fingerprint name.
    metric : {"euclidean", "cosine", "tanimoto", "wasserstein"}
    name : str, optional
        Group name (default ``"<fingerprint>_<metric>"``).
    comm : mpi4py communicator, optional
    tile : int
        Tile edge and chunk edge (independent of the rank count).
    linkage_method : str
        scipy linkage method (default "average").
    max_linkage : int
        Largest n for which the linkage is computed (it needs the condensed matrix in memory).
    n_threads : int, optional
        OpenMP threads per rank.
    mix_kinds : bool
        Compare rows of different kinds (operator spectra and DFT bands, DESIGN.md §8.2); by default an
        InputError (`sporep_hpc.store.reader.check_kinds`).
    """
    from ..store import STATUS_DONE, open_store
    from ..store import groups as store_groups
    from ..store.reader import check_kinds

    check_choice("metric", metric, METRICS)
    check_choice("linkage_method", linkage_method, LINKAGE_METHODS)
    check_interval("max_linkage", max_linkage, 0, None, integer=True)
    name = name or f"{fingerprint}_{metric}"
    with open_store(path) as store:
        values, energies, attrs = store.fingerprints(fingerprint)
        status = store.status
        ids = store.ids
        usable = (status == STATUS_DONE) & np.all(np.isfinite(values), axis=1)
        index = np.flatnonzero(usable).astype(np.int64)
        check_kinds(store.sources, index, f"{path}: similarity of fingerprint {fingerprint!r}", mix_kinds)
    root = comm is None or comm.rank == 0
    if index.size < values.shape[0] and root:
        log.warning("similarity %s: %d of %d structures have no fingerprint and are left out",
                    name, values.shape[0] - index.size, values.shape[0])
    offsets = window_offsets_from_attrs(attrs, energies) if metric == "wasserstein" else None
    tiles = DistanceTiles(
        values[index], metric, energies=energies, window_offsets=offsets, comm=comm, tile=tile,
        n_threads=n_threads,
    )
    group_attrs = {
        "metric": metric,
        "fingerprint": fingerprint,
        "tile": int(tile),
        "fingerprint_attrs": {k: v if isinstance(v, (str, int, float)) else str(v) for k, v in attrs.items()},
    }
    store_groups.write_similarity(
        path, name, tiles, n=tiles.n, rounds=tiles.rounds, index=index, attrs=group_attrs, tile=int(tile),
        comm=comm,
    )
    linkage = None
    if 2 <= index.size <= max_linkage:
        problem = ""
        if comm is None or comm.rank == 0:
            try:
                record = store_groups.read_similarity(path, name)
                linkage = cluster(record.distance, linkage_method)
                store_groups.write_linkage(path, name, linkage, linkage_method)
            except (SporepError, OSError, ValueError) as exc:
                problem = str(exc)
        if comm is not None:  # every rank learns the outcome: none waits for a failed rank 0
            linkage, problem = comm.bcast((linkage, problem), root=0)
        if problem:
            raise StoreError(f"{path}: clustering of similarity {name!r} failed: {problem}")
    elif index.size > max_linkage and root:
        log.warning(
            "similarity %s: n=%d > max_linkage=%d, no clustering stored", name, index.size, max_linkage
        )
    return SimilarityResult(name, metric, fingerprint, [ids[i] for i in index], index, linkage)
