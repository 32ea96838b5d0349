"""Benchmark: exact k nearest neighbours of N synthetic 1024-feature vectors (issue 15, point 4).

Candidate: `sporep_hpc.analysis.neighbours.nearest_neighbours` (upper-triangle distance tiles dealt to
the MPI ranks, GEMM kernels of ext/distances.pyx, top-k kernel, k-best lists merged over the ranks).
References, in the same run: scikit-learn's `NearestNeighbors(algorithm="brute")` (float64, exact up to
rounding) and, when faiss-cpu is installed, `faiss.IndexFlatL2` (exhaustive, float32).

Every method runs in a process of its own (so the peak memory, `resource.getrusage(...).ru_maxrss`, is
its own; summed over the ranks for the candidate) on the same seeded data: rows scattered around 1000
random centres (a clustered set, as fingerprints of a database are). Each is warmed up on 2000 rows and
timed as the median of --repeat runs (wall and CPU time); data generation is not timed. Exactness
against scikit-learn: the fraction of rows with an identical neighbour list and the largest |distance
difference|.

--out-of-core FILE: the vectors are written to an HDF5 file block by block (never all in memory) and the
candidate streams them tile by tile (memory: N·k lists, one row block, one tile). The in-memory
references cannot run then; exactness is checked on --sample rows against a numpy brute force
(`scipy.spatial.distance.cdist` over blocks of the same file, sorted by (distance, index)).

Usage:
  python benchmarks/bench_neighbours.py --rows 100000                  # 10^5, in memory, all methods
  python benchmarks/bench_neighbours.py --rows 1000000 --out-of-core /scratch/x.h5 --ranks 2
Output: method  rows  ranks  threads  t[s]  cpu[s]  peak_MB  run_MB  same_lists  max_dd  t/t_sporep
cpu/cpu_sporep. CPU time (summed over the ranks) is the fairer figure on a shared machine, where wall time
includes waiting. peak_MB is the process peak (summed over the ranks; includes the data each holds: every
rank holds all rows in memory mode); run_MB is what the timed runs added to the peak reached before them
(data loaded, warm-up done): the method's own working memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sporep_hpc.analysis.neighbours import DEFAULT_TILE

BLOCK = 10_000  # rows per seeded generator: row i comes from generator [seed, i // BLOCK]
SUB = 1000  # rows drawn per call (the same stream as one draw of BLOCK rows; small temporaries)
N_CENTRES = 1000
WARMUP_ROWS = 500


def row_chunks(rows: int, features: int, seed: int):
    """(lo, rows [lo, lo + SUB)) of the synthetic set, in order, covering rows [0, rows)."""
    centres = np.random.default_rng(seed).random((N_CENTRES, features))
    for b in range(0, -(-rows // BLOCK)):
        rng = np.random.default_rng([seed, b])
        which = rng.integers(0, N_CENTRES, size=BLOCK)
        for s in range(0, BLOCK, SUB):
            lo = b * BLOCK + s
            if lo >= rows:
                return
            noise = rng.standard_normal((SUB, features))
            yield lo, np.abs(centres[which[s : s + SUB]] + 0.05 * noise)[: rows - lo]


def all_rows(rows: int, features: int, seed: int, dtype=np.float64) -> np.ndarray:
    """The first `rows` rows in one array, filled chunk by chunk (no second copy at any time)."""
    out = np.empty((rows, features), dtype=dtype)
    for lo, chunk in row_chunks(rows, features, seed):
        out[lo : lo + len(chunk)] = chunk
    return out


def write_file(path: Path, rows: int, features: int, seed: int) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        dset = f.create_dataset("x", shape=(rows, features), dtype="f8", chunks=(min(rows, 1024), features))
        for lo, chunk in row_chunks(rows, features, seed):
            dset[lo : lo + len(chunk)] = chunk


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def timed(func, repeat: int, barrier=None):
    """(last result, median wall time, median CPU time of this process) of `repeat` runs."""
    times, cpu, out = [], [], None
    for _ in range(repeat):
        if barrier is not None:
            barrier()
        t0, c0 = time.perf_counter(), time.process_time()
        out = func()
        if barrier is not None:
            barrier()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return out, statistics.median(times), statistics.median(cpu)


# ---- workers (one process each) ------------------------------------------------------------------------


def worker_sporep(args) -> dict:
    from mpi4py import MPI

    from sporep_hpc.analysis.neighbours import nearest_neighbours

    comm = MPI.COMM_WORLD
    warm = all_rows(WARMUP_ROWS, args.features, args.seed)
    nearest_neighbours(warm, args.k, args.metric, comm=comm, tile=args.tile)
    if args.out_of_core:
        import h5py

        f = h5py.File(args.out_of_core, "r")
        x = f["x"]
    else:
        x = all_rows(args.rows, args.features, args.seed)

    def run():
        return nearest_neighbours(x, args.k, args.metric, comm=comm, tile=args.tile)

    base = peak_mb()
    res, t, cpu = timed(run, args.repeat, comm.Barrier)
    mem, cpu = comm.gather((base, peak_mb()), root=0), comm.gather(cpu, root=0)
    if comm.rank == 0:
        np.savez(args.result, index=res.index, distance=res.distance)
        peak, extra = sum(m[1] for m in mem), sum(m[1] - m[0] for m in mem)
        return {"time": t, "cpu": float(sum(cpu)), "peak_mb": peak, "run_mb": extra}
    return {}


def worker_sklearn(args) -> dict:
    from sklearn.neighbors import NearestNeighbors

    def run(x):
        nn = NearestNeighbors(n_neighbors=args.k, algorithm="brute", metric=args.metric, n_jobs=1).fit(x)
        dist, ind = nn.kneighbors()  # no X: each row's neighbours without itself
        return ind, dist

    run(all_rows(WARMUP_ROWS, args.features, args.seed))
    x = all_rows(args.rows, args.features, args.seed)
    base = peak_mb()
    (ind, dist), t, cpu = timed(lambda: run(x), args.repeat)
    np.savez(args.result, index=ind.astype(np.int64), distance=dist)
    return {"time": t, "cpu": cpu, "peak_mb": peak_mb(), "run_mb": peak_mb() - base}


def worker_faiss(args) -> dict:
    import faiss

    faiss.omp_set_num_threads(args.threads)
    if args.metric != "euclidean":
        raise SystemExit("faiss reference: euclidean only (IndexFlatL2)")

    def run(x):
        index = faiss.IndexFlatL2(x.shape[1])
        index.add(x)
        d2, ind = index.search(x, args.k + 1)
        # drop each row itself (float32 may put an exact duplicate first), else the (k+1)-th
        own = ind == np.arange(len(x))[:, None]
        drop = np.where(own.any(axis=1), own.argmax(axis=1), args.k)
        keep = np.ones_like(own)
        keep[np.arange(len(x)), drop] = False
        return ind[keep].reshape(len(x), args.k), np.sqrt(np.maximum(d2[keep], 0)).reshape(len(x), args.k)

    run(all_rows(WARMUP_ROWS, args.features, args.seed, np.float32))
    x = all_rows(args.rows, args.features, args.seed, np.float32)
    base = peak_mb()
    (ind, dist), t, cpu = timed(lambda: run(x), args.repeat)
    np.savez(args.result, index=ind.astype(np.int64), distance=dist.astype(np.float64))
    return {"time": t, "cpu": cpu, "peak_mb": peak_mb(), "run_mb": peak_mb() - base}


def worker_brute_sample(args) -> dict:
    """Neighbours of --sample rows by cdist over blocks of the file, sorted by (distance, index)."""
    import h5py
    from scipy.spatial.distance import cdist

    sample = np.sort(np.random.default_rng(args.seed + 1).choice(args.rows, args.sample, replace=False))
    base = peak_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    with h5py.File(args.out_of_core, "r") as f:
        x = f["x"]
        q = x[sample]
        best_d = np.full((len(sample), 0), np.inf)
        best_i = np.zeros((len(sample), 0), dtype=np.int64)
        for lo in range(0, args.rows, BLOCK):
            block = x[lo : lo + BLOCK]
            d = cdist(q, block, args.metric)
            idx = np.broadcast_to(np.arange(lo, lo + len(block)), d.shape)
            d = np.where(idx == sample[:, None], np.inf, d)  # self excluded
            cd, ci = np.hstack([best_d, d]), np.hstack([best_i, idx])
            order = np.lexsort((ci, cd), axis=1)[:, : args.k]
            best_d, best_i = np.take_along_axis(cd, order, 1), np.take_along_axis(ci, order, 1)
    np.savez(args.result, index=best_i, distance=best_d, sample=sample)
    t, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"time": t, "cpu": cpu, "peak_mb": peak_mb(), "run_mb": peak_mb() - base}


WORKERS = {
    "sporep": worker_sporep, "sklearn": worker_sklearn, "faiss": worker_faiss, "brute": worker_brute_sample,
}


# ---- driver --------------------------------------------------------------------------------------------


def launch(name: str, args, tmp: Path) -> dict | None:
    result = tmp / f"{name}.npz"
    cmd = [sys.executable, __file__, "--worker", name, "--result", str(result)]
    for key in ("rows", "features", "k", "metric", "tile", "repeat", "seed", "threads", "sample"):
        cmd += [f"--{key}", str(getattr(args, key))]
    if args.out_of_core:
        cmd += ["--out-of-core", str(args.out_of_core)]
    if name == "sporep" and args.ranks > 1:
        cmd = ["mpiexec", "-n", str(args.ranks), sys.executable, "-m", "mpi4py", *cmd[1:]]
    threads = str(args.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"# {name} failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
        return None
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    with np.load(result) as data:
        info.update({key: data[key] for key in data.files})
    return info


def compare(got: dict, ref: dict, rows=None) -> tuple[float, float]:
    """(fraction of identical neighbour lists, max |distance difference|) of `got` against `ref`."""
    gi, gd = (got["index"], got["distance"]) if rows is None else (got["index"][rows], got["distance"][rows])
    same = float(np.mean(np.all(gi == ref["index"], axis=1)))
    return same, float(np.max(np.abs(gd - ref["distance"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=1024)
    parser.add_argument("-k", "--k", type=int, default=10)
    parser.add_argument("--metric", default="euclidean", choices=("euclidean", "cosine"))
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE, help="candidate's tile edge (rows)")
    parser.add_argument("--ranks", type=int, default=1, help="MPI ranks of the candidate (mpiexec)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads of every method")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per method (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=["sporep", "sklearn", "faiss"])
    parser.add_argument("--out-of-core", dest="out_of_core", type=Path, default=None, metavar="FILE")
    parser.add_argument("--sample", type=int, default=200, help="rows checked by brute force (out of core)")
    parser.add_argument("--worker", choices=WORKERS, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        info = WORKERS[args.worker](args)
        if info:
            print(json.dumps(info))
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-neighbours-"))
    try:
        if args.out_of_core:
            if not args.out_of_core.exists():
                t0 = time.perf_counter()
                write_file(args.out_of_core, args.rows, args.features, args.seed)
                t_write = time.perf_counter() - t0
                print(f"# wrote {args.out_of_core} ({args.rows} x {args.features}) in {t_write:.1f} s")
            methods = ["sporep", "brute"]
        else:
            methods = [m for m in args.methods if m != "faiss" or _has_faiss()]
        results = {m: launch(m, args, tmp) for m in methods}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    new = results.get("sporep")
    ref = results.get("sklearn") or results.get("brute")
    print(f"# {args.rows} x {args.features} vectors, k={args.k}, metric {args.metric}, tile {args.tile}, "
          f"median of {args.repeat}, out of core: {bool(args.out_of_core)}")
    print(f"{'method':<8} {'rows':>8} {'ranks':>5} {'threads':>7} {'t[s]':>9} {'cpu[s]':>9} {'peak_MB':>8} "
          f"{'run_MB':>7} {'same_lists':>10} {'max_dd':>9} {'t/t_sporep':>10} {'cpu/cpu_sporep':>14}")
    for name, info in results.items():
        if info is None:
            continue
        same, dd = float("nan"), float("nan")
        if ref is not None and info is not ref:
            rows = ref.get("sample") if name == "sporep" and "sample" in ref else None
            same, dd = compare(info, ref, rows)
        ranks = args.ranks if name == "sporep" else 1
        rows = args.sample if name == "brute" else args.rows
        ratio = info["time"] / new["time"] if new else float("nan")
        cpu_ratio = info["cpu"] / new["cpu"] if new else float("nan")
        print(f"{name:<8} {rows:>8d} {ranks:>5d} {args.threads:>7d} {info['time']:>9.2f} {info['cpu']:>9.2f} "
              f"{info['peak_mb']:>8.0f} {info['run_mb']:>7.0f} {same:>10.4f} {dd:>9.2e} {ratio:>10.2f} "
              f"{cpu_ratio:>14.2f}")


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        print("# faiss-cpu not installed: no FAISS reference")
        return False
    return True


if __name__ == "__main__":
    main()
