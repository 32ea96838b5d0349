"""Quantum ESPRESSO XML import (sporep_hpc.bandfiles.read_qe_xml): files the tests write, and the three real
``data-file-schema.xml`` files of ../shared/reference/qe-xml when present.

Independent references: unit conversions from scipy.constants (CODATA), Fermi levels of the written files
from scipy's brentq on a numpy electron count, fractional k-points from the reciprocal lattice (numpy inverse,
or the file's own ``reciprocal_lattice``), and the real files parsed here with a few lines of ElementTree.
"""

import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from _references import ALAT, ATOMS, CELL, GRID, grid_kpoints, qe_xml
from numpy.testing import assert_allclose
from scipy.constants import physical_constants
from scipy.optimize import brentq
from scipy.special import erfc

from sporep_hpc.bandfiles import is_qe_xml, read_bands, read_qe_xml
from sporep_hpc.bands import BandStructure
from sporep_hpc.errors import InputError
from sporep_hpc.smearing import theta

pytest.importorskip("pymatgen.core")

HA = physical_constants["Hartree energy in eV"][0]
BOHR = physical_constants["Bohr radius"][0] * 1e10  # Å
# The reader uses CODATA 2018; scipy's constants may be a later CODATA (2022 in scipy ≥ 1.15), which moved
# the Hartree energy by 2.6e-13 and the Bohr radius by 6.8e-10 (relative): the unit tolerances below.
HA_RTOL = 1e-12
BOHR_RTOL = 1e-9
def gaussian_fermi(eig_ha, weights, g, n_e, sigma_ha):
    """Reference Fermi level (Ha) and occupations θ in [0, 1] per state: brentq on Σ w g ½erfc((ε − E)/σ)."""
    w = np.asarray(weights) / np.sum(weights)

    def count(e):
        pairs = zip(w, eig_ha, strict=True)
        return sum(wk * g * np.sum(0.5 * erfc((np.asarray(ek) - e) / sigma_ha)) for wk, ek in pairs)

    ef = brentq(lambda e: count(e) - n_e, -5, 5, xtol=1e-15, rtol=1e-15)
    return ef, [0.5 * erfc((np.asarray(ek) - ef) / sigma_ha) for ek in eig_ha]


# per spin layout: bands per k in the file, degeneracy of a file state, electrons
LAYOUTS = {"none": (6, 2, 5.0), "lsda": ((5, 4), 1, 5.0), "noncollinear": (7, 1, 4.0)}
SIGMA = 0.02  # Ha


def metal(rng, spin):
    """A random metal in the file's layout: eigenvalues and occupations per k (Ha), nelec, file E_F (Ha)."""
    counts, g, nelec = LAYOUTS[spin]
    n_values = sum(counts) if spin == "lsda" else counts
    n_k = len(grid_kpoints())
    if spin == "lsda":  # each channel sorted, up then down
        eig = [np.concatenate([np.sort(rng.uniform(-0.5, 0.5, c)) for c in counts]) for _ in range(n_k)]
    else:
        eig = [np.sort(rng.uniform(-0.5, 0.5, n_values)) for _ in range(n_k)]
    weights = rng.uniform(0.5, 1.5, n_k)
    ef, occ = gaussian_fermi(eig, weights, g, nelec, SIGMA)
    return eig, occ, nelec, ef, weights


@pytest.fixture
def write(tmp_path):
    def _write(text, name="data-file-schema.xml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write


@pytest.mark.parametrize("spin", ["none", "lsda", "noncollinear"])
def test_written_metal(write, rng, spin):
    eig, occ, nelec, ef, weights = metal(rng, spin)
    counts = LAYOUTS[spin][0]
    path = write(qe_xml(eig, occ, nelec=nelec, spin=spin, counts=counts, fermi=("fermi_energy", [ef]),
                        weights=weights))
    result = read_qe_xml(path)
    bands = result.bands
    assert result.spin == spin
    assert result.source == f"dft:qe:{path}"
    assert result.code_version == "7.3.1"
    assert result.scf_converged is True
    assert result.kpoint_grid == GRID
    assert result.occupations_kind == "smearing"
    assert result.smearing.kind == "gaussian"
    assert result.smearing.width == pytest.approx(SIGMA * HA, rel=HA_RTOL)
    assert result.fermi_energies == pytest.approx((ef * HA,), rel=HA_RTOL)
    assert bands.fermi_energy is None  # recomputed unless keep_fermi_energy
    assert bands.n_electrons == nelec
    eig = np.array(eig) * HA
    if spin == "none":
        assert bands.n_spin == 1
        assert_allclose(bands.eigenvalues[0], eig, rtol=HA_RTOL)
    elif spin == "lsda":  # the first nbnd_up values are spin up, the next nbnd_dw spin down (NaN-padded)
        assert bands.eigenvalues.shape == (2, 8, 5)
        assert_allclose(bands.eigenvalues[0], eig[:, :5], rtol=HA_RTOL)
        assert_allclose(bands.eigenvalues[1, :, :4], eig[:, 5:], rtol=HA_RTOL)
        assert np.all(np.isnan(bands.eigenvalues[1, :, 4]))
    else:  # one channel of single occupancy, dealt alternately into two channels of degeneracy 1
        assert bands.eigenvalues.shape == (2, 8, 4)
        assert np.all(np.isnan(bands.eigenvalues[1, :, 3]))
        merged = np.sort(bands.eigenvalues.transpose(1, 0, 2).reshape(8, -1), axis=1)[:, :7]
        assert_allclose(merged, eig, rtol=HA_RTOL)
        # alternately: a Kramers-degenerate (non-magnetic) calculation gives two equal channels
        assert_allclose(bands.eigenvalues[0], eig[:, 0::2], rtol=HA_RTOL)
    assert bands.spin_degeneracy * np.sum(~np.isnan(bands.eigenvalues[:, 0])) == LAYOUTS[spin][1] * (
        sum(counts) if spin == "lsda" else counts
    )
    # weights normalised; fractional k-points as written (inverse of alat Σ f_j b_j)
    assert_allclose(bands.weights, weights / weights.sum(), rtol=1e-14)
    assert_allclose(bands.kpoints, grid_kpoints(), rtol=0, atol=1e-12)
    # occupations in electrons: QE's per-state values × degeneracy sum to nelec
    total = np.nansum(result.occupations * bands.weights[None, :, None])
    assert total == pytest.approx(nelec, abs=1e-10)  # brentq's root: the count to ~1e-14
    # the file's Fermi level is reproduced; solver tolerance 1e-10 electrons over dN/dE ≳ 0.1 states/eV
    assert abs(bands.fermi_level("gaussian", SIGMA * HA) - ef * HA) < 1e-8
    # ∫DOS = number of states (2 per band with one channel, 1 per state otherwise)
    energies = np.arange(np.nanmin(bands.eigenvalues) - 2, np.nanmax(bands.eigenvalues) + 2, 0.005)
    n_states = {"none": 12, "lsda": 9, "noncollinear": 7}[spin]
    assert np.trapezoid(bands.dos(energies, "gaussian", 0.1), energies) == pytest.approx(n_states, rel=1e-10)


def test_written_structure(write, rng):
    eig, occ, nelec, _, _ = metal(rng, "none")
    structure = read_qe_xml(write(qe_xml(eig, occ, nelec=nelec))).structure
    assert [site.specie.symbol for site in structure] == ["Ga", "As"]  # QE's labels Ga1, AS
    assert [site.label for site in structure] == ["Ga1", "AS"]
    assert_allclose(structure.lattice.matrix, CELL * BOHR, rtol=BOHR_RTOL)
    assert_allclose(structure.cart_coords, np.array([r for _, r in ATOMS]) * BOHR, rtol=BOHR_RTOL, atol=1e-14)


def test_read_bands_dispatch(write, rng):
    eig, occ, nelec, ef, _ = metal(rng, "lsda")
    text = qe_xml(eig, occ, nelec=nelec, spin="lsda", counts=(5, 4), fermi=("fermi_energy", [ef]))
    for name in ("data-file-schema.xml", "pwscf.xml"):  # by name, or by its root element <espresso>
        path = write(text, name)
        assert is_qe_xml(path)
        bands = read_bands(path, keep_fermi_energy=True)
        assert_allclose(bands.eigenvalues, read_qe_xml(path).bands.eigenvalues, rtol=0, atol=0)
        assert bands.fermi_energy == pytest.approx(ef * HA, rel=HA_RTOL)
        assert read_bands(path, n_electrons=4.0).n_electrons == 4.0
    assert not is_qe_xml(write("<?xml version='1.0'?>\n<modeling></modeling>", "vasprun.xml"))


@pytest.mark.parametrize(("name", "kind"), [("gaussian", "gaussian"), ("gauss", "gaussian"), ("mv", "cold"),
                                            ("Marzari-Vanderbilt", "cold"), ("m-p", "methfessel-paxton"),
                                            ("mp", "methfessel-paxton"), ("fd", "fermi-dirac")])
def test_smearing_names(write, rng, name, kind):
    eig, occ, nelec, _, _ = metal(rng, "none")
    smearing = read_qe_xml(write(qe_xml(eig, occ, nelec=nelec, smearing=(name, 0.005)))).smearing
    assert (smearing.kind, smearing.order) == (kind, 1)  # QE's mp is first-order Methfessel-Paxton
    assert smearing.width == pytest.approx(0.005 * HA, rel=HA_RTOL)


def test_fixed_occupations(write):
    # an insulator: two filled bands (≤ -0.1 Ha) and two empty ones (≥ 0.2 Ha) at every k-point
    base = np.array([-0.4, -0.1, 0.2, 0.35])
    eig = [base + 0.01 * i for i in range(8)]
    occ = [np.array([1.0, 1.0, 0.0, 0.0])] * 8
    hol, lul = -0.1 + 0.07, 0.2
    text = qe_xml(eig, occ, nelec=4, kind="fixed", smearing=None, fermi=("highestOccupiedLevel", [hol]))
    result = read_qe_xml(write(text.replace("</highestOccupiedLevel>", "</highestOccupiedLevel>"
                                            f"<lowestUnoccupiedLevel>{lul!r}</lowestUnoccupiedLevel>")))
    assert result.smearing is None
    assert result.fermi_energies == pytest.approx((hol * HA,), rel=HA_RTOL)
    solved = result.bands.with_fermi_level()
    # the highest occupied level is the file's; E_F is mid-gap (DESIGN.md §3)
    assert solved.vbm == pytest.approx(hol * HA, rel=HA_RTOL)
    assert solved.cbm == pytest.approx(lul * HA, rel=HA_RTOL)
    assert solved.fermi_energy == pytest.approx(0.5 * (hol + lul) * HA, rel=HA_RTOL)


def test_two_fermi_energies(write, rng):
    eig, occ, nelec, ef, _ = metal(rng, "lsda")
    path = write(qe_xml(eig, occ, nelec=nelec, spin="lsda", counts=(5, 4),
                        fermi=("two_fermi_energies", [ef + 0.01, ef - 0.01])))
    expected = ((ef + 0.01) * HA, (ef - 0.01) * HA)
    assert read_qe_xml(path).fermi_energies == pytest.approx(expected, rel=HA_RTOL)
    with pytest.raises(InputError, match="two Fermi energies"):
        read_qe_xml(path, keep_fermi_energy=True)


def test_unconverged(write, rng):
    eig, occ, nelec, _, _ = metal(rng, "none")
    path = write(qe_xml(eig, occ, nelec=nelec, converged=False))
    for reader in (read_qe_xml, read_bands):
        with pytest.raises(InputError, match=r"data-file-schema\.xml.*SCF not converged"):
            reader(path)
    assert read_qe_xml(path, allow_unconverged=True).scf_converged is False
    assert read_bands(path, allow_unconverged=True).n_kpoints == 8
    # a file without convergence information (a non-self-consistent run) is accepted
    assert read_qe_xml(write(qe_xml(eig, occ, nelec=nelec, converged=None))).scf_converged is None


def _replace_first(old, new):
    return lambda text: text.replace(old, new, 1)


def _replace_number(tag, new):
    """Replace the first number of the first <tag> element."""
    return lambda text: re.sub(rf"(<{tag} size=\"\d+\">)\S+", rf"\g<1>{new}", text, count=1)


DAMAGES = {
    "truncated": (lambda text: text[: len(text) // 2], "malformed XML"),
    "not xml": (lambda text: "eigenvalues 1 2 3", "malformed XML"),
    "doctype entity": (
        _replace_first("?>", '?>\n<!DOCTYPE qes:espresso [<!ENTITY x "1.0">]>'), "DOCTYPE.*refused"),
    "external entity": (_replace_first("?>", '?>\n<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'),
                        "DOCTYPE.*refused"),
    "other root": (lambda text: "<modeling><output/></modeling>", "root element must be <espresso>"),
    "missing nelec": (lambda text: text.replace("<nelec>5.0</nelec>", ""), "<output/band_structure/nelec>"),
    "missing output": (lambda text: text.replace("output>", "outpt>"), "<output> missing"),
    "missing cell": (lambda text: text.replace("a2>", "b2>"), "output/atomic_structure/cell/a2"),
    "nan eigenvalue": (_replace_number("eigenvalues", "nan"), r"ks_energies\[1\]/eigenvalues> must be fin"),
    "inf occupation": (_replace_number("occupations", "-inf"), r"ks_energies\[1\]/occupations> must be fin"),
    "count": (lambda text: text.replace('<eigenvalues size="6">', '<eigenvalues size="6">0.1 ', 1),
              r"ks_energies\[1\]/eigenvalues> must hold 6 values; got 7"),
    "nbnd": (lambda text: text.replace("<nbnd>6</nbnd>", "<nbnd>6.5</nbnd>"), "nbnd> must be a whole number"),
    "word": (_replace_first('<eigenvalues size="6">', '<eigenvalues size="6">one '),
             r"ks_energies\[1\]/eigenvalues> must hold numbers"),
    "nan alat": (lambda text: text.replace(f'alat="{ALAT!r}"', 'alat="NaN"'), "alat.*must be finite"),
    "no weight": (_replace_first("weight=", "wieght="), r"weight of <output/band_structure/ks_energies\[1\]"),
    "nks": (lambda text: text.replace("<nks>8</nks>", "<nks>9</nks>"), "nks> = 9 but 8"),
    "wrong alat": (lambda text: text.replace(f'alat="{ALAT!r}"', 'alat="7.6"'), "Monkhorst-Pack grid"),
    "smearing": (lambda text: text.replace(">gaussian<", ">lorentzian<"), "smearing> must be one of"),
    "degauss": (lambda text: text.replace('degauss="0.02"', 'degauss="0.0"'), "degauss.*must be > 0"),
    "species": (lambda text: text.replace('name="Ga1"', 'name="Qq1"'), "'Qq1' .* names no element"),
    "flag": (lambda text: text.replace("<lsda>false", "<lsda>maybe"), "lsda> must be true or false"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged(write, rng, damage):
    eig, occ, nelec, ef, _ = metal(rng, "none")
    change, message = DAMAGES[damage]
    path = write(change(qe_xml(eig, occ, nelec=nelec, fermi=("fermi_energy", [ef]))))
    for reader in (read_qe_xml, read_bands):
        with pytest.raises(InputError, match=message) as info:
            reader(path)
        assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_qe_xml(tmp_path / "data-file-schema.xml")


# ---------------------------------------------------------------------- the real files in ../shared
SHARED_FILES = {  # name: Monkhorst-Pack grid, spin layout, occupation kind
    "default_xml_240411.xml": ((4, 4, 4, 0, 0, 0), "none", "smearing"),
    "tot_magnetization.xml": ((2, 2, 2, 0, 0, 0), "lsda", "smearing"),
    "scf_electric_field.xml": ((2, 2, 2, 0, 0, 0), "none", "fixed"),
}


def file_arrays(path):
    """What the tests compare against, parsed here: cell, positions (Bohr), labels, k (2π/alat), b_j."""
    out = ET.parse(path).getroot().find("output")
    structure = out.find("atomic_structure")

    def vec(element):
        return [float(x) for x in element.text.split()]

    return {
        "cell": np.array([vec(structure.find(f"cell/a{i}")) for i in (1, 2, 3)]),
        "positions": np.array([vec(atom) for atom in structure.iter("atom")]),
        "labels": [atom.get("name") for atom in structure.iter("atom")],
        "k": np.array([vec(k) for k in out.iter("k_point")]),
        "reciprocal": np.array([vec(out.find(f"basis_set/reciprocal_lattice/b{i}")) for i in (1, 2, 3)]),
        "occupations": [vec(o) for o in out.iter("occupations")],
        "weights": np.array([float(k.get("weight")) for k in out.iter("k_point")]),
    }


@pytest.mark.parametrize("name", list(SHARED_FILES))
def test_shared_structure_and_kpoints(qe_xml_dir, name):
    result = read_qe_xml(qe_xml_dir / name)
    ref = file_arrays(qe_xml_dir / name)
    grid, spin, kind = SHARED_FILES[name]
    assert (result.kpoint_grid, result.spin, result.occupations_kind) == (grid, spin, kind)
    assert result.scf_converged is True
    # structure in Å: the file's Bohr values × the CODATA Bohr radius
    assert_allclose(result.structure.lattice.matrix, ref["cell"] * BOHR, rtol=BOHR_RTOL, atol=1e-14)
    assert_allclose(result.structure.cart_coords, ref["positions"] * BOHR, rtol=BOHR_RTOL, atol=1e-14)
    assert [site.specie.symbol for site in result.structure] == ref["labels"]  # Si, Li, F: labels are symbols
    # fractional k-points × the file's reciprocal lattice (b_j in 2π/alat) = the file's Cartesian k-points;
    # both are written to 16 digits
    assert_allclose(result.bands.kpoints @ ref["reciprocal"], ref["k"], rtol=0, atol=1e-12)
    assert_allclose(result.bands.weights, ref["weights"] / ref["weights"].sum(), rtol=1e-14)


def test_shared_structure_values(qe_xml_dir):
    # what the files describe (README of ../shared/reference/qe-xml), in Å
    lif = read_qe_xml(qe_xml_dir / "scf_electric_field.xml").structure
    assert lif.composition.reduced_formula == "LiF"
    assert lif.lattice.abc == pytest.approx((7.615596282241854 * BOHR,) * 3, rel=BOHR_RTOL)  # ≈ 4.03 Å
    si = read_qe_xml(qe_xml_dir / "tot_magnetization.xml").structure
    assert si.composition.reduced_formula == "Si"
    # fcc with cube edge a = 2 × 5.1306 Bohr: volume a³/4
    assert si.volume == pytest.approx(2 * 5.130606383383484**3 * BOHR**3, rel=3 * BOHR_RTOL)


def test_shared_fermi_cold_insulator(qe_xml_dir):
    # Si with cold smearing ("mv", 5e-3 Ha = 0.136 eV) and a gap of 0.59 eV ≈ 4.3σ. Cold smearing overshoots
    # (θ > 1 just below E_F), so inside this gap the count N(E) never comes back down to 8: it has a local
    # minimum N = 8.00089. QE 7.x (efermig) starts from the Gaussian level and minimises (N − nelec)² by
    # Newton steps, accepting |N − nelec| < 1e-2: its E_F is that stationary point, not a root. Ours is the
    # root N(E_F) = 8 on the rise from the valence band (the mid-gap rule does not apply, the mid-gap count
    # being 8.0010). Both lie in the gap; they differ by 0.24 eV, so only the gap is compared here.
    result = read_qe_xml(qe_xml_dir / "default_xml_240411.xml")
    bands, smearing = result.bands, result.smearing
    assert (smearing.kind, smearing.order, bands.n_electrons) == ("cold", 1, 8.0)  # QE's "mv"
    assert smearing.width == pytest.approx(5e-3 * HA, rel=HA_RTOL)
    (qe_ef,) = result.fermi_energies
    solved = bands.with_fermi_level(smearing)
    assert solved.vbm < solved.fermi_energy < solved.cbm
    assert solved.vbm < qe_ef < solved.cbm
    assert abs(bands.electron_count(solved.fermi_energy, smearing)[0] - 8.0) < 1e-9  # ours: a root
    count, slope = bands.electron_count(qe_ef, smearing)
    assert 1e-4 < count - 8.0 < 1e-2 and abs(slope) < 1e-6  # QE's: a stationary point within its 1e-2


def test_shared_fermi_fixed_magnetisation(qe_xml_dir):
    # Two Fermi levels, one per spin channel, each for the channel's own electron count (QE's
    # tot_magnetization = 1: 4.5 up, 3.5 down). Our BandStructure has one level for the total, so each
    # channel is solved as a band structure of its own (one channel: degeneracy 2, hence twice the
    # electrons). Tolerance: QE's bisection stops at 1e-10 electrons and ours too, on the same eigenvalues
    # (16 digits); dN/dE ≈ 1 state/eV here (σ = 2.7 eV), so the levels agree to ~1e-10 eV; measured ≤ 1.1e-10.
    result = read_qe_xml(qe_xml_dir / "tot_magnetization.xml")
    bands = result.bands
    assert result.smearing.kind == "gaussian"
    assert result.fermi_energies == pytest.approx((2.482970754441729e-1 * HA, 2.065524454763539e-1 * HA),
                                                  rel=HA_RTOL)
    for s, n_s in enumerate((4.5, 3.5)):
        channel = BandStructure(bands.eigenvalues[s], bands.weights, n_electrons=2 * n_s)
        assert abs(channel.fermi_level(result.smearing) - result.fermi_energies[s]) < 1e-9
    # the one common level for the total count lies between the two
    assert result.fermi_energies[1] < bands.fermi_level(result.smearing) < result.fermi_energies[0]


def test_shared_fermi_fixed_occupations(qe_xml_dir):
    result = read_qe_xml(qe_xml_dir / "scf_electric_field.xml")
    assert result.smearing is None
    assert result.bands.n_electrons == 40.0  # 20 bands, all filled
    solved = result.bands.with_fermi_level()
    # the same double converted by the same constant: equal (scipy's constant may differ in the 13th digit)
    assert solved.vbm == result.fermi_energies[0]
    assert result.fermi_energies[0] == pytest.approx(2.842410000858056e-02 * HA, rel=HA_RTOL)
    assert np.all(result.occupations == 2.0)


@pytest.mark.parametrize("name", list(SHARED_FILES))
def test_shared_occupations_and_dos(qe_xml_dir, name):
    result = read_qe_xml(qe_xml_dir / name)
    bands = result.bands
    if result.smearing is not None:
        # our θ at the file's Fermi level (per spin channel when there are two) gives the file's occupations:
        # same smearing function, width and units (values written to 16 digits; x exact to ~1e-14)
        sm = result.smearing
        for s in range(bands.n_spin):
            ef = result.fermi_energies[s if len(result.fermi_energies) == 2 else 0]
            ours = bands.spin_degeneracy * theta((ef - bands.eigenvalues[s]) / sm.width, sm.kind, sm.order)
            assert_allclose(ours, result.occupations[s], rtol=0, atol=1e-12)
    assert read_bands(qe_xml_dir / name).n_states == bands.n_states
    # ∫DOS = number of states: 2 per band and k-point with one channel, 1 per channel with two
    n_states = bands.spin_degeneracy * bands.n_spin * bands.n_bands
    energies = np.arange(np.nanmin(bands.eigenvalues) - 2, np.nanmax(bands.eigenvalues) + 2, 0.005)
    assert np.trapezoid(bands.dos(energies, "gaussian", 0.1), energies) == pytest.approx(n_states, rel=1e-10)
    assert math.isclose(bands.n_states, n_states, rel_tol=1e-14)
