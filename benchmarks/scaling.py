"""Scaling study of `sporep-hpc run` (issue 8): strong and weak scaling, time per structure versus size
(the cost model checked against measurement), HDF5 assembly bandwidth against a plain serial write of the
same bytes, and (with --parts aflow) the AFLOW-prototype throughput in structures per core-hour.

    python benchmarks/scaling.py                       # all parts at 1, 2, 4, ... ranks up to the cores here
    python benchmarks/scaling.py --parts strong,weak --max-ranks 16 --repeats 5
    python benchmarks/scaling.py --parts aflow --aflow-ranks 2      # long: the whole examples:aflow set

Columns "cpu" (CPU seconds of all ranks inside `run`, including MPI busy-waiting) and "load" (1-min load
average after the runs) tell whether other jobs shared the cores: on a shared machine wall times are noise.
The same script runs unchanged on a bigger node: the rank counts are 1, 2, 4, ... up to the cores it
may use (os.sched_getaffinity), each rank with --threads OpenMP threads (default 1). Every MPI run is
a fresh `mpiexec -n R python -m mpi4py benchmarks/scaling.py --worker ...`; "t" is the driver's own wall
time (inputs, planning, computing, journal and assembly), "process" the whole command's (mpiexec,
interpreters and imports included). Timings are medians over --repeats runs after one warm-up run. The
strong-scaling part (issue 15.3) also compares the stores of every rank count with the 1-rank one
(max |difference| of eigenvalues and fingerprints, must be <= 1e-12) and prints the time split per phase.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sporep_hpc.config import SCHEDULES, ExecutionOptions

HERE = Path(__file__).resolve()
MPIEXEC = os.environ.get("MPIEXEC", "mpiexec")
DIAMOND = [
    [0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
    [0.25, 0.25, 0.25], [0.75, 0.75, 0.25], [0.75, 0.25, 0.75], [0.25, 0.75, 0.75],
]  # fmt: skip
# Mixed-size set of the strong-scaling study: the AFLOW prototypes, the nanotubes with <= 60 atoms and the
# BaTiO3 polymorphs (314 structures, 1 to 105 atoms), written once as JSON files, one input each (as a
# database's files: their reading is shared by the ranks).
STRONG_SET = "aflow;cnt?max_atoms=60;batio3"


# ---------------------------------------------------------------------------------------------- workers
def _worker_run(args) -> None:
    """Rank-parallel `run` of args.inputs; rank 0 prints the report as JSON."""
    from mpi4py import MPI

    from sporep_hpc.config import build_config
    from sporep_hpc.parallel.driver import run

    comm = MPI.COMM_WORLD
    config = build_config(None, {"restart": "fresh", "progress_interval": 1e6, "schedule": args.schedule})
    inputs = Path(args.inputs).read_text().split("\n") if args.inputs.endswith(".txt") else [args.inputs]
    cpu = time.process_time()
    report = run([i for i in inputs if i], args.output, config, comm, n_threads=args.threads)
    cpu = comm.allreduce(time.process_time() - cpu)  # CPU seconds of all ranks (all threads)
    if comm.rank == 0:
        print(json.dumps({
            "wall": report.wall_time, "cpu": cpu, "busy": list(report.busy_times), "done": report.n_done,
            "failed": report.n_failed, "phases": report.phase_times, "setup": report.t_setup,
            "symmetry": report.t_symmetry, "assembly": report.t_assembly,
        }))  # fmt: skip


def _synthetic_rows(lo: int, hi: int, n_k: int, n_bands: int, n_features: int):
    """Rows [lo, hi) of a synthetic store (deterministic values; sizes as a typical run)."""
    from sporep_hpc.store import StructureResult

    rows = []
    for i in range(lo, hi):
        r = np.random.default_rng(i)
        rows.append(StructureResult(
            index=i, id=f"s{i:07d}", status=1, formula="Si2", cell=np.eye(3) * 5.43,
            numbers=np.full(8, 14), positions=r.random((8, 3)), kpoints=r.random((n_k, 3)),
            weights=np.full(n_k, 1.0 / n_k), eigenvalues=r.random((1, n_k, n_bands)),
            n_electrons=8.0, fermi_energy=0.0, vbm=0.0, cbm=1.0, band_gap=1.0,
            fingerprints={"fp": r.random(n_features)},
        ))  # fmt: skip
    return rows


def _worker_write(args) -> None:
    """Collective write_store of a synthetic store; rank 0 prints seconds and bytes as JSON."""
    from mpi4py import MPI

    from sporep_hpc.parallel.schedule import block_range
    from sporep_hpc.store import FingerprintMeta, StoreHeader, write_store

    comm = MPI.COMM_WORLD
    lo, hi = block_range(args.rows, comm.size, comm.rank)
    rows = _synthetic_rows(lo, hi, args.n_k, args.n_bands, args.n_features)
    meta = {"fp": FingerprintMeta(energies=np.linspace(-5, 5, args.n_features), attrs={"reference": "fermi"})}
    header = StoreHeader(parameters_json="{}", created="bench", n_ranks=comm.size, version="bench")
    times = []
    for _ in range(args.repeats):
        comm.Barrier()
        t0 = time.perf_counter()
        write_store(args.output, rows, lo, args.rows, header, meta, comm if comm.size > 1 else None)
        comm.Barrier()
        times.append(time.perf_counter() - t0)
    if comm.rank == 0:
        print(json.dumps({"seconds": statistics.median(times), "bytes": Path(args.output).stat().st_size}))


# ---------------------------------------------------------------------------------------------- driver
def _mpi(ranks: int, threads: int, worker_args: list[str]) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}  # fmt: skip
    cmd = [MPIEXEC, "-n", str(ranks), sys.executable, "-m", "mpi4py", str(HERE), "--worker", *worker_args]
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    process = time.perf_counter() - start  # the whole command: mpiexec, interpreters, imports, exit
    if res.returncode not in (0, 4):  # 4: some structures failed (a prototype the basis lacks)
        raise SystemExit(f"benchmark worker failed ({' '.join(cmd)}):\n{res.stderr[-3000:]}")
    return {**json.loads(res.stdout.strip().splitlines()[-1]), "process": process}


def _timed_runs(ranks: int, threads: int, inputs: str, workdir: Path, repeats: int, schedule: str) -> dict:
    out = workdir / f"run-{ranks}.h5"
    args = [
        "run",
        "--inputs",
        inputs,
        "--output",
        str(out),
        "--threads",
        str(threads),
        "--schedule",
        schedule,
    ]
    _mpi(ranks, threads, args)  # warm-up (file cache, basis cache)
    reports = [_mpi(ranks, threads, args) for _ in range(repeats)]
    walls = [r["wall"] for r in reports]
    best = reports[int(np.argsort(walls)[len(walls) // 2])]
    busy = best["busy"]
    return {**best, "wall": statistics.median(walls), "store": out, "load": os.getloadavg()[0],
            "process": statistics.median(r["process"] for r in reports),
            "cpu": statistics.median(r["cpu"] for r in reports),
            "imbalance": max(busy) / (sum(busy) / len(busy)) if sum(busy) > 0 else 1.0}  # fmt: skip


def max_difference(a: Path, b: Path) -> float:
    """Largest |difference| of the eigenvalues and fingerprints of two stores (inf if shapes differ)."""
    import h5py

    worst = 0.0
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        for key in ["spectra/eigenvalues"] + [f"fingerprints/{n}/values" for n in fa["fingerprints"]]:
            x, y = fa[key][()], fb[key][()]
            if x.shape != y.shape:
                return float("inf")
            if x.size:
                worst = max(worst, float(np.nanmax(np.abs(x - y))))
    return worst


def rank_counts(max_ranks: int) -> list[int]:
    """1, 2, 4, ... up to max_ranks, and max_ranks itself."""
    counts, r = [], 1
    while r < max_ranks:
        counts.append(r)
        r *= 2
    return [*counts, max_ranks]


_SCALING_HEAD = f"{'name':<8} {'size':>5} {'ranks':>5} {'threads':>7} {'t_1 [s]':>9} {'t_R [s]':>9}"
"""Leading columns of the strong- and weak-scaling tables."""


def _structure_files(workdir: Path, specs: str) -> str:
    """The structures of ';'-separated example specs as JSON files in one folder (returned)."""
    from sporep_hpc.examples import load_set

    folder = workdir / "strong"
    folder.mkdir(exist_ok=True)
    for spec in specs.split(";"):
        for id, structure, _ in load_set(spec):
            structure.to(filename=str(folder / f"{id}.json"))
    return str(folder)


def strong(ranks: list[int], threads: int, workdir: Path, repeats: int, schedule: str, specs: str) -> None:
    print(f"\n== strong scaling: {specs} (fixed set, JSON files), {threads} thread(s) per rank, {schedule} "
          "schedule")
    inputs = _structure_files(workdir, specs)
    print(f"{_SCALING_HEAD} {'speed-up':>8} {'effic.':>7} {'imbal.':>7} {'cpu [s]':>8} {'load':>5} "
          f"{'process':>8} {'speed-up':>8} {'max|diff|':>9}")
    results = [_timed_runs(r, threads, inputs, workdir, repeats, schedule) for r in ranks]
    base, base_process = results[0]["wall"], results[0]["process"]
    for r, res in zip(ranks, results, strict=True):
        size = res["done"] + res["failed"]
        print(
            f"{'strong':<8} {size:>5} {r:>5} {threads:>7} {base:>9.2f} {res['wall']:>9.2f} "
            f"{base / res['wall']:>8.2f} {base / res['wall'] / r:>7.1%} {res['imbalance']:>7.3f} "
            f"{res['cpu']:>8.1f} {res['load']:>5.1f} {res['process']:>8.2f} "
            f"{base_process / res['process']:>8.2f} {max_difference(results[0]['store'], res['store']):>9.1e}"
        )
    print("time split (s; phases in tasks and symmetry summed over ranks; the median run):")
    for r, res in zip(ranks, results, strict=True):
        phases = "  ".join(f"{k} {v:.2f}" for k, v in res["phases"].items())
        print(f"  {r} rank(s): wall {res['wall']:.2f} = setup {res['setup']:.2f} (symmetry "
              f"{res['symmetry']:.2f}) + tasks + assembly {res['assembly']:.2f}; in tasks: {phases}; "
              f"busy per rank [{', '.join(f'{b:.2f}' for b in res['busy'])}]")


def _copies(workdir: Path, n: int) -> str:
    """A list of n identical 64-atom Si cells (2x2x2 conventional) under distinct names (equal tasks)."""
    from pymatgen.core import Lattice, Structure

    d = workdir / "weak"
    d.mkdir(exist_ok=True)
    cell = Structure(Lattice.cubic(5.43), ["Si"] * 8, DIAMOND) * (2, 2, 2)
    cif = d / "si-0000.cif"
    if not cif.exists():
        cell.to(filename=str(cif))
    for i in range(1, n):
        p = d / f"si-{i:04d}.cif"
        if not p.exists():
            shutil.copy(cif, p)
    listing = workdir / f"weak-{n}.txt"
    listing.write_text("".join(f"{d / f'si-{i:04d}.cif'}\n" for i in range(n)))
    return str(listing)


def weak(ranks: list[int], threads: int, workdir: Path, repeats: int, per_rank: int, schedule: str) -> None:
    print(f"\n== weak scaling: {per_rank} identical Si64 cells per rank, {threads} thread(s) per rank")
    print(f"{_SCALING_HEAD} {'effic.':>7} {'cpu [s]':>8} {'load':>5}")
    base = None
    for r in ranks:
        res = _timed_runs(r, threads, _copies(workdir, per_rank * r), workdir, repeats, schedule)
        base = base or res["wall"]
        print(
            f"{'weak':<8} {per_rank * r:>5} {r:>5} {threads:>7} {base:>9.2f} {res['wall']:>9.2f} "
            f"{base / res['wall']:>7.1%} {res['cpu']:>8.1f} {res['load']:>5.1f}"
        )


def cost_vs_size(repeats: int, threads: int) -> None:
    """Time per structure against its atoms and the cost-model estimate (serial, in this process)."""
    from pymatgen.core import Lattice, Structure

    from sporep_hpc.config import RunParameters
    from sporep_hpc.examples import catalogue
    from sporep_hpc.inputs.records import InputRecord
    from sporep_hpc.parallel.plan import plan_record
    from sporep_hpc.pipeline import FingerprintSet, compute_record

    params = RunParameters()
    fps = FingerprintSet.from_parameters(params)
    conv = Structure(Lattice.cubic(5.43), ["Si"] * 8, DIAMOND)
    prim = conv.get_primitive_structure()
    cases = [("Si2", prim), ("Si8", conv), ("Si16", prim * (2, 2, 2)), ("Si64", conv * (2, 2, 2))]
    cases += [(e.id, e.build()) for e in catalogue("aflow?max_atoms=30")[::20]]
    print(
        f"\n== time per structure vs size (1 rank, {threads} thread(s), median of {repeats}; cost model "
        "n_ao^3 n_k + integral term of sporep_hpc.parallel.tasks)"
    )
    print(
        f"{'id':<32} {'atoms':>5} {'n_ao':>5} {'n_k':>5} {'est. cost':>10} {'t [s]':>8} {'t/cost [ns]':>11}"
    )
    compute_record(0, InputRecord("warm", "x", "structure", prim), params, fps, threads)  # warm-up
    rows = []
    for name, s in cases:
        record = InputRecord(name, "bench", "structure", s)
        plan = plan_record(0, record, params)
        if plan.kind != "structure":
            continue
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            compute_record(0, record, params, fps, threads)
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        rows.append((len(s), plan.n_ao, plan.n_k, plan.cost, t))
        print(
            f"{name[:32]:<32} {len(s):>5} {plan.n_ao:>5} {plan.n_k:>5} {plan.cost:>10.3g} {t:>8.3f} "
            f"{t / plan.cost * 1e9:>11.2f}"
        )
    _, n_ao, n_k, cost, t = (np.array(c, dtype=float) for c in zip(*rows, strict=True))
    slope, _ = np.polyfit(np.log(cost), np.log(t), 1)
    rank_corr = np.corrcoef(np.argsort(np.argsort(cost)), np.argsort(np.argsort(t)))[0, 1]
    # least-squares fit of the measured time on the model's terms, as a calibration proposal
    design = np.column_stack([np.ones_like(t), n_ao**2 * n_k, n_ao**3 * n_k])
    coef, *_ = np.linalg.lstsq(design, t, rcond=None)
    print(
        f"log-log slope of t vs est. cost {slope:.2f} (1 = proportional); Spearman rank correlation "
        f"{rank_corr:.2f}; t/cost spans {(t / cost).max() / (t / cost).min():.0f}x"
    )
    print(f"least squares t = {coef[0]:.3g} s + {coef[1]:.3g} s * n_ao^2 n_k + {coef[2]:.3g} s * n_ao^3 n_k")


def hdf5_bandwidth(ranks: list[int], workdir: Path, repeats: int, n_rows: int) -> None:
    """Collective write_store against one serial write of the same number of bytes."""
    n_k, n_bands, n_features = 40, 32, 400
    print(
        f"\n== HDF5 assembly: {n_rows} synthetic structures ({n_k} k-points x {n_bands} bands, "
        f"{n_features} features), median of {repeats}; reference: one serial h5py write of the same bytes"
    )
    print(f"{'name':<8} {'MB':>7} {'ranks':>5} {'t_ref [s]':>9} {'t_new [s]':>9} {'ratio':>6} {'MB/s':>8}")
    for r in ranks:
        out = workdir / f"assembly-{r}.h5"
        args = ["write", "--output", str(out), "--rows", str(n_rows), "--n-k", str(n_k), "--n-bands",
                str(n_bands), "--n-features", str(n_features), "--repeats", str(repeats)]  # fmt: skip
        res = _mpi(r, 1, args)
        nbytes = res["bytes"]
        import h5py

        data = np.random.default_rng(0).random(nbytes // 8)
        ref = workdir / "plain.h5"
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            with h5py.File(ref, "w") as f:
                f.create_dataset("data", data=data)
            times.append(time.perf_counter() - t0)
        t_ref = statistics.median(times)
        mb = nbytes / 1e6
        print(
            f"{'assembly':<8} {mb:>7.1f} {r:>5} {t_ref:>9.3f} {res['seconds']:>9.3f} "
            f"{t_ref / res['seconds']:>6.2f} {mb / res['seconds']:>8.0f}"
        )


def aflow(ranks: int, threads: int, workdir: Path, target: int, schedule: str) -> None:
    print(
        f"\n== throughput: examples:aflow (all prototypes the default basis covers), default parameters, "
        f"{ranks} ranks x {threads} thread(s), {schedule} schedule"
    )
    out = workdir / "aflow.h5"
    res = _mpi(ranks, threads, ["run", "--inputs", "examples:aflow", "--output", str(out), "--threads",
                                str(threads), "--schedule", schedule])  # fmt: skip
    cores = ranks * threads
    n = res["done"] + res["failed"]
    per_core_hour = n / (res["wall"] * cores / 3600)
    per_cpu_hour = n / (res["cpu"] / 3600)
    busy = res["busy"]
    print(
        f"structures {n} ({res['done']} done, {res['failed']} failed), wall {res['wall']:.1f} s on {cores} "
        f"cores (busy per rank {', '.join(f'{b:.1f}' for b in busy)} s): {per_core_hour:.0f} structures per "
        f"core-hour of wall time; {target} structures of this mix: {target / per_core_hour:.1f} core-hours"
    )
    print(
        f"CPU time of the ranks {res['cpu']:.1f} s: {per_cpu_hour:.0f} structures per CPU-hour, "
        f"{target / per_cpu_hour:.1f} CPU-hours for {target} (what an exclusive, balanced node approaches)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--parts", default="strong,weak,cost,hdf5",
                        help="comma list of strong, weak, cost, hdf5, aflow")  # fmt: skip
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    parser.add_argument("--max-ranks", type=int, default=cores)
    parser.add_argument("--threads", type=int, default=1, help="OpenMP threads per rank")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--strong-set", default=STRONG_SET,
                        help="';'-separated example sets of the strong-scaling runs (default %(default)s)")
    parser.add_argument("--per-rank", type=int, default=24, help="weak scaling: structures per rank")
    parser.add_argument("--rows", type=int, default=4000, help="hdf5: synthetic structures")
    parser.add_argument("--schedule", default=ExecutionOptions().schedule, choices=SCHEDULES,
                        help="default: the run's default (%(default)s)")
    parser.add_argument("--aflow-ranks", type=int, default=min(2, cores))
    parser.add_argument("--target", type=int, default=30000, help="database size for the projection")
    parser.add_argument("--workdir", help="scratch directory (default: a temporary one, removed)")
    parser.add_argument("--worker", choices=("run", "write"), help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--n-k", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--n-bands", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--n-features", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "run":
        return _worker_run(args)
    if args.worker == "write":
        return _worker_write(args)

    parts = set(args.parts.split(","))
    ranks = rank_counts(args.max_ranks)
    import mpi4py

    print(
        f"sporep-hpc scaling study on {os.uname().nodename}: {cores} cores available, ranks {ranks}, "
        f"mpi4py {mpi4py.__version__}, load average {os.getloadavg()[0]:.1f} at start"
    )
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="sporep-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if "strong" in parts:
            strong(ranks, args.threads, work, args.repeats, args.schedule, args.strong_set)
        if "weak" in parts:
            weak(ranks, args.threads, work, args.repeats, args.per_rank, args.schedule)
        if "cost" in parts:
            cost_vs_size(args.repeats, args.threads)
        if "hdf5" in parts:
            hdf5_bandwidth(ranks, work, args.repeats, args.rows)
        if "aflow" in parts:
            aflow(args.aflow_ranks, args.threads, work, args.target, args.schedule)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end (other jobs on this machine distort timings)")


if __name__ == "__main__":
    main()
