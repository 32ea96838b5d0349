"""Acceptance against Quantum ESPRESSO: Fermi level and occupations of four real DFT calculations.

Data: ../shared/reference/qe-bands/<case>/{bands.npz, metadata.json} (cold smearing, degauss in eV,
fermi_energy in eV as printed by QE to 1e-4 eV). Skipped cleanly when ../shared is absent.
"""

import json

import numpy as np
import pytest

from sporep_hpc.bandfiles import read_bands
from sporep_hpc.bands import BandStructure

pytestmark = pytest.mark.slow

CASES = ["one_spin_insulator", "one_spin_metal", "two_spin_insulator", "two_spin_metal"]


def load(qe_bands_dir, case):
    folder = qe_bands_dir / case
    data = np.load(folder / "bands.npz")
    meta = json.loads((folder / "metadata.json").read_text())
    return data, meta


@pytest.mark.parametrize("case", CASES)
def test_fermi_level_and_occupations(qe_bands_dir, case):
    data, meta = load(qe_bands_dir, case)
    assert meta["smearing_type"] == "cold"
    bands = BandStructure(data["bands"], data["weights"], n_electrons=meta["number_of_electrons"])
    assert bands.n_spin == meta["number_of_spin_components"]
    ef = bands.fermi_level("cold", meta["degauss"])
    solved = bands.with_fermi_level("cold", meta["degauss"])
    qe_ef = meta["fermi_energy"]
    if "metal" in case:
        # 2e-3 eV acceptance (issue 4); QE prints E_F to 1e-4 eV
        assert solved.is_metal
        assert abs(ef - qe_ef) < 2e-3
    else:
        # Insulator: QE's root is one of many energies with the right count; ours must lie in the same gap
        # (the mid-gap rule picks the middle when the edges are many σ away).
        assert not solved.is_metal
        assert solved.vbm < ef < solved.cbm
        assert solved.vbm < qe_ef < solved.cbm
    occupations = solved.occupations("cold", meta["degauss"])
    # QE's occupations: same shape as its bands, ≤ 2 per band with one spin channel, ≤ 1 with two
    assert np.max(np.abs(occupations.reshape(data["occupations"].shape) - data["occupations"])) < 1e-3


def test_two_spin_insulator_keeps_unique_root(qe_bands_dir):
    # A magnetic insulator whose edge state sits within the smearing of E_F: the mid-gap count differs from
    # n_electrons, so the unique root is kept and matches QE (DESIGN.md §3).
    data, meta = load(qe_bands_dir, "two_spin_insulator")
    bands = BandStructure(data["bands"], data["weights"], n_electrons=meta["number_of_electrons"])
    assert abs(bands.fermi_level("cold", meta["degauss"]) - meta["fermi_energy"]) < 2e-3


@pytest.mark.parametrize("case", CASES)
def test_import_and_dos_integral(qe_bands_dir, case):
    data, meta = load(qe_bands_dir, case)
    bands = read_bands(qe_bands_dir / case / "bands.npz")
    # weights that sum to 2 (QE's one-spin convention) are normalised on import; n_electrons is recovered
    # from QE's occupations (Σ_k w_k Σ_n f) to the 1e-3 of the acceptance
    assert bands.weights.sum() == pytest.approx(1.0, abs=1e-14)
    assert bands.n_electrons == pytest.approx(meta["number_of_electrons"], abs=1e-3)
    lo, hi = np.nanmin(bands.eigenvalues) - 3, np.nanmax(bands.eigenvalues) + 3
    energies = np.arange(lo, hi, 0.005)
    dos = bands.dos(energies, "gaussian", 0.1)
    # ∫DOS = number of states: n_bands × 2 (spin) per cell for both spin layouts
    assert np.trapezoid(dos, energies) == pytest.approx(2 * data["bands"].shape[-1], rel=1e-10)
