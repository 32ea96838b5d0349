"""Band-structure import (sporep_hpc.bandfiles): .npz archives and VASP vasprun.xml through pymatgen."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sporep_hpc.bandfiles import read_bands
from sporep_hpc.errors import InputError

pytest.importorskip("pymatgen.io.vasp")


def write_vasprun(path, eig, occ, kpoints, weights, nelect, efermi):
    """A minimal vasprun.xml in VASP's layout (eigenvalues (n_spin, n_k, n_bands), occupations in [0, 1])."""
    rows = "\n".join(f"   <v> {k[0]:.8f} {k[1]:.8f} {k[2]:.8f} </v>" for k in kpoints)
    wrows = "\n".join(f"   <v> {w:.8f} </v>" for w in weights)
    spins = []
    for s in range(eig.shape[0]):
        ks = []
        for k in range(eig.shape[1]):
            pairs = zip(eig[s, k], occ[s, k], strict=True)
            rs = "\n".join(f"       <r> {e:.8f} {o:.4f} </r>" for e, o in pairs)
            ks.append(f'      <set comment="kpoint {k + 1}">\n{rs}\n      </set>')
        spins.append(f'     <set comment="spin {s + 1}">\n' + "\n".join(ks) + "\n     </set>")
    basis = "\n".join(f"    <v> {' '.join(f'{x:.8f}' for x in row)} </v>" for row in 5.43 * np.eye(3))

    def structure(name):  # the same one-atom cell as initial and final position
        return f""" <structure name="{name}" >
  <crystal>
   <varray name="basis" >
{basis}
   </varray>
  </crystal>
  <varray name="positions" >
   <v> 0.0 0.0 0.0 </v>
  </varray>
 </structure>"""

    text = f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<modeling>
 <generator>
  <i name="program" type="string">vasp </i>
  <i name="version" type="string">6.4.2 </i>
 </generator>
 <incar>
  <i name="ISPIN">{eig.shape[0]}</i>
 </incar>
 <kpoints>
  <generation param="Gamma">
   <v type="int" name="divisions"> 2 2 2 </v>
  </generation>
  <varray name="kpointlist" >
{rows}
  </varray>
  <varray name="weights" >
{wrows}
  </varray>
 </kpoints>
 <parameters>
  <separator name="electronic" >
   <i name="NELECT"> {nelect:.8f}</i>
   <i type="int" name="ISPIN"> {eig.shape[0]}</i>
   <i type="int" name="NELM"> 60</i>
   <i type="logical" name="LSORBIT"> F  </i>
  </separator>
 </parameters>
 <atominfo>
  <atoms> 1 </atoms>
  <types> 1 </types>
  <array name="atoms" >
   <dimension dim="1">ion</dimension>
   <field type="string">element</field>
   <field type="int">atomtype</field>
   <set>
    <rc><c>Si</c><c> 1</c></rc>
   </set>
  </array>
  <array name="atomtypes" >
   <dimension dim="1">type</dimension>
   <field type="int">atomspertype</field>
   <field type="string">element</field>
   <field>mass</field>
   <field>valence</field>
   <field type="string">pseudopotential</field>
   <set>
    <rc><c> 1</c><c>Si</c><c> 28.085</c><c> 4.0</c><c> PAW_PBE Si 05Jan2001</c></rc>
   </set>
  </array>
 </atominfo>
{structure('initialpos')}
 <calculation>
  <energy>
   <i name="e_fr_energy"> -5.0 </i>
   <i name="e_wo_entrp"> -5.0 </i>
   <i name="e_0_energy"> -5.0 </i>
  </energy>
  <eigenvalues>
   <array>
    <dimension dim="1">band</dimension>
    <dimension dim="2">kpoint</dimension>
    <dimension dim="3">spin</dimension>
    <field>eigene</field>
    <field>occ</field>
    <set>
{chr(10).join(spins)}
    </set>
   </array>
  </eigenvalues>
  <dos>
   <i name="efermi"> {efermi:.8f} </i>
   <total>
    <array>
     <dimension dim="1">gridpoints</dimension>
     <dimension dim="2">spin</dimension>
     <field>energy</field>
     <field>total</field>
     <field>integrated</field>
     <set>
      <set comment="spin 1">
       <r> -10.0 0.0 0.0 </r>
       <r> 10.0 0.0 0.0 </r>
      </set>
     </set>
    </array>
   </total>
  </dos>
 </calculation>
{structure('finalpos')}
</modeling>
"""
    path.write_text(text)
    return path


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
