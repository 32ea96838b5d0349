"""Band-structure import (sporep_hpc.bandfiles): .npz archives and VASP vasprun.xml through pymatgen."""

import numpy as np
import pytest
from _references import write_vasprun
from numpy.testing import assert_allclose, assert_array_equal

from sporep_hpc.bandfiles import read_bands
from sporep_hpc.errors import InputError

pytest.importorskip("pymatgen.io.vasp")


def insulator_arrays(rng, n_spin=1):
    n_k, n_b = 4, 6
    eig = np.sort(rng.uniform(-5, 5, (n_spin, n_k, n_b)), axis=2)
    eig[..., :2] -= 10  # two bands well below the rest: 2 filled bands per spin channel
    occ = np.zeros_like(eig)
    occ[..., :2] = 1.0 if n_spin == 2 else 2.0
    return eig, occ


def test_npz_round_trip_qe_weights(tmp_path, rng):
    eig, occ = insulator_arrays(rng)
    k = rng.uniform(-0.5, 0.5, (4, 3))
    w = np.array([0.25, 0.75, 0.5, 0.5])  # QE one-spin convention: sum 2
    np.savez(tmp_path / "b.npz", bands=eig[0], kpoints=k, weights=w, occupations=occ[0])
    bands = read_bands(tmp_path / "b.npz")
    assert bands.n_spin == 1
    assert_array_equal(bands.eigenvalues[0], eig[0])
    assert_allclose(bands.weights, w / 2, rtol=0, atol=1e-15)
    assert_array_equal(bands.kpoints, k)
    assert bands.n_electrons == 4.0  # Σ_k (w_k/2) × 2 bands × 2 electrons
    assert bands.fermi_energy is None
    assert read_bands(tmp_path / "b.npz", n_electrons=2).n_electrons == 2


def test_npz_shuffled_bands_keep_occupations_aligned(tmp_path, rng):
    # Occupations follow their eigenvalue when the importer sorts each spectrum
    eig, occ = insulator_arrays(rng, n_spin=2)
    perm = rng.permutation(eig.shape[2])
    np.savez(tmp_path / "b.npz", bands=eig[..., perm], weights=np.ones(4), occupations=occ[..., perm],
             fermi_energy=0.5)
    bands = read_bands(tmp_path / "b.npz", keep_fermi_energy=True)
    assert bands.n_electrons == 4.0 and bands.fermi_energy == 0.5
    assert read_bands(tmp_path / "b.npz").fermi_energy is None


def test_npz_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_bands(tmp_path / "missing.npz")
    np.savez(tmp_path / "nokeys.npz", eigenvalues=np.zeros((2, 2)))
    with pytest.raises(InputError, match="missing key"):
        read_bands(tmp_path / "nokeys.npz")
    np.savez(tmp_path / "shape.npz", bands=np.zeros((3, 2)), weights=np.ones(2))
    with pytest.raises(InputError, match=r"shape\.npz.*weights"):
        read_bands(tmp_path / "shape.npz")
    (tmp_path / "x.cube").write_text("?")
    with pytest.raises(InputError, match="unknown band file format"):
        read_bands(tmp_path / "x.cube")
    (tmp_path / "s.h5").write_text("?")
    with pytest.raises(InputError, match="open_store"):
        read_bands(tmp_path / "s.h5")
    (tmp_path / "broken.npz").write_text("not a zip")
    with pytest.raises(InputError, match="cannot read"):
        read_bands(tmp_path / "broken.npz")


@pytest.mark.parametrize("n_spin", [1, 2])
def test_vasprun(tmp_path, rng, n_spin):
    eig, occ = insulator_arrays(rng, n_spin)
    vasp_occ = occ / (2.0 if n_spin == 1 else 1.0)  # VASP writes occupations in [0, 1]
    k = np.round(rng.uniform(-0.5, 0.5, (4, 3)), 8)
    w = np.array([0.125, 0.375, 0.25, 0.25])
    path = write_vasprun(tmp_path / "vasprun.xml", eig, vasp_occ, k, w, nelect=4.0, efermi=-3.0)
    bands = read_bands(path)
    assert bands.n_spin == n_spin
    assert_allclose(bands.eigenvalues, eig, rtol=0, atol=5e-9)  # written with 8 decimals
    assert_allclose(bands.weights, w, rtol=0, atol=1e-12)
    assert_allclose(bands.kpoints, k, rtol=0, atol=1e-12)
    assert bands.n_electrons == 4.0  # NELECT
    assert bands.fermi_energy is None
    assert read_bands(path, keep_fermi_energy=True).fermi_energy == -3.0
    # with both filled bands 5 eV below the rest, the mid-gap Fermi level sits between them
    assert np.nanmax(eig[..., 1]) < bands.fermi_level() < np.nanmin(eig[..., 2])


def test_vasprun_garbage(tmp_path):
    (tmp_path / "vasprun.xml").write_text("<modeling><generator>")
    with pytest.raises(InputError, match=r"cannot parse vasprun\.xml"):
        read_bands(tmp_path / "vasprun.xml")
