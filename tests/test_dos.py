"""Smeared DOS accumulation kernel (BandStructure.dos) against numpy brute force and analytic models."""

import itertools
import math

import numpy as np
import pytest
from _references import ref_delta, spin_resolved
from numpy.testing import assert_allclose, assert_array_equal
from scipy import integrate

from sporep_hpc.bands import BandStructure
from sporep_hpc.smearing import SMEARING_KINDS

HBAR2_2M = 3.80998212  # ħ²/2mₑ in eV Å² (CODATA 2018)


def free_electron_bands(a: float, n: int, g_range: int, g_max: float) -> np.ndarray:
    """Free-electron energies ħ²|k+G|²/2m (eV) in a simple cubic cell of side `a` Å, on an n³ grid of k
    (Γ-centred, shifted to [-1/2, 1/2)), for the G with integer components in [-g_range, g_range] and
    |G| ≤ g_max (units 2π/a): shape (n³, number of G)."""
    b = 2 * math.pi / a
    k = (np.array(list(itertools.product(range(n), repeat=3))) / n - 0.5) * b
    g = np.array([v for v in itertools.product(range(-g_range, g_range + 1), repeat=3)
                  if np.linalg.norm(v) <= g_max]) * b
    return HBAR2_2M * np.sum((k[:, None, :] + g[None, :, :]) ** 2, axis=2)


def brute_force_dos(eig, weights, energies, kind, width):
    """Σ_s Σ_k w_k g Σ_n δ((E − ε)/σ)/σ by one numpy broadcast (E, s, k, n); NaN bands skipped."""
    eig, g, w = spin_resolved(eig, weights)
    x = (energies[:, None, None, None] - eig[None]) / width
    d = np.nan_to_num(ref_delta(x, kind), nan=0.0)
    return g * np.einsum("eskn,k->e", d, w) / width


@pytest.mark.parametrize("kind", SMEARING_KINDS)
@pytest.mark.parametrize("n_spin", [1, 2])
def test_matches_brute_force(kind, n_spin, rng):
    eig = np.sort(rng.uniform(-4, 4, size=(n_spin, 37, 9)), axis=2)
    eig[:, ::5, -2:] = np.nan  # ragged NaN padding
    w = rng.uniform(0.1, 1.0, size=37)
    energies = np.linspace(-6, 6, 401)
    bands = BandStructure(eig, w)
    # rtol 1e-12: same formulas summed in a different order; beyond the kernel's cut-off the skipped terms
    # are < 1e-16 × (1/σ) each (test_smearing), far below this tolerance.
    assert_allclose(bands.dos(energies, kind, 0.15), brute_force_dos(eig, w, energies, kind, 0.15),
                    rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", SMEARING_KINDS)
def test_integral_is_number_of_states(kind, rng):
    eig = np.sort(rng.uniform(-2, 2, size=(2, 25, 6)), axis=2)
    eig[1, :, -1] = np.nan
    bands = BandStructure(eig, rng.uniform(size=25))
    width = 0.1
    reach = bands.eigenvalues[~np.isnan(bands.eigenvalues)]
    span = 45 * width  # beyond every cut-off (Fermi-Dirac: 40σ)
    energies = np.arange(reach.min() - span, reach.max() + span, width / 20)
    total = integrate.trapezoid(bands.dos(energies, kind, width), energies)
    # Number of states = Σ_s Σ_k w_k g × (valid bands); trapezoid on a smooth, fully enclosed curve with
    # h = σ/20 is exact to ~1e-12 (Euler-Maclaurin: all derivatives vanish at the ends).
    n_states = 1 * (25 * 6 * 2 - 25) / 25  # two channels, g = 1, one channel has a padded band everywhere
    assert bands.n_states == pytest.approx(n_states, abs=1e-12)
    assert abs(total - n_states) < 1e-9


def test_threads_and_energy_order(rng):
    eig = np.sort(rng.uniform(-5, 5, size=(200, 30)), axis=1)
    bands = BandStructure(eig, rng.uniform(size=200))
    energies = np.linspace(-6, 6, 513)
    one = bands.dos(energies, "gaussian", 0.05, n_threads=1)
    assert_array_equal(bands.dos(energies, "gaussian", 0.05, n_threads=2), one)  # bitwise: fixed chunks
    perm = rng.permutation(513)
    assert_array_equal(bands.dos(energies[perm], "gaussian", 0.05), one[perm])
    assert bands.dos([], "gaussian", 0.05).shape == (0,)


def test_free_electron_dos():
    # Free electrons in a simple cubic cell (a = 4 Å), plane waves folded onto a 16³ Γ-centred grid:
    # D(E) = V/(2π²) (2m/ħ²)^{3/2} √E states/eV/cell including spin (Ashcroft & Mermin eq. 2.61).
    a = 4.0
    eig = free_electron_bands(a, 16, 3, 2.95)
    bands = BandStructure(eig, np.ones(len(eig)))
    energies = np.linspace(6, 30, 25)  # complete shells up to |k+G| = 2.95·b − √3·b/2 → 35 eV
    analytic = a**3 / (2 * math.pi**2) * HBAR2_2M**-1.5 * np.sqrt(energies)
    dos = bands.dos(energies, "gaussian", 0.6)
    # 2 %: 4096 k-points sample the sphere surface coarsely; σ = 0.6 eV bias σ²|D''|/4D < 0.3 %
    assert_allclose(dos, analytic, rtol=0.02)


@pytest.mark.parametrize("kind", SMEARING_KINDS)
def test_dos_is_derivative_of_electron_count(kind, rng):
    # Two kernels cross-checked: dN/dE by central differences of the θ-based count equals the δ-based DOS
    eig = np.sort(rng.uniform(-2, 2, size=(40, 5)), axis=1)
    bands = BandStructure(eig, np.ones(40))
    energies = np.linspace(-2.5, 2.5, 41)
    h = 1e-5
    count = [bands.electron_count(e, kind, 0.2)[0] for e in np.concatenate([energies - h, energies + h])]
    numeric = (np.array(count[41:]) - np.array(count[:41])) / (2 * h)
    # central difference: h² N'''/6 ~ 1e-10 × (states/σ³ ~ 1e3), round-off 1e-15 × 10 states / h ~ 1e-9
    assert_allclose(numeric, bands.dos(energies, kind, 0.2), rtol=0, atol=1e-6)
    assert_allclose([bands.electron_count(e, kind, 0.2)[1] for e in energies], bands.dos(energies, kind, 0.2),
                    rtol=1e-12, atol=1e-12)


def test_free_electron_fermi_level():
    # Same free-electron model as above with 8 electrons per 64 Å³ cell: E_F = ħ²/2m (3π² n)^{2/3}
    # (Ashcroft & Mermin eq. 2.21) = 9.12 eV. 0.5 %: k-sampling of the Fermi sphere on a 16³ grid (the
    # electron count fixes the enclosed volume, so E_F converges faster than the DOS; measured 0.05 %).
    a = 4.0
    eig = free_electron_bands(a, 16, 2, 2.0)
    ef = BandStructure(eig, np.ones(len(eig)), n_electrons=8).fermi_level("gaussian", 0.05)
    analytic = HBAR2_2M * (3 * math.pi**2 * 8 / a**3) ** (2 / 3)
    assert ef == pytest.approx(analytic, rel=0.005)
