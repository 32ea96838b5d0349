"""References shared by the tests, independent of the code under test: smearing closed forms in
numpy/scipy, the brute-force optimal makespan of a task assignment, crystal structures written out by
hand, PySCF cells with our primitives, malformed input files, and store comparison.

δ(x) and θ(x) follow DESIGN.md §3 (x = (ε_ref − ε)/σ; Methfessel & Paxton PRB 40, 3616 (1989); Marzari et al.
PRL 82, 3296 (1999)); Hermite polynomials come from numpy, not from our recurrence.
"""

import itertools
import json
import math

import h5py
import numpy as np
from numpy.polynomial.hermite import hermval
from pymatgen.core import Lattice, Structure
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


# ---------------------------------------------------------------------------- malformed inputs
def _poscar(lattice="5.64 0 0\n0 5.64 0\n0 0 5.64", scale="1.0", species="Na Cl", counts="1 1",
            coords="0 0 0\n0.5 0.5 0.5") -> str:
    """POSCAR text of rock salt with any part replaced (written by hand, not by the code under test)."""
    return f"NaCl\n{scale}\n{lattice}\n{species}\n{counts}\nDirect\n{coords}\n"


def _structure_json(lattice, species, coords, pbc=(True, True, True), **site_extra) -> str:
    """pymatgen's JSON layout of a structure, written field by field (NaN and inf allowed)."""
    sites = [
        {"species": [{"element": el, "occu": 1.0}], "abc": list(xyz), "label": el, "properties": {}}
        for el, xyz in zip(species, coords, strict=True)
    ]
    data = {
        "@module": "pymatgen.core.structure", "@class": "Structure", "charge": 0.0,
        "lattice": {"matrix": [list(v) for v in lattice], "pbc": list(pbc)}, "sites": sites, **site_extra,
    }
    return json.dumps(data)


def _cif(cell="5.64 5.64 5.64 90 90 90", atoms="Na Na 0 0 0 1\nCl Cl 0.5 0.5 0.5 1") -> str:
    a, b, c, al, be, ga = cell.split()
    return (
        "data_test\n_symmetry_space_group_name_H-M 'P 1'\n"
        f"_cell_length_a {a}\n_cell_length_b {b}\n_cell_length_c {c}\n"
        f"_cell_angle_alpha {al}\n_cell_angle_beta {be}\n_cell_angle_gamma {ga}\n"
        "loop_\n_symmetry_equiv_pos_as_xyz\n'x, y, z'\n"
        "loop_\n_atom_site_type_symbol\n_atom_site_label\n_atom_site_fract_x\n_atom_site_fract_y\n"
        f"_atom_site_fract_z\n_atom_site_occupancy\n{atoms}\n"
    )


CUBE = ((5.64, 0, 0), (0, 5.64, 0), (0, 0, 5.64))
NACL = (("Na", "Cl"), ((0, 0, 0), (0.5, 0.5, 0.5)))


def write_malformed_corpus(directory, max_atoms: int = 40) -> dict[str, str]:
    """Write malformed or hostile structure files into `directory`; return {id: expected fragment of the
    failure reason} (the id is what `sporep-hpc run` calls the file: its stem).

    Every file must end as a failed row of a run with ``max_atoms = max_atoms`` and the default
    min_distance (0.5 Å), whatever stage finds the problem (read, validation, planning, compute).
    Several are what real users feed: a disordered CIF, a POSCAR with ``inf``, an empty or truncated
    download, a binary file renamed ``.cif``, a plain XYZ without cell, a 2-D slab with pbc off.
    """
    from pathlib import Path

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(12)
    junk = bytes(rng.integers(0, 256, 4096, dtype=np.uint8))
    na, cl = NACL[0]
    nan = float("nan")
    partial = "Na Na1 0 0 0 0.5\nK K1 0 0 0 0.5\nCl Cl 0.5 0.5 0.5 1"  # Na and K share a site
    latin1 = _structure_json(CUBE, *NACL).replace('"charge"', '"caf\xe9"').encode("latin-1")
    files: dict[str, tuple[bytes | str, str]] = {
        "partial.cif": (_cif(atoms=partial), "partial occupancy"),
        "inf_coord.vasp": (_poscar(coords="0 0 0\ninf 0.5 0.5"), "non-finite"),
        "nan_coord.vasp": (_poscar(coords="0 0 0\nnan 0.5 0.5"), "non-finite"),
        "inf_lattice.vasp": (_poscar(lattice="inf 0 0\n0 5.64 0\n0 0 5.64"), "non-finite"),
        "nan_lattice.json": (_structure_json(((nan, 0, 0), (0, 5.64, 0), (0, 0, 5.64)), *NACL), "non-finite"),
        "zero_scale.vasp": (_poscar(scale="0.0"), "lattice vector lengths"),
        "zero_vector.json": (_structure_json(((0, 0, 0), (0, 5.64, 0), (0, 0, 5.64)), *NACL), "lattice"),
        "flat.json": (_structure_json(((5.64, 0, 0), (0, 5.64, 0), (5.64, 5.64, 1e-6)), *NACL), "flat"),
        "huge_lattice.json": (
            _structure_json(((1e9, 0, 0), (0, 5.64, 0), (0, 0, 5.64)), *NACL), "lattice vector lengths"
        ),
        "huge_coords.json": (_structure_json(CUBE, (na, cl), ((0, 0, 0), (1e12, 0.5, 0.5))), "fractional"),
        "overlap.json": (_structure_json(CUBE, (na, cl), ((0, 0, 0), (0, 0, 0))), "closer than"),
        "close.json": (_structure_json(CUBE, (na, cl), ((0, 0, 0), (0.03, 0, 0))), "closer than"),
        "tiny_cell.json": (
            _structure_json(((0.3, 0, 0), (0, 0.3, 0), (0, 0, 0.3)), ("Cu",), ((0, 0, 0),)), "closer than"
        ),
        "too_many.json": (
            _structure_json(
                ((30.0, 0, 0), (0, 30.0, 0), (0, 0, 30.0)), ("H",) * (max_atoms + 1),
                [(i / (max_atoms + 1), 0, 0) for i in range(max_atoms + 1)],
            ),
            "max_atoms",
        ),
        "no_basis.json": (_structure_json(CUBE, ("Og", "Cl"), NACL[1]), "Og"),
        "dummy.json": (
            _structure_json(CUBE, ("Na", "X"), NACL[1]).replace('"X"', '"X", "oxidation_state": 0', 1),
            "unknown element",
        ),
        "unknown_element.vasp": (_poscar(species="Xx Cl"), "unknown element"),
        "count_mismatch.vasp": (_poscar(counts="3 1"), "unreadable"),
        "two_d.json": (_structure_json(CUBE, *NACL, pbc=(True, True, False)), "periodic in 3 dimensions"),
        "no_atoms.json": (_structure_json(CUBE, (), ()), "no_atoms.json"),
        "empty_cif.cif": ("", "empty_cif.cif"),
        "empty_vasp.vasp": ("", "empty_vasp.vasp"),
        "empty_json.json": ("", "empty_json.json"),
        "blank.xyz": ("\n\n  \n", "blank.xyz"),
        "junk_cif.cif": (junk, "junk_cif.cif"),
        "junk_vasp.vasp": (junk, "junk_vasp.vasp"),
        "junk_json.json": (junk, "junk_json.json"),
        "junk_xyz.extxyz": (junk, "junk_xyz.extxyz"),
        "latin1.json": (latin1, "latin1"),
        "poscar_in.cif": (_poscar(), "poscar_in.cif"),
        "cif_in.json": (_cif(), "cif_in.json"),
        "not_structure.json": ('{"answer": 42}', "not_structure.json"),
        "numbers.json": ("[1, 2, 3]", "numbers.json"),
        "cell_only.cif": (_cif(atoms=""), "cell_only.cif"),
        "plain.xyz": ("2\nno lattice\nNa 0 0 0\nCl 2.82 0 0\n", "not periodic"),
        "short.extxyz": (
            '5\nLattice="5.64 0 0 0 5.64 0 0 0 5.64" Properties=species:S:1:pos:R:3\nNa 0 0 0\nCl 2.82 0 0\n',
            "expected 5",  # ASE: "Frame has 2 atoms, expected 5"
        ),
        "inf_pos.extxyz": (
            '2\nLattice="5.64 0 0 0 5.64 0 0 0 5.64" Properties=species:S:1:pos:R:3\nNa 0 0 0\nCl inf 0 0\n',
            "non-finite",
        ),
        "nested.json": ("[" * 100000 + "]" * 100000, "nested.json"),
        "slab.extxyz": (  # a 2-D slab as ASE writes it: periodic in x and y only
            '2\nLattice="5.64 0 0 0 5.64 0 0 0 20" Properties=species:S:1:pos:R:3 pbc="T T F"\n'
            "Na 0 0 0\nCl 2.82 2.82 0\n",
            "periodic in 3 dimensions",
        ),
        "bad_pbc.extxyz": (
            '2\nLattice="5.64 0 0 0 5.64 0 0 0 5.64" Properties=species:S:1:pos:R:3 pbc="T T"\n'
            "Na 0 0 0\nCl 2.82 2.82 2.82\n",
            "bad_pbc.extxyz: unreadable",  # ASE cannot fit two pbc flags to three directions
        ),
    }
    expected = {}
    for name, (content, fragment) in files.items():
        path = d / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        expected[path.stem] = fragment
    return expected


def write_unusual_good_corpus(directory) -> list[str]:
    """Write valid but unusual structure files into `directory`; return their ids (all must compute).

    A left-handed cell, a POSCAR whose negative scale factor is the cell volume, atoms outside
    [0, 1), CRLF line endings, a name with a control character (its id gets ``_`` instead) and a
    name that is not UTF-8.
    """
    import os
    from pathlib import Path

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "left_handed.json": _structure_json(((0, 5.64, 0), (5.64, 0, 0), (0, 0, 5.64)), *NACL),
        "volume_scale.vasp": _poscar(scale=f"-{5.64**3:.6f}", lattice="1 0 0\n0 1 0\n0 0 1"),
        "outside.json": _structure_json(CUBE, NACL[0], ((-1.0, 2.0, 0.0), (1.5, -0.5, 3.5))),
        "crlf.vasp": _poscar().replace("\n", "\r\n"),
        "ctl\x01name.json": _structure_json(CUBE, *NACL),
    }
    for name, text in files.items():
        (d / name).write_bytes(text.encode())
    # a file name that is not UTF-8 (bytes path: the OS takes any byte but / and NUL)
    with open(os.path.join(os.fsencode(d), b"caf\xe9.json"), "wb") as fh:
        fh.write(_structure_json(CUBE, *NACL).encode())
    return ["left_handed", "volume_scale", "outside", "crlf", "ctl_name", "caf_"]


# ---------------------------------------------------------------------------- stores (tests/mpi)
def structures():
    """Four small crystals and one with atoms 0.25 Å apart, by id (pymatgen Structures)."""
    return {
        "si": Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
        "nacl": Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "cu": Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]]),
        "graphite": Structure(
            Lattice.hexagonal(2.46, 6.7), ["C"] * 4,
            [[0, 0, 0.25], [0, 0, 0.75], [1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]],
        ),
        "close": Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]]),  # 0.25 Å apart
    }


def write_mixed_corpus(directory, max_atoms: int = 40) -> tuple[dict[str, str], list[str]]:
    """The malformed corpus, the unusual good files and three plain crystals (si, cu, graphite) in one
    directory: ({bad id: expected fragment of its failure reason}, [good ids])."""
    bad = write_malformed_corpus(directory, max_atoms=max_atoms)
    good = write_unusual_good_corpus(directory)
    for name in ("si", "cu", "graphite"):
        structures()[name].to(filename=str(directory / f"{name}.json"))
        good.append(name)
    return bad, good


def datasets(path):
    """({path: array} of every dataset, root attributes but created/n_ranks) of an HDF5 store."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda k, obj: out.__setitem__(k, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        attrs = {k: v for k, v in f.attrs.items() if k not in ("created", "n_ranks")}
    return out, attrs


def assert_same_store(a, b):
    """Every dataset equal (floats to 1e-12 absolute, NaN where NaN), root attributes equal."""
    (da, aa), (db, ab) = datasets(a), datasets(b)
    assert aa == ab
    assert sorted(da) == sorted(db)
    for key in da:
        x, y = da[key], db[key]
        assert x.shape == y.shape, key
        if x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=0, atol=1e-12, equal_nan=True, err_msg=key)
        else:
            np.testing.assert_array_equal(x, y, err_msg=key)


# ---------------------------------------------------------------------------- crystals (Å)
GENERAL_K = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.5], [0.13, -0.27, 0.31], [0.41, 0.22, -0.05]])
"""k-points (reciprocal-lattice units) off every symmetry element: Γ, a zone-boundary point, two general."""

DIAMOND = [
    [0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
    [0.25, 0.25, 0.25], [0.75, 0.75, 0.25], [0.75, 0.25, 0.75], [0.25, 0.75, 0.75],
]  # fmt: skip
"""Fractional positions of the 8 atoms of the conventional cubic diamond cell."""


def si_conventional(a: float = 5.43) -> Structure:
    """Silicon's conventional cubic cell (8 atoms, lattice constant `a` Å)."""
    return Structure(Lattice.cubic(a), ["Si"] * 8, DIAMOND)


def fcc(a: float, species: list[str], frac: list[list[float]]) -> Structure:
    """An fcc primitive cell of cubic lattice constant `a` Å with atoms at `frac` (primitive-cell units)."""
    return Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), species, frac)


def zincblende(a: float, x: str, y: str) -> Structure:
    return fcc(a, [x, y], [[0, 0, 0], [0.25, 0.25, 0.25]])


def rocksalt(a: float, x: str, y: str) -> Structure:
    return fcc(a, [x, y], [[0, 0, 0], [0.5, 0.5, 0.5]])


def si_diamond() -> Structure:
    return zincblende(5.431, "Si", "Si")


def batio3_cubic() -> Structure:
    return Structure(Lattice.cubic(4.00), ["Ba", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def rutile_tio2() -> Structure:
    u = 0.3049
    return Structure(Lattice.tetragonal(4.594, 2.959), ["Ti", "Ti", "O", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [u, u, 0], [1 - u, 1 - u, 0], [0.5 + u, 0.5 - u, 0.5],
                      [0.5 - u, 0.5 + u, 0.5]])


def ceo2_fluorite() -> Structure:
    return fcc(5.411, ["Ce", "O", "O"], [[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]])


def triclinic() -> Structure:
    """Four atoms of four elements in a cell with no symmetry."""
    lat = Lattice.from_parameters(3.9, 4.4, 5.1, 77.0, 96.0, 104.0)
    return Structure(lat, ["Al", "P", "N", "H"],
                     [[0.05, 0.1, 0.02], [0.52, 0.43, 0.47], [0.21, 0.77, 0.64], [0.81, 0.33, 0.86]])


CRYSTALS = {
    "Si": si_diamond,
    "BaTiO3": batio3_cubic,
    "TiO2-rutile": rutile_tio2,
    "CeO2": ceo2_fluorite,
    "triclinic": triclinic,
}
"""Factories of the crystals compared with PySCF: d and f shells, no symmetry, up to six atoms."""


# ---------------------------------------------------------------------------- PySCF (libcint)
BOHR_ANGSTROM = 0.529177210903  # Å per Bohr, CODATA 2018 (written here, not taken from the code under test)


def pyscf_atoms(structure: Structure) -> list[tuple[str, np.ndarray]]:
    """(symbol, Cartesian position in Bohr) of every site, PySCF's `atom` format."""
    return [(site.specie.symbol, xyz) for site, xyz in zip(structure, structure.cart_coords / BOHR_ANGSTROM,
                                                           strict=True)]


def pyscf_cell(structure: Structure, basis, precision: float = 1e-13):
    """A PySCF Cell with the same lattice, Cartesian positions (Bohr) and primitives as ours.

    `precision` (PySCF's lattice-sum threshold) defaults tighter than ours (1e-12), so a difference
    measures our truncation, not PySCF's.
    """
    from pyscf.pbc import gto  # heavy optional dependency: only the tests that compare with PySCF load it

    symbols = [site.specie.symbol for site in structure]
    cell = gto.Cell()
    cell.a = structure.lattice.matrix / BOHR_ANGSTROM
    cell.unit = "B"
    cell.atom = pyscf_atoms(structure)
    cell.basis = basis.to_pyscf(symbols)
    cell.spin = sum(site.specie.Z for site in structure) % 2
    cell.precision = precision
    cell.verbose = 0
    cell.build()
    return cell


def pyscf_matrices(structure: Structure, kpoints: np.ndarray, basis) -> tuple[np.ndarray, np.ndarray]:
    """PySCF's S(k) and T(k) (n_k, n_ao, n_ao; Hartree) at `kpoints` (reciprocal-lattice units)."""
    cell = pyscf_cell(structure, basis)
    kabs = cell.get_abs_kpts(kpoints)
    s = np.asarray(cell.pbc_intor("int1e_ovlp", hermi=1, kpts=kabs))
    t = np.asarray(cell.pbc_intor("int1e_kin", hermi=1, kpts=kabs))
    return s, t


# ---------------------------------------------------------------------------- DFT output files
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


# Quantum ESPRESSO data-file-schema.xml written by hand (tests/test_qe_xml.py, tests/test_inputs.py)
NS = "http://www.quantum-espresso.org/ns/qes/qes-1.0"
CELL = np.array([[7.1, 0.0, 0.0], [-3.4, 6.2, 0.0], [0.7, -0.4, 9.3]])  # Bohr; not symmetric, as a^T ≠ a
ALAT = 7.5  # Bohr; deliberately not |a1|, as after a vc-relax
ATOMS = [("Ga1", [0.0, 0.0, 0.0]), ("AS", [1.2, 2.1, 4.0])]  # labels as pw.x allows; Bohr
GRID = (2, 2, 2, 1, 1, 1)  # shifted Monkhorst-Pack


def grid_kpoints(grid=GRID):
    """Fractional k-points (i + s/2)/n of a Monkhorst-Pack grid."""
    n, s = np.array(grid[:3]), np.array(grid[3:])
    idx = np.stack(np.meshgrid(*(np.arange(m) for m in n), indexing="ij"), -1).reshape(-1, 3)
    return (idx + 0.5 * s) / n


def to_cartesian(frac, cell=CELL, alat=ALAT):
    """Cartesian k in units of 2π/alat: alat Σ_j f_j b_j with a_i · b_j = δ_ij."""
    return alat * frac @ np.linalg.inv(cell).T


def numbers(values):
    return " ".join(f"{float(v):.17e}" for v in values)


def qe_xml(eig_ha, occ, *, nelec, spin="none", counts=None, kind="smearing", smearing=("gaussian", 0.02),
           fermi=None, converged=True, grid=GRID, weights=None, alat=ALAT):
    """Text of a minimal data-file-schema.xml in QE's layout (Hartree atomic units; per-k value lists).

    counts: (nbnd_up, nbnd_dw) for spin="lsda". fermi: (tag, values) such as ("fermi_energy", [0.1]).
    """
    frac = grid_kpoints(grid)
    weights = np.full(len(frac), 2.0 / len(frac)) if weights is None else weights  # QE's sum: 2
    atoms = "".join(f'<atom name="{name}" index="{i + 1}">{numbers(r)}</atom>'
                    for i, (name, r) in enumerate(ATOMS))
    cell = "".join(f"<a{i + 1}>{numbers(a)}</a{i + 1}>" for i, a in enumerate(CELL))
    if spin == "lsda":
        nbnd = f"<nbnd_up>{counts[0]}</nbnd_up><nbnd_dw>{counts[1]}</nbnd_dw>"
    else:
        nbnd = f"<nbnd>{len(eig_ha[0])}</nbnd>"
    conv = "" if converged is None else (
        "<convergence_info><scf_conv><convergence_achieved>"
        f"{'true' if converged else 'false'}</convergence_achieved></scf_conv></convergence_info>"
    )
    fermi_xml = "" if fermi is None else f"<{fermi[0]}>{numbers(fermi[1])}</{fermi[0]}>"
    smear = "" if smearing is None else f'<smearing degauss="{smearing[1]!r}">{smearing[0]}</smearing>'
    mp = '<monkhorst_pack nk1="{}" nk2="{}" nk3="{}" k1="{}" k2="{}" k3="{}">Monkhorst-Pack</monkhorst_pack>'
    ks = "".join(
        f'<ks_energies><k_point weight="{float(w)!r}">{numbers(k)}</k_point><npw>100</npw>'
        f'<eigenvalues size="{len(e)}">{numbers(e)}</eigenvalues>'
        f'<occupations size="{len(o)}">{numbers(o)}</occupations></ks_energies>\n'
        for k, w, e, o in zip(to_cartesian(frac, alat=alat), weights, eig_ha, occ, strict=True)
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<qes:espresso xmlns:qes="{NS}" Units="Hartree atomic units">
<general_info><creator NAME="PWSCF" VERSION="7.3.1">XML file generated by PWSCF</creator></general_info>
<output>{conv}
<atomic_structure nat="{len(ATOMS)}" alat="{alat!r}"><atomic_positions>{atoms}</atomic_positions>
<cell>{cell}</cell></atomic_structure>
<band_structure><lsda>{str(spin == "lsda").lower()}</lsda>
<noncolin>{str(spin == "noncollinear").lower()}</noncolin>
{nbnd}<nelec>{float(nelec)!r}</nelec>{fermi_xml}
<starting_k_points>{mp.format(*grid)}</starting_k_points><nks>{len(frac)}</nks>
<occupations_kind>{kind}</occupations_kind>{smear}
{ks}</band_structure>
</output>
</qes:espresso>
"""


# calculation folders (tests/test_inputs.py, tests/mpi/test_inputs_mpi.py)
def write_vasp_folder(folder, rng, with_vasprun):
    """POSCAR and a CONTCAR moved from it (and a vasprun.xml): the structures written (initial, final)."""
    folder.mkdir(parents=True)
    initial = Structure(Lattice.cubic(5.43), ["Si"] * 2, [[0, 0, 0], [0.25, 0.25, 0.25]])
    final = Structure(Lattice.cubic(5.40), ["Si"] * 2, [[0, 0, 0], [0.26, 0.25, 0.24]])
    initial.to(filename=str(folder / "POSCAR"), fmt="poscar")
    final.to(filename=str(folder / "CONTCAR"), fmt="poscar")
    (folder / "INCAR").write_text("ENCUT = 400\n")
    if with_vasprun:
        eig = np.sort(rng.uniform(-5, 5, (1, 4, 6)), axis=2)
        eig[..., :2] -= 10
        occ = np.zeros_like(eig)
        occ[..., :2] = 1.0
        write_vasprun(folder / "vasprun.xml", eig, occ, grid_kpoints((2, 2, 1, 0, 0, 0)), np.full(4, 0.25),
                      nelect=4.0, efermi=-3.0)
    return initial, final


def write_qe_folder(folder, rng, converged=True, with_input=True):
    """A QE calculation folder: <prefix>.save/data-file-schema.xml (tests/_references.qe_xml) and a pw.x
    input of Si (ASE's writer) named gaas.in; returns the XML path."""
    save = folder / "gaas.save"
    save.mkdir(parents=True)
    n_k = len(grid_kpoints())
    eig = [np.sort(rng.uniform(-0.5, 0.5, 6)) for _ in range(n_k)]
    occ = [np.r_[np.ones(2), np.zeros(4)] for _ in range(n_k)]
    text = qe_xml(eig, occ, nelec=4.0, kind="fixed", smearing=None, converged=converged,
                  fermi=("highestOccupiedLevel", [max(e[1] for e in eig)]))
    (save / "data-file-schema.xml").write_text(text)
    if with_input:
        import ase.build
        import ase.io

        si = ase.build.bulk("Si", "diamond", a=5.43)
        ase.io.write(folder / "gaas.in", si, format="espresso-in", pseudopotentials={"Si": "Si.upf"},
                     parallel=False)  # ASE's default parallel write is a collective on COMM_WORLD
    return save / "data-file-schema.xml"


def cell_choices():
    """One crystal in several cells, for the cell-choice tests (issue 13.6): {crystal: {cell name:
    pymatgen Structure}}, Si (diamond) and NaCl (rocksalt): the conventional cubic cell, pymatgen's own
    primitive cell (`get_primitive_structure`, not spglib's), a 2×1×1 supercell of it and the conventional
    cell with its origin shifted by (0.1, 0.2, 0.3)."""
    crystals = {
        "si": Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]]),
        "nacl": Structure.from_spacegroup(
            "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
        ),
    }
    out = {}
    for name, conventional in crystals.items():
        primitive = conventional.get_primitive_structure()
        supercell = primitive.copy()
        supercell.make_supercell([2, 1, 1])
        shifted = conventional.copy()
        shifted.translate_sites(list(range(len(shifted))), [0.1, 0.2, 0.3])
        out[name] = {"primitive": primitive, "conventional": conventional, "supercell": supercell,
                     "shifted": shifted}
    return out


def relative_distances(values, energies, window_offsets):
    """{metric: largest distance between the rows of `values` (one crystal in several cells), relative}:
    euclidean / ‖row 0‖; cosine and tanimoto as they are (dimensionless, 1 − similarity); wasserstein
    (eV) / the summed width of the windows (`sporep_hpc.analysis.similarity.pairwise_distances`)."""
    from sporep_hpc.analysis.similarity import METRICS, pairwise_distances

    width = sum(energies[b - 1] - energies[a] for a, b in itertools.pairwise(window_offsets))
    scale = {"euclidean": np.linalg.norm(values[0]), "cosine": 1.0, "tanimoto": 1.0, "wasserstein": width}
    return {m: float(np.max(pairwise_distances(values, metric=m, energies=energies,
                                               window_offsets=window_offsets))) / scale[m] for m in METRICS}
