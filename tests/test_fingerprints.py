"""SOREP fingerprints: windows, presets, JSON round trips, compatibility, and values against numpy."""

import dataclasses
import json
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sporep_hpc import fingerprint as public_fingerprint
from sporep_hpc.bands import BandStructure
from sporep_hpc.errors import InputError, ParameterError
from sporep_hpc.fingerprints import PRESETS, FingerprintSpec, Window, fingerprint, get_spec, make_preset


def gaussian_dos(eig, weights, energies, width):
    """Σ_k w_k g Σ_n e^{−x²}/(√π σ), x = (E − ε)/σ, one spin channel (g = 2), by numpy broadcast."""
    w = np.asarray(weights) / np.sum(weights)
    x = (energies[:, None, None] - eig[None]) / width
    return 2 * np.einsum("ekn,k->e", np.exp(-x * x), w) / (math.sqrt(math.pi) * width)


def insulator(rng):
    """Valence band in [−2, −0.5], conduction band in [1.5, 3]: VBM, CBM known from the arrays."""
    n_k = 30
    eig = np.stack([rng.uniform(-2, -0.5, n_k), rng.uniform(1.5, 3, n_k)], axis=1)
    return eig, rng.uniform(0.5, 1, n_k)


def test_presets_match_study():
    # Windows of the reference study (issue 4, item 5)
    expected = {
        "fermi": [("fermi", -5, 5, 513)],
        "vbm": [("vbm", -2, 6, 513)],
        "cbm": [("cbm", -6, 2, 513)],
        "vbm_cbm": [("vbm", -2, 0.15, 257), ("cbm", -0.15, 2, 257)],
        "vbm_fermi_cbm": [("vbm", -1, 1, 171), ("fermi", -1, 1, 171), ("cbm", -1, 1, 171)],
        # issue 14.6: the kinetic window covers the whole valence spectrum (was 0..180 eV, 1024 points)
        "kinetic": [("zero", 0, 1000, 2048)],
    }
    assert set(PRESETS) == set(expected)
    for name, windows in expected.items():
        spec = PRESETS[name]
        got = [(w.reference, w.e_min, w.e_max, w.n_energies) for w in spec.windows]
        want = [(r, pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12), n) for r, lo, hi, n in
                windows]
        assert want == got
        assert all(w.smearing == "gaussian" for w in spec.windows)
        assert all(w.width == (0.8 if name == "kinetic" else 0.05) for w in spec.windows)
        assert spec.n_features == sum(n for *_, n in windows) == spec.energies.shape[0]
    assert_allclose(PRESETS["fermi"].energies, np.linspace(-5, 5, 513), rtol=0, atol=0)
    assert PRESETS["fermi"].energies[1] - PRESETS["fermi"].energies[0] == pytest.approx(10 / 512)
    # σ-dependent windows follow the width
    assert make_preset("vbm_cbm", width=0.1).windows[0].e_max == pytest.approx(0.3)


def test_fingerprint_values_insulator(rng):
    eig, w = insulator(rng)
    bands = BandStructure(eig, w, n_electrons=2)
    vbm, cbm = eig[:, 0].max(), eig[:, 1].min()
    ef = 0.5 * (vbm + cbm)  # mid-gap rule: edges are 40σ away
    for name, refs in [("fermi", [ef]), ("vbm", [vbm]), ("cbm", [cbm]), ("vbm_cbm", [vbm, cbm]),
                       ("vbm_fermi_cbm", [vbm, ef, cbm])]:
        spec = PRESETS[name]
        energies = np.concatenate([r + win.offsets for r, win in zip(refs, spec.windows, strict=True)])
        # 1e-10 states/eV: the same Gaussians summed in another order; E_F from the solver is exact mid-gap
        # to ~1e-15 eV, which moves the values by < 1e-12
        reference = gaussian_dos(eig, w, energies, 0.05)
        assert_allclose(fingerprint(bands, name), reference, rtol=1e-12, atol=1e-10)


def test_metal_edges_equal_fermi(rng):
    # For a metal VBM = CBM = E_F, so the three windows of vbm_fermi_cbm are identical
    n_k = 40
    eig = np.sort(rng.uniform(-3, 3, (n_k, 4)), axis=1)
    bands = BandStructure(eig, np.ones(n_k), n_electrons=3.0)
    fp = fingerprint(bands, "vbm_fermi_cbm")
    assert_array_equal(fp[:171], fp[171:342])
    assert_array_equal(fp[171:342], fp[342:])
    ef = bands.fermi_level()
    assert_allclose(fp[:171], gaussian_dos(eig, np.ones(n_k), ef + np.linspace(-1, 1, 171), 0.05),
                    rtol=1e-12, atol=1e-12)


def test_kinetic_preset_needs_no_electrons(rng):
    eig = rng.uniform(0, 150, size=(10, 8))
    bands = BandStructure(eig, np.ones(10))
    fp = public_fingerprint(bands, "kinetic")
    assert fp.shape == (2048,)
    reference = gaussian_dos(eig, np.ones(10), np.linspace(0, 1000, 2048), 0.8)
    assert_allclose(fp, reference, rtol=1e-12, atol=1e-14)
    with pytest.raises(InputError, match="n_electrons"):
        fingerprint(bands, "fermi")


def test_given_fermi_energy_is_used(rng):
    eig, w = insulator(rng)
    bands = BandStructure(eig, w, n_electrons=2, fermi_energy=0.7)
    assert_allclose(fingerprint(bands, "fermi"), gaussian_dos(eig, w, 0.7 + np.linspace(-5, 5, 513), 0.05),
                    rtol=1e-12, atol=1e-10)


def test_spin_polarised_same_fingerprint(rng):
    eig, w = insulator(rng)
    one = BandStructure(eig, w, n_electrons=2)
    two = BandStructure(np.stack([eig, eig]), w, n_electrons=2)
    assert_allclose(fingerprint(two, "vbm_cbm"), fingerprint(one, "vbm_cbm"), rtol=1e-13, atol=1e-13)


def test_custom_windows_and_specs():
    window = Window("zero", -1.0, 1.0, 11, "cold", 0.2)
    spec = get_spec([window, Window("fermi", 0, 1, 3)])
    assert spec.name == "custom" and spec.n_features == 14
    assert spec.references == ("zero",) * 11 + ("fermi",) * 3
    assert spec.window_slices == (slice(0, 11), slice(11, 14))
    assert get_spec(window).windows == (window,)
    assert get_spec(spec) is spec
    assert get_spec("fermi") is PRESETS["fermi"]
    with pytest.raises(ParameterError, match="fingerprint must be one of"):
        get_spec("dos")
    with pytest.raises(ParameterError):
        get_spec(3.0)


def test_json_round_trip_and_compatibility():
    for spec in PRESETS.values():
        text = spec.to_json()
        json.loads(text)  # valid JSON
        back = FingerprintSpec.from_json(text)
        assert back == spec
        assert get_spec(text) == spec
        spec.check_compatible(back)
    renamed = dataclasses.replace(PRESETS["fermi"], name="my-fermi")
    PRESETS["fermi"].check_compatible(renamed)  # names do not matter, windows do
    wider = make_preset("fermi", width=0.1)
    with pytest.raises(ParameterError, match=r"window 0 width 0\.05 vs 0\.1"):
        PRESETS["fermi"].check_compatible(wider)
    with pytest.raises(ParameterError, match="1 vs 2 windows"):
        PRESETS["fermi"].check_compatible(PRESETS["vbm_cbm"])
    with pytest.raises(ParameterError, match="reference"):
        PRESETS["vbm"].check_compatible(FingerprintSpec("x", (Window("cbm", -2, 6, 513),)))
    with pytest.raises(ParameterError, match="invalid fingerprint"):
        FingerprintSpec.from_json('{"name": "x"}')


def test_window_validation():
    with pytest.raises(ParameterError, match="reference"):
        Window("gap", -1, 1, 10)
    with pytest.raises(ParameterError, match="e_max"):
        Window("fermi", 1, -1, 10)
    with pytest.raises(ParameterError, match="n_energies"):
        Window("fermi", -1, 1, 1)
    with pytest.raises(ParameterError, match="width"):
        Window("fermi", -1, 1, 10, width=0)
    with pytest.raises(ParameterError, match="smearing"):
        Window("fermi", -1, 1, 10, smearing="box")
    with pytest.raises(ParameterError, match="windows"):
        FingerprintSpec("empty", ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        PRESETS["fermi"].name = "x"  # type: ignore[misc]
    with pytest.raises(ParameterError, match="BandStructure"):
        fingerprint(np.zeros((3, 3)), "fermi")


def test_absurd_energy_grids_are_refused_at_parse_time():
    # n_energies = 1e9 asked the DOS kernel for 64 partial sums of 8 GB each before issue 12
    Window("fermi", -1, 1, 10**6)  # the largest allowed (the sample energies are made lazily)
    for n in (10**6 + 1, 10**9, 1e9):
        with pytest.raises(ParameterError, match=r"n_energies must be an integer in \[2, 1e\+06\]"):
            Window("fermi", -1, 1, n)
    spec = json.dumps({"name": "huge", "windows": [{"reference": "zero", "e_min": 0, "e_max": 1,
                                                      "n_energies": 10**9}]})
    with pytest.raises(ParameterError, match="n_energies"):
        get_spec(spec)  # what a run's fingerprint list (CLI, TOML) resolves through


def _hexagonal(symbols, a, c, frac):
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.hexagonal(a, c), symbols, frac)


def test_kinetic_window_keeps_every_state():
    # issue 14.6: with 0..180 eV, hBN kept 28 of its 32 states and graphite 28.45. The integral of the
    # DOS over the window (trapezoid, σ = 0.8 eV ≪ window) must count every eigenvalue twice (spin):
    # 2 × n_ao = 32 for 4 atoms of 4 orbitals (2s, 2p). Tolerance 1e-3: the Gaussian tails below 0 eV
    # (lowest eigenvalue > 5 eV, i.e. > 6σ) and the trapezoid error are far smaller.
    from sporep_hpc.operators import operator_spectrum

    hbn = _hexagonal(["B", "B", "N", "N"], 2.504, 6.66,
                     [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75], [2 / 3, 1 / 3, 0.25], [1 / 3, 2 / 3, 0.75]])
    graphite = _hexagonal(["C"] * 4, 2.464, 6.711,
                          [[0, 0, 0.25], [0, 0, 0.75], [1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]])
    spec = PRESETS["kinetic"]
    for structure in (hbn, graphite):
        bands = operator_spectrum(structure, "kinetic", kdensity=0.35)
        assert bands.eigenvalues.min() > 6 * 0.8
        assert bands.eigenvalues.max() < spec.windows[0].e_max - 6 * 0.8
        n_states = np.trapezoid(fingerprint(bands, spec), spec.energies)
        assert n_states == pytest.approx(2 * bands.eigenvalues.shape[-1], abs=1e-3)
        assert bands.eigenvalues.shape[-1] == 16


@pytest.mark.parametrize("name, metal", [("Al", True), ("graphene", True), ("Si", False), ("NaCl", False)])
def test_presets_on_huckel_spectra(name, metal):
    # issue 14.3: every preset works on extended-Hückel spectra (electron count from the basis): finite
    # vectors of the preset's length, references ordered vbm <= E_F <= cbm; a metal's DOS at E_F is
    # positive and its edges equal E_F, an insulator's DOS at mid-gap vanishes (σ = 0.05 eV, gap > 1 eV).
    from pymatgen.core import Lattice, Structure

    from sporep_hpc.operators import operator_spectrum

    def fcc(a, symbols, frac):
        return Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), symbols, frac)

    structure = {
        "Al": lambda: fcc(4.05, ["Al"], [[0, 0, 0]]),
        "Si": lambda: fcc(5.43, ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
        "NaCl": lambda: fcc(5.64, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "graphene": lambda: _hexagonal(["C", "C"], 2.46, 15.0, [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0]]),
    }[name]()
    # k-spacing 0.1 Å⁻¹: graphene's in-plane grid is 30 × 30, a multiple of 3, so its Dirac point K is on it
    bands = operator_spectrum(structure, "huckel", kdensity=0.1)
    edges = bands.edges
    assert edges.is_metal == metal
    assert edges.vbm <= edges.fermi_energy <= edges.cbm
    for preset, spec in PRESETS.items():
        fp = fingerprint(bands, spec)
        assert fp.shape == (spec.n_features,) and np.all(np.isfinite(fp)) and np.all(fp >= 0), preset
    at_fermi = fingerprint(bands, Window("fermi", -0.01, 0.01, 3))[1]
    if metal:
        assert edges.vbm == edges.cbm == edges.fermi_energy
        assert at_fermi > 0
    else:
        assert edges.band_gap > 1.0
        assert at_fermi < 1e-6
