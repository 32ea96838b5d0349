"""BandStructure: Fermi level, band edges, occupations (analytic models and numpy/scipy references)."""

import dataclasses
import math

import numpy as np
import pytest
from _references import ref_theta, spin_resolved
from numpy.testing import assert_allclose, assert_array_equal

from sporep_hpc.bands import BandStructure
from sporep_hpc.errors import InputError, ParameterError
from sporep_hpc.smearing import SMEARING_KINDS


def ref_count(eig, weights, mu, kind, width, order=1):
    """Σ_s Σ_k w_k g Σ_n θ((μ − ε)/σ) in numpy, NaN bands skipped."""
    eig, g, w = spin_resolved(eig, weights)
    with np.errstate(over="ignore"):
        theta = np.nan_to_num(ref_theta((mu - eig) / width, kind, order), nan=0.0)
    return g * np.einsum("skn,k->", theta, w)


def tight_binding_1d(n_k=2000, t=1.0):
    """ε(k) = −2t cos(2πk) on a uniform grid (one band)."""
    k = (np.arange(n_k) + 0.5) / n_k - 0.5
    return -2 * t * np.cos(2 * np.pi * k)[:, None], np.full(n_k, 1.0 / n_k)


@pytest.mark.parametrize("kind", SMEARING_KINDS)
@pytest.mark.parametrize("n_electrons", [0.3, 1.0, 1.37, 1.9])
def test_fermi_level_meets_count(kind, n_electrons, rng):
    # Random metal-like spectrum: after solving, an independent numpy count at E_F equals n_electrons.
    eig = np.sort(rng.uniform(-3, 3, size=(50, 6)), axis=1)
    w = rng.uniform(0.5, 1.5, size=50)
    bands = BandStructure(eig, w, n_electrons=n_electrons * 6)
    ef = bands.fermi_level(kind, 0.2)
    # 1e-9: the solver targets 1e-10 electrons; scipy vs kernel evaluation differ by ~1e-14 per state
    assert abs(ref_count(eig, w, ef, kind, 0.2) - n_electrons * 6) < 1e-9
    count, dcount = bands.electron_count(ef, kind, 0.2)
    assert abs(count - n_electrons * 6) < 1e-10
    assert dcount > 0


def test_half_filled_tight_binding_is_zero():
    # Particle-hole symmetric band, one electron (half filling, g = 2): E_F = 0 by symmetry for the symmetric
    # smearings (gaussian, Fermi-Dirac; the k grid is symmetric under ε -> −ε).
    eig, w = tight_binding_1d()
    bands = BandStructure(eig, w, n_electrons=1.0)
    for kind in ("gaussian", "fermi-dirac"):
        assert abs(bands.fermi_level(kind, 0.05)) < 1e-10
    assert bands.is_metal and bands.band_gap == 0.0


@pytest.mark.parametrize("n_electrons", [0.4, 1.0, 1.6])
def test_tight_binding_fermi_level_analytic(n_electrons):
    # Zero-smearing limit: occupied fraction n_e/2 of the k-line -> k_F = n_e/4, E_F = −2t cos(π n_e / 2).
    # With σ = 1e-3 t and 2e4 k-points the smearing and sampling shifts are < 1e-4 t (Sommerfeld: ~σ²).
    eig, w = tight_binding_1d(20000)
    ef = BandStructure(eig, w, n_electrons=n_electrons).fermi_level("gaussian", 1e-3)
    assert abs(ef - (-2 * math.cos(math.pi * n_electrons / 2))) < 1e-4


def two_band_insulator(gap=3.0, n_k=40):
    """Valence band in [−1, 0], conduction band in [gap, gap + 1], one spin channel, 2 electrons."""
    k = np.linspace(0, 1, n_k)
    eig = np.stack([-0.5 - 0.5 * np.cos(np.pi * k), gap + 0.5 - 0.5 * np.cos(np.pi * k)], axis=1)
    return eig, np.ones(n_k)


@pytest.mark.parametrize("kind", SMEARING_KINDS)
def test_insulator_midgap_rule(kind):
    eig, w = two_band_insulator()
    bands = BandStructure(eig, w, n_electrons=2)
    ef = bands.fermi_level(kind, 0.05)
    # Band edges many σ away: the count is exact on the whole gap, so E_F is the mid-gap energy
    vbm, cbm = eig[:, 0].max(), eig[:, 1].min()
    assert ef == pytest.approx(0.5 * (vbm + cbm), abs=1e-12)
    fixed = bands.with_fermi_level(kind, 0.05)
    assert fixed.vbm == vbm and fixed.cbm == cbm
    assert fixed.band_gap == pytest.approx(3.0, abs=1e-12)
    assert not fixed.is_metal
    # starting point independence: an extra empty band far away changes nothing
    more = BandStructure(np.concatenate([eig, eig[:, 1:] + 40], axis=1), w, n_electrons=2)
    assert more.fermi_level(kind, 0.05) == pytest.approx(ef, abs=1e-12)


@pytest.mark.parametrize("kind", SMEARING_KINDS)
def test_empty_window_of_a_semimetal_takes_its_middle(kind):
    # Band 0 spans [0, 2] and band 1 [1, 3] (their ranges overlap: a metal by the band test of DESIGN §3),
    # yet no eigenvalue lies in (1, 2): the count is met on that whole window (measured on an AFLOW
    # prototype, hP8: a 0.7 eV window where E_F moved by 0.16 eV with 1e-12 eV changes of the eigenvalues)
    eig = np.array([[0.0, 1.0], [2.0, 3.0]])
    w = np.array([0.5, 0.5])
    for far in (0.0, 40.0, -40.0):  # a far band moves the solver's starting point, not E_F
        extra = np.full((2, 1), far)
        parts = [extra, eig] if far < 0 else [eig, extra] if far > 0 else [eig]  # sorted at each k-point
        bands = BandStructure(np.concatenate(parts, axis=1), w, n_electrons=2 + (2 if far < 0 else 0))
        ef = bands.fermi_level(kind, 0.05)
        assert ef == pytest.approx(1.5, abs=1e-12)
        fixed = bands.with_fermi_level(kind, 0.05)
        assert fixed.is_metal and fixed.vbm == fixed.cbm == ef


def test_small_gap_keeps_unique_root():
    # Gap comparable to σ: the count at mid-gap differs from n_e, the unique root is kept (DESIGN §3).
    eig, w = two_band_insulator(gap=0.05)
    bands = BandStructure(eig, w, n_electrons=2)
    ef = bands.fermi_level("gaussian", 0.1)
    assert abs(ref_count(eig, w, ef, "gaussian", 0.1) - 2) < 1e-9


def test_edges_default_smearing_and_metal():
    eig, w = tight_binding_1d(400)
    metal = BandStructure(eig, w, n_electrons=1.2)
    ef = metal.fermi_level()  # gaussian 0.05 eV is the documented default of the edges
    assert metal.vbm == metal.cbm == pytest.approx(ef, abs=0)
    given = BandStructure(eig, w, n_electrons=1.2, fermi_energy=0.3)
    assert given.vbm == 0.3 and given.is_metal
    with pytest.raises(InputError, match="neither"):
        _ = BandStructure(eig, w).vbm


def test_spin_polarised_copy_is_equivalent(rng):
    # Two identical spin channels (g = 1 each) describe the same non-magnetic material as one channel (g = 2).
    eig = np.sort(rng.uniform(-2, 2, size=(30, 5)), axis=1)
    w = rng.uniform(size=30)
    one = BandStructure(eig, w, n_electrons=4.4)
    two = BandStructure(np.stack([eig, eig]), w, n_electrons=4.4)
    assert two.n_spin == 2 and two.spin_degeneracy == 1 and one.spin_degeneracy == 2
    assert two.fermi_level("cold", 0.1) == pytest.approx(one.fermi_level("cold", 0.1), abs=1e-12)
    assert_allclose(two.occupations("cold", 0.1).sum(axis=0), one.occupations("cold", 0.1)[0], atol=1e-12)


def test_nan_padding_and_weight_scale(rng):
    eig = np.sort(rng.uniform(-2, 2, size=(20, 4)), axis=1)
    w = rng.uniform(size=20)
    padded = np.concatenate([eig, np.full((20, 2), np.nan)], axis=1)
    padded[::3, 3] = np.nan  # ragged: some k-points have one band fewer
    # reference: padded slots replaced by a band at 1e3 eV that is never occupied
    ref = BandStructure(np.where(np.isnan(padded[:, :4]), 1e3, eig), w, n_electrons=3.0)
    bands = BandStructure(padded, 2 * w, n_electrons=3.0)  # QE-like weights summing to 2 are normalised
    assert_allclose(bands.weights.sum(), 1.0, rtol=0, atol=1e-15)
    assert bands.fermi_level("gaussian", 0.1) == pytest.approx(ref.fermi_level("gaussian", 0.1), abs=1e-11)
    occ = bands.occupations("gaussian", 0.1)
    assert np.all(np.isnan(occ[0, :, 4:])) and np.isnan(occ[0, 0, 3])
    # Σ_k w_k Σ_n occ = n_electrons (occupations include g)
    assert abs(np.nansum(occ[0] * bands.weights[:, None]) - 3.0) < 1e-9


def test_full_bands():
    eig, w = two_band_insulator()
    full = BandStructure(eig, w, n_electrons=4)  # both bands filled (g = 2)
    assert full.fermi_level() == eig.max()
    assert math.isnan(full.cbm) and math.isnan(full.band_gap) and full.vbm == eig.max()


@pytest.mark.parametrize("kind", SMEARING_KINDS)
def test_solver_robust_extremes(kind, rng):
    eig = np.sort(rng.uniform(-10, 10, size=(64, 12)), axis=1)
    for width in (1e-6, 1e-3, 30.0):
        bands = BandStructure(eig, np.ones(64), n_electrons=7.3)
        ef = bands.fermi_level(kind, width)
        count, _ = bands.electron_count(ef, kind, width)
        # the solver's target: 1e-10 electrons, also when σ = 1e-6 eV makes N(μ) a near-step
        assert abs(count - 7.3) < 1e-10


def test_threads_do_not_change_results(rng):
    eig = np.sort(rng.uniform(-3, 3, size=(300, 20)), axis=1)
    bands = BandStructure(eig, np.ones(300), n_electrons=17.0)
    assert bands.fermi_level("cold", 0.1, n_threads=1) == bands.fermi_level("cold", 0.1, n_threads=2)


def test_validation():
    eig, w = two_band_insulator()
    with pytest.raises(InputError, match="shape"):
        BandStructure(np.zeros((3, 2, 2, 2)), np.ones(2))
    with pytest.raises(InputError, match="weights"):
        BandStructure(eig, np.ones(3))
    with pytest.raises(InputError, match="weights"):
        BandStructure(eig, -np.ones(len(w)))
    with pytest.raises(InputError, match="inf"):
        BandStructure(np.where(eig > 1, np.inf, eig), w)
    with pytest.raises(InputError, match="exceeds"):
        BandStructure(eig, w, n_electrons=4.5)
    with pytest.raises(ParameterError, match="n_electrons"):
        BandStructure(eig, w, n_electrons=-1)
    with pytest.raises(InputError, match="n_electrons"):
        BandStructure(eig, w).fermi_level()
    with pytest.raises(ParameterError, match="width"):
        BandStructure(eig, w, n_electrons=2).fermi_level("gaussian", 0.0)
    with pytest.raises(InputError, match="kpoints"):
        BandStructure(eig, w, kpoints=np.zeros((2, 3)))
    bands = BandStructure(eig, w, n_electrons=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        bands.n_electrons = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        bands.eigenvalues[0, 0, 0] = 1.0
    # per-k spectra are sorted on input, NaN last
    shuffled = BandStructure(eig[:, ::-1], w)
    assert_array_equal(shuffled.eigenvalues[0], eig)
