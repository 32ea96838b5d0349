"""Kinetic-operator spectra: sporep-hpc against the PySCF + scipy pipeline, in one run.

Both sides get the same structures, the same primitives (ano-valence, exp_to_discard 0.1), the same
irreducible k-points and the same lattice-sum precision (1e-12). Timed per structure, median of
`--repeat` runs after one warm-up:

  reference  PySCF `Cell.pbc_intor('int1e_ovlp')` + `pbc_intor('int1e_kin')` + `scipy.linalg.eigh(T, S,
             eigvals_only=True)` per k-point (the PySCF cell is built once, outside the timing);
  sporep     `operator_spectrum(structure, kpoints=..., weights=...)` (everything: basis table,
             screening, lattice blocks, Bloch phases, eigenvalues, BandStructure).

Threads: 1 then 2 (PySCF OpenMP via `pyscf.lib.num_threads`, BLAS via threadpoolctl; ours via n_threads).
Prints `name  n_ao  n_k  t_ref  t_new  ratio` (ratio = t_ref / t_new, > 1 means sporep-hpc is faster)
and the geometric mean and total-time ratio per thread count. The spectra are also compared (max |Δε|).

Usage: python benchmarks/bench_operators.py [--repeat 5] [--threads 1 2] [--kdensity 0.15] [--quick]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def structures(quick: bool):
    from test_integrals import batio3_cubic, ceo2_fluorite, nanotube, rutile_tio2, si_diamond, triclinic

    out = [("Si", si_diamond()), ("BaTiO3", batio3_cubic()), ("TiO2-rutile", rutile_tio2()),
           ("CeO2", ceo2_fluorite()), ("triclinic", triclinic()), ("CNT(6,6)", nanotube(6, 6))]
    if not quick:
        big = batio3_cubic()
        big.make_supercell([2, 2, 2])
        out += [("CNT(10,0)", nanotube(10, 0)), ("BaTiO3-2x2x2", big)]
    return out


def timed(fn, repeat: int) -> tuple[float, object]:
    result = fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def breakdown(cases, repeat: int) -> None:
    """Where the time goes, both sides, one thread: integrals vs eigenvalues (medians, ms)."""
    import scipy.linalg
    from pyscf import lib as pyscf_lib
    from threadpoolctl import threadpool_limits

    from sporep_hpc.operators import spectrum_with_stats

    cols = ("ref ints", "ref eigh", "new ints", "new eig", "new other")
    print(f"  {'name':<12} " + " ".join(f"{c:>9}" for c in cols) + "  (ms)")
    for name, st, k, w, cell, kabs in cases:

        def ints(cell=cell, kabs=kabs):
            return (cell.pbc_intor("int1e_ovlp", hermi=1, kpts=kabs),
                    cell.pbc_intor("int1e_kin", hermi=1, kpts=kabs))

        with threadpool_limits(limits=1, user_api="blas"), pyscf_lib.with_omp_threads(1):
            t_ints, (s, t) = timed(ints, repeat)
            t_eigh, _ = timed(lambda s=s, t=t: [scipy.linalg.eigh(ti, si, eigvals_only=True)
                                                for ti, si in zip(t, s, strict=True)], repeat)
        runs = []
        for _ in range(repeat + 1):
            t0 = time.perf_counter()
            _, stats = spectrum_with_stats(st, kpoints=k, weights=w, n_threads=1)
            runs.append((time.perf_counter() - t0, stats.t_integrals, stats.t_eigen))
        tot, ti, te = (statistics.median(x) for x in zip(*runs[1:], strict=True))
        print(f"  {name:<12} {1e3 * t_ints:>9.2f} {1e3 * t_eigh:>9.2f} {1e3 * ti:>9.2f} {1e3 * te:>9.2f} "
              f"{1e3 * (tot - ti - te):>9.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--kdensity", type=float, default=0.15, help="k spacing, 1/Å (default 0.15)")
    ap.add_argument("--quick", action="store_true", help="skip the largest structure")
    ap.add_argument("--breakdown", action="store_true",
                    help="also split each side into integrals (+ Bloch phases) and eigenvalues (1 thread)")
    args = ap.parse_args()

    import scipy.linalg
    from pyscf import lib as pyscf_lib
    from test_integrals import pyscf_cell
    from threadpoolctl import threadpool_limits

    from sporep_hpc.basis import load_basis
    from sporep_hpc.kpoints import irreducible_kpoints
    from sporep_hpc.operators import HARTREE_EV, operator_spectrum

    basis = load_basis("ano-valence", 0.1)
    cases = []
    for name, st in structures(args.quick):
        k, w = irreducible_kpoints(st, kdensity=args.kdensity)
        cell = pyscf_cell(st, basis, precision=1e-12)
        cases.append((name, st, k, w, cell, cell.get_abs_kpts(k)))

    print(f"# kinetic spectra, ano-valence, kdensity {args.kdensity} 1/Å, precision 1e-12, "
          f"median of {args.repeat} after warm-up, 1 rank")
    for nt in args.threads:
        print(f"\n# threads = {nt}")
        head = f"{'name':<12} {'n_ao':>5} {'n_k':>4} {'t_ref/s':>9} {'t_new/s':>9} {'ratio':>7}"
        print(f"{head} {'max|dE|/Ha':>11}")
        ratios, tot_ref, tot_new = [], 0.0, 0.0
        for name, st, k, w, cell, kabs in cases:

            def reference(cell=cell, kabs=kabs):
                s = cell.pbc_intor("int1e_ovlp", hermi=1, kpts=kabs)
                t = cell.pbc_intor("int1e_kin", hermi=1, kpts=kabs)
                pairs = zip(t, s, strict=True)
                return np.array([scipy.linalg.eigh(ti, si, eigvals_only=True) for ti, si in pairs])

            def ours(st=st, k=k, w=w, nt=nt):
                return operator_spectrum(st, kpoints=k, weights=w, n_threads=nt)

            with threadpool_limits(limits=nt, user_api="blas"), pyscf_lib.with_omp_threads(nt):
                t_ref, e_ref = timed(reference, args.repeat)
            t_new, bands = timed(ours, args.repeat)
            diff = float(np.nanmax(np.abs(bands.eigenvalues[0] / HARTREE_EV - e_ref)))
            ratios.append(t_ref / t_new)
            tot_ref += t_ref
            tot_new += t_new
            print(f"{name:<12} {bands.n_bands:>5} {len(k):>4} {t_ref:>9.4f} {t_new:>9.4f} "
                  f"{t_ref / t_new:>7.2f} {diff:>11.2e}")
        if args.breakdown and nt == 1:
            breakdown(cases, args.repeat)
        gmean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        print(f"{'geomean':<12} {'':>5} {'':>4} {'':>9} {'':>9} {gmean:>7.2f}")
        print(f"{'total':<12} {'':>5} {'':>4} {tot_ref:>9.4f} {tot_new:>9.4f} {tot_ref / tot_new:>7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
