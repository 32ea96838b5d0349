"""Benchmark: smeared DOS of a 500 k-point × 200 band spectrum on 513 energies.

Candidate: BandStructure.dos (ext/smearing.pyx, OpenMP, cut-off at |x| > 7 for the Gaussian).
Reference: a straightforward numpy broadcast Σ_k w_k g Σ_n exp(−x²)/(√π σ) over (energies, k, bands),
evaluated in blocks of 32 energies so that its temporaries stay near 30 MB (one full (513, 500, 200)
broadcast would need several GB).

Both are timed in the same run (one warm-up, median of `--repeat` runs) and checked to agree to 1e-12.
The spectrum is random and uniform on [E_F − 6, E_F + 6] eV around the 10 eV window, so almost every
eigenvalue contributes: the cut-off gains less here than for a real spectrum spread over tens of eV.

Usage: python benchmarks/bench_dos.py [--repeat 5] [--threads 1 2]
Output: name  size  t_ref  t_new  ratio  (with threads).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from sporep_hpc.bands import BandStructure

N_K, N_BANDS, N_E, SIGMA = 500, 200, 513, 0.05


def numpy_dos(eig: np.ndarray, weights: np.ndarray, energies: np.ndarray, sigma: float, block: int = 32):
    """Reference: Gaussian DOS by numpy broadcasting, blocks of energies (one spin channel, g = 2)."""
    out = np.empty(energies.size)
    w = 2.0 * weights / weights.sum() / (math.sqrt(math.pi) * sigma)
    for start in range(0, energies.size, block):
        x = (energies[start:start + block, None, None] - eig[None]) / sigma
        out[start:start + block] = np.exp(-x * x).sum(axis=2) @ w
    return out


def median_time(func, repeat: int) -> float:
    func()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    eig = np.sort(rng.uniform(-6.0, 6.0, size=(N_K, N_BANDS)), axis=1)
    weights = rng.uniform(0.5, 1.5, size=N_K)
    energies = np.linspace(-5.0, 5.0, N_E)
    bands = BandStructure(eig, weights)

    reference = numpy_dos(eig, weights, energies, SIGMA)
    t_ref = median_time(lambda: numpy_dos(eig, weights, energies, SIGMA), args.repeat)
    size = f"{N_K}kx{N_BANDS}bx{N_E}E"
    print(f"{'name':<12} {'size':<16} {'threads':>7} {'t_ref[s]':>10} {'t_new[s]':>10} {'ratio':>8}")
    for n_threads in args.threads:
        new = bands.dos(energies, "gaussian", SIGMA, n_threads=n_threads)
        err = float(np.max(np.abs(new - reference) / np.maximum(1.0, np.abs(reference))))
        if err > 1e-12:
            raise SystemExit(f"kernel and numpy disagree: max relative error {err:.2e}")
        def candidate(nt=n_threads):
            return bands.dos(energies, "gaussian", SIGMA, n_threads=nt)

        t_new = median_time(candidate, args.repeat)
        print(f"{'dos':<12} {size:<16} {n_threads:>7d} {t_ref:>10.4f} {t_new:>10.4f} {t_ref / t_new:>8.1f}")


if __name__ == "__main__":
    main()
