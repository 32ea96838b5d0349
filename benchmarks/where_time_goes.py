"""Where the wall time of `sporep-hpc run` goes (issue 15.5): the fraction in LAPACK eigenvalue calls,
integrals, DOS, and everything else (input reading, planning, journal, assembly, Python glue).

    python benchmarks/where_time_goes.py                          # the demo set and the AFLOW set, 1 rank
    mpiexec -n 2 python -m mpi4py benchmarks/where_time_goes.py --sets demo

The kernel fractions are the distance to the bound: a run can be at most 1 / (kernel fraction) times
faster by removing everything else. Times are summed over ranks (core-seconds) and divided by
ranks x wall time; on a shared machine compare fractions, not seconds.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

SETS = {
    "demo": ["examples:batio3", "examples:cnt?max_atoms=200"],
    "aflow": ["examples:aflow"],
}


def measure(inputs: list[str], comm) -> dict[str, float]:
    """Core-seconds per part of one fresh run over `inputs` (the same on every rank)."""
    from sporep_hpc.config import build_config
    from sporep_hpc.parallel.driver import run

    tmp = comm.bcast(tempfile.mkdtemp(prefix="sporep-time-") if comm.rank == 0 else None, root=0)
    config = build_config(overrides={"restart": "fresh", "progress_interval": 1e6})
    start = time.perf_counter()
    report = run(inputs, Path(tmp) / "store.h5", config, comm, n_threads=1)
    wall = max(comm.allgather(time.perf_counter() - start))
    phases = report.phase_times
    kernels = {"LAPACK eigenvalues": phases["eigen"], "integrals": phases["integrals"], "DOS": phases["dos"]}
    total = wall * comm.size
    return {**kernels, "everything else": total - sum(kernels.values()), "_wall": wall,
            "_structures": report.n_total, "_done": report.n_done}


def main() -> None:
    from mpi4py import MPI

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="demo,aflow", help="comma-separated: " + ", ".join(SETS))
    args = parser.parse_args()
    comm = MPI.COMM_WORLD
    for name in args.sets.split(","):
        parts = measure(SETS[name], comm)
        if comm.rank != 0:
            continue
        wall, n, done = parts.pop("_wall"), parts.pop("_structures"), parts.pop("_done")
        total = wall * comm.size
        print(f"{name}: {n} structures ({done} done), {comm.size} rank(s) x 1 thread, wall {wall:.1f} s")
        for part, seconds in parts.items():
            print(f"  {part:<20s} {seconds:8.2f} core-s  {seconds / total:6.1%}")
        kernel = sum(v for k, v in parts.items() if k != "everything else")
        print(f"  bound: at most {total / max(kernel, 1e-12):.2f}x faster with all overhead removed")


if __name__ == "__main__":
    main()
