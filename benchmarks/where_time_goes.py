"""Where the wall time of `sporep-hpc run` goes (issue 15.5): the fraction in LAPACK eigenvalue calls,
integrals, DOS, the planner's symmetry search (spglib: primitive cell, point group, k-point reduction),
and everything else (input reading, validation, planning, journal, assembly, Python glue).

    python benchmarks/where_time_goes.py                          # demo, AFLOW and two-atom sets, 1 rank
    mpiexec -n 2 python -m mpi4py benchmarks/where_time_goes.py --sets demo

The kernel fractions are the distance to the bound: a run can be at most 1 / (kernel fraction) times
faster by removing everything else. "overhead / kernels" is everything but integrals, eigenvalues and
DOS over those (issue 15.2's measure, target <= 25 % on the two-atom set at 1 rank), with and without
the symmetry search. Times are summed over ranks (core-seconds) and divided by ranks x wall time; on a
shared machine compare fractions, not seconds. The two-atom set is 1000 CsCl-type cells of eight
binary compounds (a = 4.2 + 0.001 i Å) written as pymatgen JSON files, as in issue 15's measurement.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

SETS = {
    "demo": ["examples:batio3", "examples:cnt?max_atoms=200"],
    "aflow": ["examples:aflow"],
    "two-atom": [],  # written by two_atom_crystals
}
PAIRS = [("Na", "Cl"), ("Mg", "O"), ("Li", "F"), ("K", "Br"),
         ("Si", "C"), ("Ga", "As"), ("Zn", "S"), ("Al", "P")]


def two_atom_crystals(folder: Path, n: int = 1000) -> list[str]:
    """`n` two-atom cubic crystals as pymatgen JSON files in `folder` (the inputs of the "two-atom" set)."""
    from pymatgen.core import Lattice, Structure

    for i in range(n):
        a, b = PAIRS[i % len(PAIRS)]
        crystal = Structure(Lattice.cubic(4.2 + 0.001 * i), [a, b], [[0, 0, 0], [0.5, 0.5, 0.5]])
        crystal.to(filename=str(folder / f"x{i:05d}.json"))
    return [str(folder)]


def measure(inputs: list[str], comm) -> dict[str, float]:
    """Core-seconds per part of one fresh run over `inputs` (the same on every rank)."""
    from sporep_hpc.config import build_config
    from sporep_hpc.parallel.driver import run

    tmp = comm.bcast(tempfile.mkdtemp(prefix="sporep-time-") if comm.rank == 0 else None, root=0)
    if not inputs:
        inputs = comm.bcast(two_atom_crystals(Path(tmp)) if comm.rank == 0 else None, root=0)
    config = build_config(overrides={"restart": "fresh", "progress_interval": 1e6})
    start = time.perf_counter()
    report = run(inputs, Path(tmp) / "store.h5", config, comm, n_threads=1)
    wall = max(comm.allgather(time.perf_counter() - start))
    phases = report.phase_times
    kernels = {"LAPACK eigenvalues": phases["eigen"], "integrals": phases["integrals"], "DOS": phases["dos"]}
    total = wall * comm.size
    rest = total - sum(kernels.values()) - report.t_symmetry
    return {**kernels, "symmetry (spglib)": report.t_symmetry, "everything else": rest, "_wall": wall,
            "_structures": report.n_total, "_done": report.n_done}


def main() -> None:
    from mpi4py import MPI

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="demo,aflow,two-atom", help="comma-separated: " + ", ".join(SETS))
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
        kernel = sum(parts[k] for k in ("LAPACK eigenvalues", "integrals", "DOS"))
        symmetry, rest = parts["symmetry (spglib)"], parts["everything else"]
        print(f"  bound: at most {total / max(kernel, 1e-12):.2f}x faster with all overhead removed")
        print(f"  overhead / kernels: {(symmetry + rest) / kernel:.0%} "
              f"({rest / kernel:.0%} without the symmetry search)")


if __name__ == "__main__":
    main()
