"""Strong scaling of `sporep-hpc run` on one node: the same input set at 1, 2, ... ranks.

    python benchmarks/bench_scaling.py                    # 1 and 2 ranks (up to the cores here)
    python benchmarks/bench_scaling.py --ranks 1,2,4 --repeats 3 --schedule dynamic

The set (default: the 288 AFLOW prototypes, the nanotubes with <= 60 atoms and the four BaTiO3
polymorphs: 314 structures of 1 to 105 atoms) is written once to JSON files, so every run reads
the same inputs. Each run is a fresh
``mpiexec -n R python -m mpi4py benchmarks/bench_scaling.py --worker ...`` with OMP_NUM_THREADS=1
(ranks x threads <= cores); the time is the driver's own wall time (inputs, planning, tasks, journal,
assembly; not interpreter start-up), the median of --repeats runs after one warm-up. The stores of all
rank counts are compared (max |difference| of eigenvalues and fingerprints, must be <= 1e-12).

Prints: ranks  threads  t_ref(1 rank)  t_new  speed-up  efficiency, and the whole process's wall time
(mpiexec to exit, interpreter start-up and imports included) with its speed-up; then the time split per phase
(summed over ranks), the load imbalance (max/mean busy time per rank) and each rank's CPU/wall ratio
(well below 1 when other processes share the cores, e.g. on a busy development machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sporep_hpc.config import SCHEDULES, ExecutionOptions

HERE = Path(__file__).resolve()
DEFAULT_SETS = ("aflow", "cnt?max_atoms=60", "batio3")


def worker(args) -> None:
    """One MPI run; rank 0 prints the report as one JSON line."""
    from mpi4py import MPI

    from sporep_hpc.config import build_config
    from sporep_hpc.parallel.driver import run

    comm = MPI.COMM_WORLD
    cfg = build_config(None, {"restart": "fresh", "progress_interval": 1e6, "schedule": args.schedule})
    cpu, wall = time.process_time(), time.perf_counter()
    report = run([args.inputs], args.output, cfg, comm, n_threads=1)
    # CPU time / wall time of each rank during the run: < 1 when other processes share the cores
    share = comm.gather((time.process_time() - cpu) / (time.perf_counter() - wall))
    if comm.rank == 0:
        print("REPORT " + json.dumps({
            "wall": report.wall_time, "phases": report.phase_times, "busy": list(report.busy_times),
            "setup": report.t_setup, "assembly": report.t_assembly, "cpu_share": share,
            "done": report.n_done, "failed": report.n_failed, "imbalance": report.load_imbalance,
        }))


def write_inputs(directory: Path, sets: list[str]) -> int:
    from sporep_hpc.examples import load_set

    n = 0
    for spec in sets:
        for id, structure, _ in load_set(spec):
            structure.to(filename=str(directory / f"{id}.json"))
            n += 1
    return n


def one_run(ranks: int, inputs: Path, output: Path, schedule: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    cmd = [
        os.environ.get("MPIEXEC", "mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpi4py", str(HERE),
        "--worker", "--inputs", str(inputs), "--output", str(output), "--schedule", schedule,
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    process = time.perf_counter() - start  # the whole process: mpiexec, interpreters, imports, run, exit
    line = next((x for x in proc.stdout.splitlines() if x.startswith("REPORT ")), None)
    if proc.returncode not in (0, 4) or line is None:
        raise SystemExit(f"run on {ranks} ranks failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {**json.loads(line[len("REPORT "):]), "process": process}


def max_difference(a: Path, b: Path) -> float:
    import h5py
    import numpy as np

    worst = 0.0
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        keys = ["spectra/eigenvalues"] + [f"fingerprints/{n}/values" for n in fa["fingerprints"]]
        for key in keys:
            x, y = fa[key][()], fb[key][()]
            if x.shape != y.shape:
                return float("inf")
            d = np.abs(x - y)
            worst = max(worst, float(np.nanmax(d)) if d.size else 0.0)
    return worst


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inputs", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--ranks", default=None, help="rank counts (default 1,2 up to the cores)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--schedule", default=ExecutionOptions().schedule, choices=SCHEDULES,
                        help="default: the run's default (%(default)s)")
    parser.add_argument("--sets", default=";".join(DEFAULT_SETS), help="';'-separated examples specs")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ranks = [int(r) for r in args.ranks.split(",")] if args.ranks else [r for r in (1, 2) if r <= cores]
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        tmp = Path(tmp)
        (tmp / "inputs").mkdir()
        n = write_inputs(tmp / "inputs", args.sets.split(";"))
        print(f"# {n} structures ({args.sets}); schedule {args.schedule}; {cores} cores; "
              f"median of {args.repeats} after a warm-up; OMP_NUM_THREADS=1 per rank")
        results = {}
        for r in ranks:
            one_run(r, tmp / "inputs", tmp / f"warm-{r}.h5", args.schedule)
            out = tmp / f"run-{r}.h5"
            runs = [one_run(r, tmp / "inputs", out, args.schedule) for _ in range(args.repeats)]
            best = sorted(runs, key=lambda x: x["wall"])[len(runs) // 2]
            results[r] = (statistics.median(x["wall"] for x in runs), best,
                          statistics.median(x["process"] for x in runs))
        t_ref = results[ranks[0]][0] * ranks[0]
        p_ref = results[ranks[0]][2] * ranks[0]
        print(f"{'name':<14s} {'size':>5s} {'ranks':>5s} {'threads':>7s} {'t_ref':>8s} {'t_new':>8s} "
              f"{'speed-up':>8s} {'effic.':>7s} {'imbal.':>7s} {'max|diff|':>9s} {'process':>8s} "
              f"{'speed-up':>8s}")
        for r in ranks:
            t, rep, process = results[r]
            diff = max_difference(tmp / f"run-{ranks[0]}.h5", tmp / f"run-{r}.h5")
            print(f"{'run-scaling':<14s} {n:>5d} {r:>5d} {1:>7d} {t_ref:>8.2f} {t:>8.2f} {t_ref / t:>8.2f} "
                  f"{t_ref / t / r:>7.1%} {rep['imbalance']:>7.3f} {diff:>9.1e} {process:>8.2f} "
                  f"{p_ref / process:>8.2f}")
        print("(t_ref, t_new: the driver's wall time; process: the whole mpiexec command, start-up included)")
        print("time split (s, summed over ranks; median run):")
        for r in ranks:
            rep = results[r][1]
            split = "  ".join(f"{k} {v:.2f}" for k, v in rep["phases"].items())
            busy = ", ".join(f"{b:.2f}" for b in rep["busy"])
            print(f"  {r} rank(s): wall {rep['wall']:.2f} = setup {rep['setup']:.2f} + tasks + assembly "
                  f"{rep['assembly']:.2f}; in tasks: {split}; busy per rank [{busy}]; "
                  f"done {rep['done']} failed {rep['failed']}; CPU/wall per rank "
                  f"[{', '.join(f'{c:.2f}' for c in rep['cpu_share'])}]")
        print("(CPU/wall well below 1 means other processes shared the cores: the speed-up is then a lower "
              "bound)")


if __name__ == "__main__":
    main()
