"""Python face of the smearing kernels (ext/smearing.pyx): names, validation, vectorised δ and θ.

Convention (DESIGN.md §3): x = (ε_ref − ε)/σ, so θ(x) → 1 for states far below ε_ref and δ(x) = dθ/dx.

- gaussian: θ = ½ erfc(−x), δ = e^{−x²}/√π
- fermi-dirac: θ = 1/(1 + e^{−x}), δ = 1/(2 + e^{x} + e^{−x})
- methfessel-paxton (order N ≥ 0): δ_N = e^{−x²} Σ_{n≤N} A_n H_{2n}(x),
  θ_N = ½ erfc(−x) − e^{−x²} Σ_{1≤n≤N} A_n H_{2n−1}(x), A_n = (−1)^n / (n! 4^n √π); order 0 is the Gaussian
- cold (Marzari–Vanderbilt), u = x − 1/√2: δ = e^{−u²}(2 − √2 x)/√π, θ = ½ erfc(−u) + e^{−u²}/√(2π)

Beyond a cut-off |x| > x_c (7 for gaussian and cold, 40 for Fermi-Dirac, ≥ 7 growing with the order for
Methfessel-Paxton, chosen so that |δ| < 1e-16 there) δ is exactly 0 and θ exactly 0 or 1, so no
argument overflows (tested up to |x| = 1e6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.polynomial.hermite import hermval

from ._ext import load
from ._validation import check_choice, check_interval
from .errors import ParameterError
from .threads import resolve_threads

__all__ = ["MAX_MP_ORDER", "SMEARING_KINDS", "Smearing", "as_smearing", "cutoff", "delta", "dtheta", "theta"]

#: name -> kernel code (switched inside the kernels of ext/smearing.pyx)
_KIND_CODES = {"gaussian": 0, "fermi-dirac": 1, "methfessel-paxton": 2, "cold": 3}
SMEARING_KINDS = tuple(_KIND_CODES)
MAX_MP_ORDER = 10
_TAIL = 1e-16


def _mp_envelope(x: float, order: int) -> float:
    """Upper bound of |δ_N(x)| and |θ_N(x) − step| for Methfessel-Paxton at x ≥ 0 (numpy, for the cut-off)."""
    total = math.erfc(x)  # Gaussian part of θ
    for n in range(order + 1):
        a = (-1) ** n / (math.factorial(n) * 4**n * math.sqrt(math.pi))
        for m in (2 * n, 2 * n - 1):
            if m >= 0:
                coef = np.zeros(m + 1)
                coef[m] = 1.0
                total += abs(a * hermval(x, coef)) * math.exp(-x * x)
    return total


@lru_cache(maxsize=64)
def _cutoff(code: int, order: int) -> float:
    if code == 1:
        return 40.0
    if code in (0, 3) or order == 0:
        return 7.0
    x = 7.0
    while _mp_envelope(x, order) > _TAIL:
        x += 0.25
    return x


def _check_kind_order(kind: str, order: int) -> tuple[int, int]:
    check_choice("kind", kind, SMEARING_KINDS)
    check_interval("order", int(order) if isinstance(order, np.integer) else order, 0, MAX_MP_ORDER,
                   integer=True)
    code = _KIND_CODES[kind]
    return code, int(order) if code == 2 else 0


def cutoff(kind: str, order: int = 1) -> float:
    """Argument cut-off x_c of a smearing: |δ(x)| < 1e-16 for |x| > x_c, where the kernels skip the term.

    Parameters
    ----------
    kind : one of SMEARING_KINDS
    order : int in [0, MAX_MP_ORDER]
        Methfessel-Paxton order (ignored by the other kinds).

    Returns
    -------
    float
        Dimensionless cut-off (in units of the width σ).
    """
    code, order = _check_kind_order(kind, order)
    return _cutoff(code, order)


def _evaluate(which: str, x: Any, kind: str, order: int, n_threads: int | None) -> np.ndarray:
    code, order = _check_kind_order(kind, order)
    arr = np.asarray(x, dtype=np.float64)
    flat = np.ascontiguousarray(arr.reshape(-1))
    out = np.empty_like(flat)
    kernel = getattr(load("smearing"), f"{which}_array")
    status = kernel(x=flat, out=out, kind=code, order=order, cutoff=_cutoff(code, order),
                    n_threads=resolve_threads(n_threads))
    if status != 0:  # pragma: no cover - inputs are clean by construction
        raise RuntimeError(f"smearing kernel {which} failed with status {status}")
    return out.reshape(arr.shape)[()]


def delta(x: Any, kind: str = "gaussian", order: int = 1, n_threads: int | None = None) -> np.ndarray:
    """Smearing function δ(x) = dθ/dx (dimensionless; the DOS uses δ(x)/σ).

    Parameters
    ----------
    x : array_like of float, any shape
        Dimensionless argument (ε_ref − ε)/σ. NaN propagates as 0.
    kind : one of SMEARING_KINDS
    order : int
        Methfessel-Paxton order N ≥ 0 (ignored by the other kinds).
    n_threads : int, optional
        OpenMP threads (default: OMP_NUM_THREADS or 1).

    Returns
    -------
    ndarray of the shape of `x`, float64 (a numpy float64 scalar for a scalar `x`)
    """
    return _evaluate("delta", x, kind, order, n_threads)


def theta(x: Any, kind: str = "gaussian", order: int = 1, n_threads: int | None = None) -> np.ndarray:
    """Occupation function θ(x): 1 far below the reference (x → +∞), 0 far above (x → −∞).

    Parameters
    ----------
    x : array_like of float, any shape
        Dimensionless argument (ε_ref − ε)/σ. NaN propagates as NaN.
    kind : one of SMEARING_KINDS
    order : int
        Methfessel-Paxton order N ≥ 0 (ignored by the other kinds).
    n_threads : int, optional

    Returns
    -------
    ndarray of the shape of `x`, float64 (a numpy float64 scalar for a scalar `x`)
        Methfessel-Paxton and cold occupations may leave [0, 1] slightly, as they do in DFT codes.
    """
    return _evaluate("theta", x, kind, order, n_threads)


def dtheta(x: Any, kind: str = "gaussian", order: int = 1, n_threads: int | None = None) -> np.ndarray:
    """Derivative dθ/dx of the occupation function; identical to `delta` by construction.

    Provided so that callers solving for a Fermi level can name the derivative they use
    (dN/dμ = Σ w g dθ/dx / σ). Same parameters and return value as `delta`.
    """
    return _evaluate("delta", x, kind, order, n_threads)


@dataclass(frozen=True)
class Smearing:
    """A smearing function and its width.

    Attributes
    ----------
    kind : str
        One of SMEARING_KINDS.
    width : float
        σ in eV, > 0.
    order : int
        Methfessel-Paxton order N in [0, MAX_MP_ORDER]; kept but unused by the other kinds.
    """

    kind: str = "gaussian"
    width: float = 0.05  # eV
    order: int = 1

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, SMEARING_KINDS)
        check_interval("width", self.width, 0.0, None, closed="neither", unit="eV")
        check_interval("order", self.order, 0, MAX_MP_ORDER, integer=True)
        object.__setattr__(self, "width", float(self.width))
        object.__setattr__(self, "order", int(self.order))

    @property
    def code(self) -> int:
        """Integer code of the kind used by the kernels."""
        return _KIND_CODES[self.kind]

    @property
    def kernel_order(self) -> int:
        """Order passed to the kernels (0 for kinds without an order)."""
        return self.order if self.kind == "methfessel-paxton" else 0

    @property
    def cutoff(self) -> float:
        """Dimensionless argument cut-off (see `cutoff`)."""
        return _cutoff(self.code, self.kernel_order)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        return {"kind": self.kind, "width": self.width, "order": self.order}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Smearing:
        """Inverse of `to_dict`."""
        try:
            return cls(kind=data["kind"], width=data["width"], order=data.get("order", 1))
        except (KeyError, TypeError) as exc:
            raise ParameterError(f"invalid smearing parameters {data!r}") from exc


def as_smearing(smearing: str | Smearing = "gaussian", width: float = 0.05, order: int = 1) -> Smearing:
    """A `Smearing` from either an instance (returned unchanged) or a kind name plus width and order."""
    if isinstance(smearing, Smearing):
        return smearing
    return Smearing(kind=smearing, width=width, order=order)
