"""References shared by the tests, independent of the code under test: smearing closed forms in
numpy/scipy, and the brute-force optimal makespan of a task assignment.

δ(x) and θ(x) follow DESIGN.md §3 (x = (ε_ref − ε)/σ; Methfessel & Paxton PRB 40, 3616 (1989); Marzari et al.
PRL 82, 3296 (1999)); Hermite polynomials come from numpy, not from our recurrence.
"""

import itertools
import math

import numpy as np
from numpy.polynomial.hermite import hermval
from scipy import special


def _hermite(n: int, x: np.ndarray) -> np.ndarray:
    """Physicists' Hermite polynomial H_n(x) from numpy (independent of our recurrence)."""
    coef = np.zeros(n + 1)
    coef[n] = 1.0
    return hermval(x, coef)


def _mp_coefficients(order: int) -> list[float]:
    """A_n = (-1)^n / (n! 4^n √π), n = 0..order (Methfessel-Paxton)."""
    return [(-1) ** n / (math.factorial(n) * 4**n * math.sqrt(math.pi)) for n in range(order + 1)]


def ref_delta(x: np.ndarray, kind: str, order: int = 1) -> np.ndarray:
    """Textbook δ(x), without cut-off."""
    with np.errstate(over="ignore", under="ignore"):
        if kind == "gaussian":
            return np.exp(-x * x) / math.sqrt(math.pi)
        if kind == "fermi-dirac":
            return special.expit(x) * special.expit(-x)
        if kind == "cold":
            u = x - 1 / math.sqrt(2)
            return np.exp(-u * u) * (2 - math.sqrt(2) * x) / math.sqrt(math.pi)
        a = _mp_coefficients(order)
        return np.exp(-x * x) * sum(a[n] * _hermite(2 * n, x) for n in range(order + 1))


def ref_theta(x: np.ndarray, kind: str, order: int = 1) -> np.ndarray:
    """Textbook occupation θ(x), without cut-off."""
    with np.errstate(over="ignore", under="ignore"):
        if kind == "gaussian":
            return 0.5 * special.erfc(-x)
        if kind == "fermi-dirac":
            return special.expit(x)
        if kind == "cold":
            u = x - 1 / math.sqrt(2)
            return 0.5 * special.erf(u) + np.exp(-u * u) / math.sqrt(2 * math.pi) + 0.5
        a = _mp_coefficients(order)
        tail = sum(a[n] * _hermite(2 * n - 1, x) for n in range(1, order + 1))
        return 0.5 * special.erfc(-x) - np.exp(-x * x) * tail


def spin_resolved(eig, weights) -> tuple[np.ndarray, int, np.ndarray]:
    """(eigenvalues as (n_spin, n_k, n_bands), spin degeneracy g, k weights normalised to sum 1).

    A 2-D input is one spin channel; g = 2 with one channel, 1 with two.
    """
    eig = np.asarray(eig, dtype=float)
    if eig.ndim == 2:
        eig = eig[None]
    g = 2 if eig.shape[0] == 1 else 1
    return eig, g, np.asarray(weights) / np.sum(weights)


def brute_force_makespan(costs: list[float], n_bins: int) -> float:
    """Optimal makespan of assigning `costs` to `n_bins` workers, by trying all n_bins**len(costs) ways."""
    best = math.inf
    for assignment in itertools.product(range(n_bins), repeat=len(costs)):
        loads = [0.0] * n_bins
        for c, k in zip(costs, assignment, strict=True):
            loads[k] += c
        best = min(best, max(loads))
    return best
