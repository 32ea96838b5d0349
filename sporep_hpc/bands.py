"""Band structures: eigenvalues on weighted k-points, Fermi level, band edges, occupations and smeared DOS.

Conventions (DESIGN.md §3): energies in eV; k-weights normalised to 1; spin degeneracy g = 2 for one spin
channel and 1 per channel for two; DOS(E) = Σ_s Σ_k w_k Σ_n (g/σ) δ((E − ε_snk)/σ) in states/eV/cell.

The Fermi level solves Σ_s Σ_k w_k Σ_n g θ((E_F − ε)/σ) = n_electrons to 1e-10 electrons with a
bracketed, safeguarded Newton iteration (bisection whenever Newton leaves the bracket or stalls), so it
always terminates. When no band crosses E_F the material is an insulator; if the electron count at the
mid-gap energy (VBM + CBM)/2 equals n_electrons within 1e-8, E_F is that mid-gap energy. The same rule
holds for any empty window around the root (no eigenvalue in it), such as a semimetal's bands leave
between the k-points: its middle, when the count there equals n_electrons within 1e-8.

Band edges (`vbm`, `cbm`, `band_gap`, `is_metal`) are taken relative to `fermi_energy`. When the band
structure has no `fermi_energy`, they use the Fermi level computed with the default smearing
(`DEFAULT_SMEARING`: gaussian, 0.05 eV), which needs `n_electrons`; call `with_fermi_level(...)` first to
choose another smearing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from ._ext import load
from ._validation import check_interval
from .errors import InputError, ParameterError
from .smearing import Smearing, as_smearing
from .threads import resolve_threads

__all__ = ["DEFAULT_SMEARING", "BandEdges", "BandStructure"]

DEFAULT_SMEARING = Smearing("gaussian", 0.05, 1)
ELECTRON_TOL = 1e-10  # electrons: Fermi-level solver tolerance
MIDGAP_TOL = 1e-8  # electrons: mid-gap rule tolerance
_MAX_CHUNKS = 64  # fixed reduction chunks of the kernels (independent of the thread count)


@dataclass(frozen=True)
class BandEdges:
    """Band edges relative to a Fermi level.

    Attributes
    ----------
    fermi_energy : float, eV
    vbm : float, eV
        Highest eigenvalue at or below E_F (E_F itself for a metal; NaN when no state lies below E_F).
    cbm : float, eV
        Lowest eigenvalue above E_F (E_F itself for a metal; NaN when no state lies above E_F).
    band_gap : float, eV
        cbm − vbm for an insulator, 0 for a metal, NaN when an edge is missing.
    is_metal : bool
        True when some band n of some spin has min_k ε_n < E_F < max_k ε_n.
    """

    fermi_energy: float
    vbm: float
    cbm: float
    band_gap: float
    is_metal: bool


def _as_eigenvalues(eigenvalues: Any) -> np.ndarray:
    eig = np.array(eigenvalues, dtype=np.float64)  # a private copy: we sort it and freeze it
    if eig.ndim == 2:
        eig = eig[None]
    if eig.ndim != 3 or eig.shape[0] not in (1, 2) or eig.shape[1] == 0 or eig.shape[2] == 0:
        raise InputError(
            "eigenvalues must have shape (n_spin in {1, 2}, n_k, n_bands) or (n_k, n_bands); "
            f"got {np.shape(eigenvalues)}"
        )
    if np.any(np.isinf(eig)):
        raise InputError("eigenvalues must be finite (NaN marks padded bands); found inf")
    if np.all(np.isnan(eig)):
        raise InputError("eigenvalues are all NaN")
    # Each (spin, k) spectrum sorted ascending, NaN padding last: band index n is then well defined.
    eig = np.ascontiguousarray(np.sort(eig, axis=2))
    eig.flags.writeable = False
    return eig


def _as_weights(weights: Any, n_k: int) -> np.ndarray:
    w = np.array(weights, dtype=np.float64).reshape(-1)
    if w.shape != (n_k,):
        raise InputError(f"weights must have shape (n_k,) = ({n_k},); got {np.shape(weights)}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise InputError("weights must be finite, non-negative and not all zero")
    w = w / w.sum()
    w.flags.writeable = False
    return w


@dataclass(frozen=True, eq=False)
class BandStructure:
    """Eigenvalues on a weighted k-point set.

    Attributes
    ----------
    eigenvalues : ndarray of shape (n_spin, n_k, n_bands), float64, eV
        Sorted ascending per (spin, k); NaN marks padded (absent) bands. A (n_k, n_bands) input is one spin
        channel. Read-only.
    weights : ndarray of shape (n_k,), float64
        k-point weights normalised to sum 1 (any positive scale is accepted and normalised). Read-only.
    n_electrons : float or None
        Electrons per cell; needed to locate the Fermi level.
    fermi_energy : float or None, eV
        Fermi level if known (from a DFT code or `with_fermi_level`).
    kpoints : ndarray of shape (n_k, 3), float64, fractional, or None
        The k-points (informational).
    """

    eigenvalues: np.ndarray = field(repr=False)
    weights: np.ndarray = field(repr=False)
    n_electrons: float | None = None
    fermi_energy: float | None = None
    kpoints: np.ndarray | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"BandStructure(n_spin={self.n_spin}, n_k={self.n_kpoints}, n_bands={self.n_bands}, "
            f"n_electrons={self.n_electrons}, fermi_energy={self.fermi_energy})"
        )

    def __post_init__(self) -> None:
        eig = _as_eigenvalues(self.eigenvalues)
        object.__setattr__(self, "eigenvalues", eig)
        object.__setattr__(self, "weights", _as_weights(self.weights, eig.shape[1]))
        if self.kpoints is not None:
            k = np.array(self.kpoints, dtype=np.float64)
            if k.shape != (eig.shape[1], 3):
                raise InputError(f"kpoints must have shape (n_k, 3) = ({eig.shape[1]}, 3); got {k.shape}")
            k.flags.writeable = False
            object.__setattr__(self, "kpoints", k)
        if self.n_electrons is not None:
            check_interval("n_electrons", self.n_electrons, 0.0, None, closed="neither")
            object.__setattr__(self, "n_electrons", float(self.n_electrons))
            if self.n_electrons > self.n_states * (1 + 1e-12) + MIDGAP_TOL:
                raise InputError(
                    f"n_electrons = {self.n_electrons:g} exceeds the {self.n_states:g} states of the bands"
                )
        if self.fermi_energy is not None:
            check_interval("fermi_energy", self.fermi_energy, None, None, unit="eV")
            object.__setattr__(self, "fermi_energy", float(self.fermi_energy))

    # ------------------------------------------------------------------ shape
    @property
    def n_spin(self) -> int:
        """Number of spin channels (1 or 2)."""
        return self.eigenvalues.shape[0]

    @property
    def n_kpoints(self) -> int:
        """Number of k-points n_k."""
        return self.eigenvalues.shape[1]

    @property
    def n_bands(self) -> int:
        """Number of band slots n_bands (padded bands included)."""
        return self.eigenvalues.shape[2]

    @property
    def spin_degeneracy(self) -> int:
        """g = 2 for one spin channel, 1 for two."""
        return 2 if self.n_spin == 1 else 1

    @property
    def n_states(self) -> float:
        """Σ_s Σ_k w_k g (number of non-padded bands at k): the number of electrons the bands can hold."""
        valid = np.sum(~np.isnan(self.eigenvalues), axis=2)  # (n_spin, n_k)
        return float(self.spin_degeneracy * np.sum(valid * self.weights[None, :]))

    # ------------------------------------------------------------------ kernels
    def _rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Eigenvalues as (n_spin n_k, n_bands) rows, per-row weight w_k g, and a chunk work array."""
        eig = self.eigenvalues.reshape(self.n_spin * self.n_kpoints, self.n_bands)
        wk = np.ascontiguousarray(np.tile(self.weights, self.n_spin) * self.spin_degeneracy)
        return eig, wk, np.empty((min(_MAX_CHUNKS, eig.shape[0]), 2))

    def electron_count(self, energy: float, smearing: str | Smearing = "gaussian", width: float = 0.05,
                       order: int = 1, n_threads: int | None = None) -> tuple[float, float]:
        """Number of electrons N(E) below `energy` with a smearing, and dN/dE (electrons/eV).

        Parameters
        ----------
        energy : float, eV
        smearing : kind name or Smearing
        width : float, eV
        order : int
            Methfessel-Paxton order.

        Returns
        -------
        (float, float)
            N(E) = Σ_s Σ_k w_k g Σ_n θ((E − ε)/σ) and its derivative.
        """
        sm = as_smearing(smearing, width, order)
        check_interval("energy", energy, None, None, unit="eV")
        eig, wk, work = self._rows()
        out = np.empty(2)
        self._count(eig, wk, work, out, float(energy), sm, resolve_threads(n_threads))
        return float(out[0]), float(out[1])

    @staticmethod
    def _count(eig, wk, work, out, energy: float, sm: Smearing, n_threads: int) -> None:
        status = load("smearing").electron_count(eig=eig, wk=wk, mu=energy, work=work, out=out, kind=sm.code,
                                                 order=sm.kernel_order, sigma=sm.width, cutoff=sm.cutoff,
                                                 n_threads=n_threads)
        if status != 0:  # pragma: no cover - clean inputs by construction
            raise RuntimeError(f"electron_count kernel failed with status {status}")

    # ------------------------------------------------------------------ Fermi level
    def fermi_level(self, smearing: str | Smearing = "gaussian", width: float = 0.05, order: int = 1,
                    n_threads: int | None = None) -> float:
        """Fermi level (eV) for `n_electrons` with the given smearing (DESIGN.md §3, mid-gap rule).

        Parameters
        ----------
        smearing : one of smearing.SMEARING_KINDS, or a Smearing (then width and order are ignored)
        width : float, eV, > 0
        order : int
            Methfessel-Paxton order.
        n_threads : int, optional
            OpenMP threads for the electron-count kernel (the result does not depend on it).

        Returns
        -------
        float, eV

        Raises
        ------
        InputError
            When `n_electrons` is None.
        """
        sm = as_smearing(smearing, width, order)
        if self.n_electrons is None:
            raise InputError("the Fermi level needs n_electrons; none was given for this band structure")
        return self._fermi_impl(sm, resolve_threads(n_threads))

    def _fermi_impl(self, sm: Smearing, n_threads: int) -> float:
        """Safeguarded Newton/bisection on N(μ) − n_electrons for clean inputs."""
        eig, wk, work = self._rows()
        out = np.empty(2)
        n_e = float(self.n_electrons)  # type: ignore[arg-type]
        pad = (sm.cutoff + 1.0) * sm.width
        lo = float(np.nanmin(eig)) - pad  # N(lo) = 0 exactly (every θ beyond the cut-off)
        hi = float(np.nanmax(eig)) + pad  # N(hi) = n_states exactly
        if n_e >= self.n_states - MIDGAP_TOL:
            # All bands filled: the count is met on [max ε + x_c σ, ∞); take the highest eigenvalue.
            return float(np.nanmax(eig))

        def f(mu: float) -> tuple[float, float]:
            self._count(eig, wk, work, out, mu, sm, n_threads)
            return out[0] - n_e, out[1]

        mu = 0.5 * (lo + hi)
        width_before = hi - lo
        for iteration in range(1000):
            fm, dfm = f(mu)
            if abs(fm) <= ELECTRON_TOL:
                break
            if fm < 0.0:
                lo = mu
            else:
                hi = mu
            if hi - lo <= 4e-16 * max(1.0, abs(mu)):
                break  # bracket at machine precision: the best representable root
            candidate = mu - fm / dfm if dfm > 0.0 else math.nan
            # Newton inside the bracket; bisect when it leaves it or when the bracket stopped halving.
            if not (lo < candidate < hi) or (iteration % 4 == 3 and hi - lo > 0.5 * width_before):
                candidate = 0.5 * (lo + hi)
            if iteration % 4 == 3:
                width_before = hi - lo
            mu = candidate
        return self._midgap(mu, sm, eig, wk, work, out, n_e, n_threads)

    def _midgap(self, mu, sm, eig, wk, work, out, n_e, n_threads) -> float:
        """The middle of the empty window around the root `mu` (from the highest eigenvalue at or below
        it to the lowest above it) when the count there equals n_e within MIDGAP_TOL: the count is then
        met on that whole window and the root is arbitrary. The window is an insulator's gap, or an
        energy range that a metal's bands cross between the k-points (a semimetal) without an eigenvalue
        in it (DESIGN.md §3)."""
        with np.errstate(invalid="ignore"):
            below, above = self.eigenvalues[self.eigenvalues <= mu], self.eigenvalues[self.eigenvalues > mu]
        if not below.size or not above.size:
            return mu
        mid = 0.5 * (float(below.max()) + float(above.min()))
        self._count(eig, wk, work, out, mid, sm, n_threads)
        return mid if abs(out[0] - n_e) <= MIDGAP_TOL else mu

    def with_fermi_level(self, smearing: str | Smearing = "gaussian", width: float = 0.05, order: int = 1,
                         n_threads: int | None = None) -> BandStructure:
        """A copy whose `fermi_energy` is `fermi_level(smearing, width, order)`."""
        ef = self.fermi_level(smearing, width, order, n_threads)
        return BandStructure(self.eigenvalues, self.weights, self.n_electrons, ef, self.kpoints)

    # ------------------------------------------------------------------ edges
    def _edges_at(self, ef: float) -> BandEdges:
        eig = self.eigenvalues
        with np.errstate(invalid="ignore"):
            below = eig[eig <= ef]
            above = eig[eig > ef]
        band_min = np.nanmin(np.where(np.isnan(eig), np.inf, eig), axis=1)  # (n_spin, n_bands)
        band_max = np.nanmax(np.where(np.isnan(eig), -np.inf, eig), axis=1)
        is_metal = bool(np.any((band_min < ef) & (band_max > ef)))
        if is_metal:
            return BandEdges(ef, ef, ef, 0.0, True)
        vbm = float(below.max()) if below.size else math.nan
        cbm = float(above.min()) if above.size else math.nan
        return BandEdges(ef, vbm, cbm, cbm - vbm, False)

    @cached_property
    def edges(self) -> BandEdges:
        """Band edges at `fermi_energy`, or at the default-smearing Fermi level when it is None."""
        ef = self.fermi_energy
        if ef is None:
            if self.n_electrons is None:
                raise InputError("band edges need fermi_energy or n_electrons; it has neither")
            ef = self._fermi_impl(DEFAULT_SMEARING, resolve_threads(None))
        return self._edges_at(ef)

    @property
    def vbm(self) -> float:
        """Valence-band maximum (eV); E_F for a metal. See `edges`."""
        return self.edges.vbm

    @property
    def cbm(self) -> float:
        """Conduction-band minimum (eV); E_F for a metal. See `edges`."""
        return self.edges.cbm

    @property
    def band_gap(self) -> float:
        """cbm − vbm (eV); 0 for a metal. See `edges`."""
        return self.edges.band_gap

    @property
    def is_metal(self) -> bool:
        """True when a band crosses the Fermi level. See `edges`."""
        return self.edges.is_metal

    # ------------------------------------------------------------------ occupations and DOS
    def occupations(self, smearing: str | Smearing = "gaussian", width: float = 0.05, order: int = 1,
                    n_threads: int | None = None) -> np.ndarray:
        """Band occupations g θ((E_F − ε)/σ).

        E_F is `fermi_energy` when set, else `fermi_level(smearing, width, order)`.

        Returns
        -------
        ndarray of shape (n_spin, n_k, n_bands), float64
            Electrons per band and k-point (up to 2 with one spin channel, 1 with two; Methfessel-Paxton and
            cold smearing may overshoot slightly); NaN for padded bands.
        """
        sm = as_smearing(smearing, width, order)
        nt = resolve_threads(n_threads)
        ef = self.fermi_energy if self.fermi_energy is not None else self.fermi_level(sm, n_threads=nt)
        x = np.ascontiguousarray(((ef - self.eigenvalues) / sm.width).reshape(-1))
        out = np.empty_like(x)
        status = load("smearing").theta_array(x=x, out=out, kind=sm.code, order=sm.kernel_order,
                                              cutoff=sm.cutoff, n_threads=nt)
        if status != 0:  # pragma: no cover
            raise RuntimeError(f"theta kernel failed with status {status}")
        return self.spin_degeneracy * out.reshape(self.eigenvalues.shape)

    def dos(self, energies: Any, smearing: str | Smearing = "gaussian", width: float = 0.05, order: int = 1,
            n_threads: int | None = None) -> np.ndarray:
        """Smeared density of states DOS(E) = Σ_s Σ_k w_k Σ_n (g/σ) δ((E − ε_snk)/σ).

        Parameters
        ----------
        energies : array_like of shape (n_E,), float, eV
            Absolute energies, any order.
        smearing : one of smearing.SMEARING_KINDS, or a Smearing (then width and order are ignored)
        width : float, eV, > 0
        order : int
            Methfessel-Paxton order.
        n_threads : int, optional
            OpenMP threads (the result does not depend on it).

        Returns
        -------
        ndarray of shape (n_E,), float64, states/eV/cell
        """
        sm = as_smearing(smearing, width, order)
        e = np.ascontiguousarray(energies, dtype=np.float64)
        if e.ndim != 1 or not np.all(np.isfinite(e)):
            raise ParameterError(f"energies must be a finite 1-D array; got shape {e.shape}")
        return self._dos_impl(e, sm, resolve_threads(n_threads))

    def _dos_impl(self, energies: np.ndarray, sm: Smearing, n_threads: int) -> np.ndarray:
        """DOS for clean contiguous float64 energies (any order)."""
        order = None
        if energies.size > 1 and np.any(np.diff(energies) < 0):
            order = np.argsort(energies, kind="stable")
            energies = np.ascontiguousarray(energies[order])
        eig, wk, _ = self._rows()
        out = np.empty(energies.size)
        work = np.empty((min(_MAX_CHUNKS, eig.shape[0]), energies.size))
        status = load("smearing").dos(eig=eig, wk=wk, energies=energies, out=out, work=work, kind=sm.code,
                                      order=sm.kernel_order, sigma=sm.width, cutoff=sm.cutoff,
                                      n_threads=n_threads)
        if status != 0:  # pragma: no cover
            raise RuntimeError(f"dos kernel failed with status {status}")
        if order is not None:
            unsorted = np.empty_like(out)
            unsorted[order] = out
            out = unsorted
        return out
