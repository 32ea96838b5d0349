"""What a path means (sporep_hpc.inputs, issue 13 points 1-4): structure files through pymatgen and ASE,
multi-image files, ASE databases, calculation folders (VASP, Quantum ESPRESSO) as one input, QE XML and
pymatgen BandStructure JSON as band inputs.

Every file is written here by an independent writer (ASE's and pymatgen's own writers, the hand-written
vasprun.xml and QE XML of tests/_references.py); references are the structures and arrays given to those
writers, compared with stated tolerances.
"""

import itertools
import json
import shutil
import sqlite3

import numpy as np
import pytest
from _references import grid_kpoints, write_qe_folder, write_vasp_folder
from numpy.testing import assert_allclose
from pymatgen.core import Lattice, Structure

from sporep_hpc.bandfiles import read_bands, read_pymatgen_bands
from sporep_hpc.config import RunParameters
from sporep_hpc.errors import InputError, ParameterError
from sporep_hpc.inputs import calculation, collect_inputs, read_file, resolve_inputs
from sporep_hpc.pipeline import FingerprintSet, compute_record
from sporep_hpc.store.schema import STATUS_DONE

pytest.importorskip("ase")
import ase.build
import ase.db
import ase.io

POS_ATOL = 1e-6  # Å: the text formats below write positions with at least 8 decimals


def si_atoms():
    return ase.build.bulk("Si", "diamond", a=5.43)


def trajectory(path, n=3):
    """n rattled copies of Si; returns the images written (the reference)."""
    images = []
    for i in range(n):
        a = si_atoms()
        a.rattle(0.02 * (i + 1), seed=i)
        images.append(a)
    ase.io.write(path, images)
    return images


def same_positions(structure, atoms):
    assert [s.specie.symbol for s in structure] == atoms.get_chemical_symbols()
    assert_allclose(structure.lattice.matrix, atoms.cell.array, rtol=0, atol=POS_ATOL)
    assert_allclose(structure.cart_coords, atoms.positions, rtol=0, atol=POS_ATOL)


def by_id(records):
    return {r.id: r for r in records}


# ---------------------------------------------------------------------------- ASE formats
def test_trajectory_gives_its_last_image_or_every_image(tmp_path):
    images = trajectory(tmp_path / "relax.traj")
    (record,) = resolve_inputs([str(tmp_path / "relax.traj")])
    assert (record.id, record.kind) == ("relax", "structure")
    same_positions(record.structure, images[-1])
    every = resolve_inputs([str(tmp_path / "relax.traj")], images="all")
    assert [r.id for r in every] == ["relax@0", "relax@1", "relax@2"]
    for r, a in zip(every, images, strict=True):
        same_positions(r.structure, a)
    assert len(read_file(tmp_path / "relax.traj", images="all")) == 3
    with pytest.raises(ParameterError, match="images must be one of 'all', 'last'; got 'first'"):
        resolve_inputs([str(tmp_path / "relax.traj")], images="first")


def test_ase_database_one_structure_per_row(tmp_path):
    path = tmp_path / "calcs.db"
    si, cu = si_atoms(), ase.build.bulk("Cu", "fcc", a=3.6)
    with ase.db.connect(str(path)) as db:
        db.write(si, name="si-bulk", gap=1.1, metal=False)
        db.write(cu, tag="x")
    before = path.read_bytes()
    records = by_id(resolve_inputs([str(path)]))
    assert sorted(records) == ["calcs@2", "si-bulk"]  # a name key, else <stem>@<row id>
    same_positions(records["si-bulk"].structure, si)
    same_positions(records["calcs@2"].structure, cu)
    assert records["si-bulk"].properties == {"name": "si-bulk", "gap": 1.1, "metal": False}
    assert records["calcs@2"].properties == {"tag": "x"}
    assert path.read_bytes() == before  # read, never written


def test_a_db_file_that_is_not_an_ase_database_is_refused_and_left_untouched(tmp_path):
    # ASE's own connect creates its tables in any SQLite file it opens: an input must never be written
    empty, foreign = tmp_path / "empty.db", tmp_path / "foreign.db"
    empty.write_bytes(b"")
    with sqlite3.connect(foreign) as con:
        con.execute("CREATE TABLE samples (name TEXT)")
    before = {p: p.read_bytes() for p in (empty, foreign)}
    for path in (empty, foreign):
        with pytest.raises(InputError, match=f"{path.name}: .*not an ASE database"):
            read_file(path)
        assert path.read_bytes() == before[path]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "foreign.db"]  # no journal left


def test_extended_xyz_through_ase(tmp_path):
    a, b = si_atoms(), ase.build.bulk("NaCl", "rocksalt", a=5.64)
    a.info.update(label="ground state", n=3)
    ase.io.write(tmp_path / "set.extxyz", [a, b], format="extxyz")
    # written by hand as other programs do: lower-case key order, positions before species
    (tmp_path / "pos_first.xyz").write_text(
        '2\nLattice="5.64 0 0 0 5.64 0 0 0 5.64" Properties=pos:R:3:species:S:1 energy=-1.5\n'
        "0 0 0 Na\n2.82 2.82 2.82 Cl\n"
    )
    (tmp_path / "lower.xyz").write_text(
        '2\nlattice="5.64 0 0 0 5.64 0 0 0 5.64" Properties=species:S:1:pos:R:3\n'
        "Na 0 0 0\nCl 2.82 2.82 2.82\n"
    )
    records = by_id(collect_inputs([tmp_path]))
    assert sorted(records) == ["lower", "pos_first", "set-0", "set-1"]  # a collection: every frame
    same_positions(records["set-0"].structure, a)
    same_positions(records["set-1"].structure, b)
    assert records["set-0"].properties == {"label": "ground state", "n": 3}
    assert records["pos_first"].kind == "structure" and records["pos_first"].properties == {"energy": -1.5}
    got = records["pos_first"].structure.cart_coords
    assert_allclose(got, [[0, 0, 0], [2.82, 2.82, 2.82]], rtol=0, atol=POS_ATOL)
    # ASE reads a lower-case lattice= as an ordinary key: no cell, so not a crystal (the reason says so)
    assert records["lower"].kind == "failed"
    assert "not periodic" in records["lower"].error and 'Lattice="..."' in records["lower"].error


@pytest.mark.parametrize("name", ["si.pwi", "si.in", "pw.x-input.txt"])
def test_pw_input_under_any_name(tmp_path, name):
    si = si_atoms()
    ase.io.write(tmp_path / name, si, format="espresso-in", pseudopotentials={"Si": "Si.upf"})
    (record,) = resolve_inputs([str(tmp_path / name)])
    assert record.kind == "structure", record.error
    same_positions(record.structure, si)


def test_wannier_hamiltonian_is_refused_by_name_and_skipped_in_directories(tmp_path):
    (tmp_path / "wannier90_hr.dat").write_text("written on 30Nov2026\n 1\n 1\n 1\n 0 0 0 1 1 1.0 0.0\n")
    si = Structure(Lattice.cubic(5.43), ["Si"] * 2, [[0, 0, 0], [0.25, 0.25, 0.25]])
    si.to(filename=str(tmp_path / "si.cif"))
    (record,) = resolve_inputs([str(tmp_path / "wannier90_hr.dat")])
    assert record.kind == "failed" and "wannier90_hr.dat: a Wannier90 Hamiltonian" in record.error
    assert [r.id for r in resolve_inputs([str(tmp_path)])] == ["si"]


def test_unknown_content_is_a_failed_row(tmp_path):
    (tmp_path / "notes.txt").write_text("not a structure\n")
    (record,) = resolve_inputs([str(tmp_path / "notes.txt")])
    assert record.kind == "failed" and "notes.txt: unrecognised format" in record.error


# ---------------------------------------------------------------------------- calculation folders
def test_vasp_folder_is_one_input(tmp_path, rng):
    _, final = write_vasp_folder(tmp_path / "mp-149", rng, with_vasprun=False)
    (record,) = resolve_inputs([str(tmp_path / "mp-149")])  # was: duplicate id 'mp-149' (exit 2)
    assert (record.id, record.kind) == ("mp-149", "structure")
    assert_allclose(record.structure.cart_coords, final.cart_coords, atol=POS_ATOL)  # CONTCAR, not POSCAR
    assert record.note == "VASP folder: final structure from CONTCAR (also POSCAR)"
    # with a vasprun.xml the folder is its DFT bands
    write_vasp_folder(tmp_path / "db" / "mp-2", rng, with_vasprun=True)
    (bands,) = resolve_inputs([str(tmp_path / "db" / "mp-2")])
    source = str(tmp_path / "db" / "mp-2" / "vasprun.xml")
    assert (bands.id, bands.kind, bands.source) == ("mp-2", "bands", source)
    assert bands.note == "VASP folder: DFT bands from vasprun.xml (also CONTCAR, POSCAR)"


def test_directory_of_calculations(tmp_path, rng, caplog):
    root = tmp_path / "db"
    write_vasp_folder(root / "mp-149", rng, with_vasprun=False)
    write_vasp_folder(root / "mp-2", rng, with_vasprun=True)
    trajectory(root / "md.traj")
    si = Structure(Lattice.cubic(5.43), ["Si"] * 2, [[0, 0, 0], [0.25, 0.25, 0.25]])
    (root / "plain").mkdir()
    si.to(filename=str(root / "plain" / "si.cif"))
    with caplog.at_level("DEBUG", logger="sporep_hpc.inputs.files"):
        records = resolve_inputs([str(root)])
    assert [(r.id, r.kind) for r in records] == [
        ("md", "structure"), ("mp-149", "structure"), ("mp-2", "bands"), ("plain/si", "structure"),
    ]
    assert "VASP folder: final structure from CONTCAR" in caplog.text  # the choice, at debug level
    assert calculation(root / "plain") is None and calculation(root) is None


def test_qe_folder_is_its_xml_bands(tmp_path, rng):
    xml = write_qe_folder(tmp_path / "gaas-scf", rng)
    (record,) = resolve_inputs([str(tmp_path / "gaas-scf")])
    assert (record.id, record.kind, record.source) == ("gaas-scf", "bands", str(xml))
    assert record.note == "QE folder: DFT bands from gaas.save/data-file-schema.xml"
    assert [s.specie.symbol for s in record.structure] == ["Ga", "As"]  # the XML's, not the pw.x input's
    # without the XML or a pw.x output the folder is no calculation: its pw.x input is a structure file
    shutil.rmtree(tmp_path / "gaas-scf" / "gaas.save")
    assert calculation(tmp_path / "gaas-scf") is None
    (record,) = resolve_inputs([str(tmp_path / "gaas-scf")])
    assert (record.id, record.kind, record.note) == ("gaas", "structure", "")
    same_positions(record.structure, si_atoms())


def test_calculation_claims_only_its_files(tmp_path, rng):
    """A flat directory with a POSCAR, pw.x inputs and CIFs: the POSCAR is the folder's calculation (id the
    folder, as before), every other file stays its own input."""
    folder = tmp_path / "flat"
    folder.mkdir()
    si = Structure(Lattice.cubic(5.43), ["Si"] * 2, [[0, 0, 0], [0.25, 0.25, 0.25]])
    si.to(filename=str(folder / "POSCAR"), fmt="poscar")
    for name in ("a.cif", "b.cif"):
        si.to(filename=str(folder / name))
    for name in ("scf.in", "relax.pwi"):
        ase.io.write(folder / name, si_atoms(), format="espresso-in", pseudopotentials={"Si": "Si.upf"})
    (folder / "notes.out").write_text("not a pw.x output\n")
    records = resolve_inputs([str(folder)])
    assert [(r.id, r.kind) for r in records] == [
        ("flat", "structure"), ("a", "structure"), ("b", "structure"), ("relax", "structure"),
        ("scf", "structure"),
    ]
    assert records[0].note == "VASP folder: final structure from POSCAR"


def test_pw_output_folder_gives_the_last_image(tmp_path):
    """A folder with a pw.x output and its input, no XML: the output's last image. The output is the two-step
    relaxation ASE's own reader tests use (ase/test/fio/test_espresso.py), named .out as pw.x users do."""
    pw_output_text = pytest.importorskip("ase.test.fio.test_espresso").pw_output_text
    folder = tmp_path / "fe2h-relax"
    folder.mkdir()
    (folder / "relax.out").write_text(pw_output_text)
    ase.io.write(folder / "relax.in", si_atoms(), format="espresso-in", pseudopotentials={"Si": "Si.upf"})
    steps = ase.io.read(folder / "relax.out", index=":", format="espresso-out")
    assert len(steps) == 2  # so that "last" is not also "first"
    (record,) = resolve_inputs([str(tmp_path)])
    assert (record.id, record.kind) == ("fe2h-relax", "structure")
    assert record.note == "QE folder: last image of the pw.x output relax.out (no QE XML)"
    same_positions(record.structure, steps[-1])
    assert record.properties["energy"] == pytest.approx(steps[-1].get_potential_energy(), abs=0)


# ---------------------------------------------------------------------------- QE XML through a run
def params(**kw):
    return RunParameters(kdensity=0.5, **kw)


def compute(record, p):
    return compute_record(0, record, p, FingerprintSet.from_parameters(p))[0]


def test_qe_xml_file_is_a_band_input_of_a_run(tmp_path, rng):
    xml = write_qe_folder(tmp_path / "calc", rng, with_input=False)
    copy = tmp_path / "scf.xml"
    shutil.copy(xml, copy)
    (record,) = resolve_inputs([str(copy)])
    assert (record.id, record.kind) == ("scf", "bands")
    result = compute(record, params())
    assert result.status == STATUS_DONE, result.error
    expected = read_bands(copy)  # the reader's own result, checked against the file in test_qe_xml.py
    assert_allclose(result.eigenvalues, expected.eigenvalues, rtol=0, atol=0)
    assert result.n_electrons == 4.0


def test_unconverged_qe_xml_is_a_failed_row_unless_allowed(tmp_path, rng):
    write_qe_folder(tmp_path / "calc", rng, converged=False, with_input=False)
    (record,) = resolve_inputs([str(tmp_path / "calc")])
    failed = compute(record, params())
    assert failed.status != STATUS_DONE and "SCF not converged" in failed.error and "calc" in failed.error
    allowed = compute(record, params(allow_unconverged=True))
    assert allowed.status == STATUS_DONE, allowed.error


def test_real_qe_xml_files(qe_xml_dir, tmp_path):
    for path in sorted(qe_xml_dir.glob("*.xml")):
        folder = tmp_path / path.stem / "out" / "pwscf.save"
        folder.mkdir(parents=True)
        shutil.copy(path, folder / "data-file-schema.xml")
    records = by_id(resolve_inputs([str(tmp_path)]))
    # each calculation folder is one input, id its path, read from its .save/data-file-schema.xml
    assert sorted(records) == ["default_xml_240411/out", "scf_electric_field/out", "tot_magnetization/out"]
    for record in records.values():
        assert record.kind == "bands" and record.structure is not None
        result = compute(record, params())
        assert result.status == STATUS_DONE, result.error
    assert records["scf_electric_field/out"].structure.composition.reduced_formula == "LiF"  # README


# ---------------------------------------------------------------------------- pymatgen BandStructure JSON
def fcc_band(frac):
    """A band symmetric under the cubic point group and time reversal: Σ cos 2π f·n over the 12 nearest
    lattice vectors n of an fcc primitive cell (integer coordinates)."""
    n = np.array([v for v in itertools.product((-1, 0, 1), repeat=3) if any(v)])
    length = np.linalg.norm(n @ fcc_cell(), axis=1)
    n = n[np.isclose(length, length.min())]
    assert len(n) == 12
    return np.cos(2 * np.pi * frac @ n.T).sum(axis=1)


def fcc_cell(a=5.43):
    return 0.5 * a * np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0]])


def write_band_json(path, frac, structure, line_mode=False):
    from pymatgen.electronic_structure.bandstructure import BandStructure, BandStructureSymmLine
    from pymatgen.electronic_structure.core import Spin

    e = fcc_band(frac)
    eig = {Spin.up: np.array([e - 10.0, e + 10.0])}  # (n_bands, n_k): one band below efermi = 0, one above
    lattice = structure.lattice.reciprocal_lattice
    if line_mode:
        bs = BandStructureSymmLine(frac, eig, lattice, 0.0, {"\\Gamma": [0, 0, 0], "X": [0.5, 0, 0.5]},
                                   structure=structure)
    else:
        bs = BandStructure(frac, eig, lattice, 0.0, structure=structure)
    data = bs.as_dict()
    data["structure"] = structure.as_dict()  # as in Materials Project documents (pymatgen drops it here)
    path.write_text(json.dumps(data))
    return e


def silicon():
    return Structure(Lattice(fcc_cell()), ["Si"] * 2, [[0, 0, 0], [0.25, 0.25, 0.25]])


def test_pymatgen_band_structure_full_mesh(tmp_path):
    frac = grid_kpoints((4, 4, 4, 0, 0, 0))
    e = write_band_json(tmp_path / "mp-149_bs.json", frac, silicon())
    dft = read_pymatgen_bands(tmp_path / "mp-149_bs.json")
    assert_allclose(dft.bands.weights, np.full(64, 1 / 64), rtol=0, atol=1e-15)
    assert_allclose(dft.bands.eigenvalues[0], np.sort(np.stack([e - 10, e + 10], 1), axis=1), atol=1e-12)
    assert dft.bands.n_electrons == 2.0 and dft.kpoint_grid == (4, 4, 4, 0, 0, 0)
    (record,) = resolve_inputs([str(tmp_path / "mp-149_bs.json")])
    assert (record.id, record.kind) == ("mp-149_bs", "bands") and len(record.structure) == 2
    assert compute(record, params()).status == STATUS_DONE


def test_pymatgen_band_structure_irreducible_mesh(tmp_path):
    import spglib

    s = silicon()
    mesh = (6, 6, 6)
    cell = (s.lattice.matrix, s.frac_coords, [14, 14])
    mapping, address = spglib.get_ir_reciprocal_mesh(mesh, cell, is_shift=(0, 0, 0))
    irreducible = np.asarray(address)[np.unique(mapping)] / np.array(mesh)
    write_band_json(tmp_path / "ibz.json", irreducible, s)
    bands = read_pymatgen_bands(tmp_path / "ibz.json").bands
    # reference: the band averaged over the full 6x6x6 mesh with numpy (no symmetry used)
    full = fcc_band(grid_kpoints((6, 6, 6, 0, 0, 0))).mean()
    assert_allclose(bands.weights.sum(), 1.0, rtol=0, atol=1e-14)
    assert_allclose(bands.weights @ bands.eigenvalues[0, :, 0], full - 10.0, rtol=0, atol=1e-12)
    assert len(bands.weights) < 216


def test_pymatgen_band_structure_refusals(tmp_path):
    frac = np.array([[0, 0, 0], [0.25, 0, 0.25], [0.5, 0, 0.5]])
    write_band_json(tmp_path / "line.json", frac, silicon(), line_mode=True)
    with pytest.raises(InputError, match="line-mode band structure"):
        read_pymatgen_bands(tmp_path / "line.json")
    (record,) = resolve_inputs([str(tmp_path / "line.json")])
    failed = compute(record, params())
    assert failed.status != STATUS_DONE and "line-mode" in failed.error
    write_band_json(tmp_path / "some.json", frac[:2] + 0.0137, silicon())
    with pytest.raises(InputError, match=r"some\.json.*(not on a uniform mesh|neither the full)"):
        read_pymatgen_bands(tmp_path / "some.json")


def test_run_takes_every_image_and_the_plan_names_the_file_read(tmp_path, rng):
    """Through the driver: `images="all"` gives one row per trajectory image, and the dry-run plan says
    which file of a calculation folder was read."""
    from mpi4py import MPI

    from sporep_hpc.config import build_config
    from sporep_hpc.parallel.driver import run
    from sporep_hpc.parallel.progress import plan_table
    from sporep_hpc.store import open_store

    d = tmp_path / "inputs"
    d.mkdir()
    si = ase.build.bulk("Si", "diamond", a=5.43)
    ase.io.write(d / "relax.traj", [si, si, si])
    write_vasp_folder(d / "mp-149", rng, with_vasprun=False)
    config = build_config(overrides={"kdensity": 0.5, "images": "all"})
    report = run([str(d)], tmp_path / "s.h5", config, MPI.COMM_SELF)
    assert report.exit_code == 0, report.failures
    with open_store(tmp_path / "s.h5") as store:
        assert sorted(store.ids) == ["mp-149", "relax@0", "relax@1", "relax@2"]
    plan = run([str(d)], tmp_path / "dry.h5", config, MPI.COMM_SELF, dry_run=True)
    text = plan_table(plan.plan, plan.rank_costs, 1)
    assert "CONTCAR" in next(line for line in text.splitlines() if "mp-149" in line)
