"""Structure reading (all formats, ids) and per-structure validation."""

import json
import os
import pickle
import re

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from sporep_hpc.errors import InputError
from sporep_hpc.inputs.files import collect_inputs, read_file, read_structures
from sporep_hpc.inputs.records import InputRecord, check_unique_ids, clean_id
from sporep_hpc.structures import CompactStructure, as_structure, check_structure, closest_distance


@pytest.fixture
def nacl():
    return Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def write_extxyz(path, structures):
    lines = []
    for s in structures:
        lat = " ".join(f"{x:.10f}" for x in s.lattice.matrix.ravel())
        lines += [str(len(s)), f'Lattice="{lat}" Properties=species:S:1:pos:R:3 pbc="T T T"']
        for site, (x, y, z) in zip(s, s.cart_coords, strict=True):
            lines.append(f"{site.specie.symbol} {x:.10f} {y:.10f} {z:.10f}")
    path.write_text("\n".join(lines) + "\n")


def test_every_format_round_trips_positions(tmp_path, nacl):
    # reference: the pymatgen structure we wrote; positions compared in Cartesian Å to 1e-6 (file precision)
    nacl.to(filename=str(tmp_path / "a.cif"))
    nacl.to(filename=str(tmp_path / "POSCAR"), fmt="poscar")
    (tmp_path / "c.json").write_text(json.dumps(nacl.as_dict()))
    write_extxyz(tmp_path / "d.xyz", [nacl, nacl.copy().scale_lattice(200.0)])
    for name, n in (("a.cif", 1), ("POSCAR", 1), ("c.json", 1), ("d.xyz", 2)):
        got = read_file(tmp_path / name)
        assert len(got) == n, name
        assert got[0].composition.reduced_formula == "NaCl"
        np.testing.assert_allclose(got[0].lattice.volume, nacl.volume, rtol=1e-6)
        d = got[0].lattice.get_all_distances(got[0].frac_coords, nacl.frac_coords)
        assert np.min(d, axis=1).max() < 1e-5, name


def test_ids_from_files_and_directories(tmp_path, nacl):
    (tmp_path / "sub" / "x").mkdir(parents=True)
    nacl.to(filename=str(tmp_path / "sub" / "mp-1.cif"))
    nacl.to(filename=str(tmp_path / "sub" / "x" / "POSCAR"), fmt="poscar")
    write_extxyz(tmp_path / "sub" / "two.extxyz", [nacl, nacl])
    (tmp_path / "sub" / "notes.txt").write_text("ignored")
    records = collect_inputs([tmp_path / "sub"])
    assert [r.id for r in records] == ["mp-1", "two-0", "two-1", "x"]
    assert [r.id for r in collect_inputs([tmp_path / "sub" / "mp-1.cif"])] == ["mp-1"]
    assert len(read_structures(tmp_path / "sub")) == 4


def test_unreadable_file_is_a_failed_record_not_an_exception(tmp_path):
    (tmp_path / "bad.cif").write_text("data_x\n_cell_length_a nonsense\n")
    (rec,) = collect_inputs([tmp_path / "bad.cif"])
    assert rec.kind == "failed" and "bad.cif" in rec.error and "\n" not in rec.error
    with pytest.raises(InputError, match=r"bad\.cif"):
        read_structures(tmp_path / "bad.cif")
    with pytest.raises(InputError, match="no such file"):
        collect_inputs([tmp_path / "missing.cif"])


def test_band_files_are_recognised(tmp_path):
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "vasprun.xml").write_text("<x/>")
    np.savez(tmp_path / "si.npz", eigenvalues=np.zeros((1, 1, 1)))
    records = collect_inputs([tmp_path])
    assert [(r.id, r.kind) for r in records] == [("run1", "bands"), ("si", "bands")]


def test_duplicate_and_overlong_ids_are_errors(tmp_path, nacl):
    nacl.to(filename=str(tmp_path / "a.cif"))
    records = collect_inputs([tmp_path / "a.cif", tmp_path / "a.cif"])
    with pytest.raises(InputError, match="duplicate id 'a'"):
        check_unique_ids(records)
    check_unique_ids(records[:1])
    long = [type(records[0])(id="x" * 65, source="s", kind="structure")]
    with pytest.raises(InputError, match="1 to 64 bytes"):
        check_unique_ids(long)


def test_validation_reasons(nacl):
    check_structure(nacl, "ok", max_atoms=2)
    with pytest.raises(InputError, match="'big': 2 atoms, more than max_atoms=1"):
        check_structure(nacl, "big", max_atoms=1)
    close = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.08, 0, 0]])  # 0.4 Å apart
    with pytest.raises(InputError, match=r"'close': atoms 0\.400 Å apart"):
        check_structure(close, "close")
    image = Structure(Lattice.cubic(0.45), ["H"], [[0, 0, 0]])  # periodic image at 0.45 Å
    with pytest.raises(InputError, match="apart"):
        check_structure(image, "image")
    disordered = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])
    with pytest.raises(InputError, match="partial occupancy"):
        check_structure(disordered, "dis")
    flat = Structure(Lattice([[4, 0, 0], [0, 4, 0], [4, 4, 1e-4]]), ["H"], [[0, 0, 0]])
    with pytest.raises(InputError, match="degenerate"):
        check_structure(flat, "flat", min_distance=0.0)


def test_closest_distance_matches_brute_force(rng):
    # reference: explicit minimum over the 27 neighbouring cells with numpy
    lat = np.diag([3.0, 3.5, 4.0]) + rng.uniform(-0.3, 0.3, (3, 3))
    frac = rng.uniform(0, 1, (5, 3))
    s = Structure(Lattice(lat), ["H"] * 5, frac)
    shifts = np.array(np.meshgrid([-1, 0, 1], [-1, 0, 1], [-1, 0, 1])).reshape(3, -1).T
    cart = frac @ lat
    best = np.inf
    for i in range(5):
        for j in range(5):
            for t in shifts:
                if i == j and not t.any():
                    continue
                best = min(best, np.linalg.norm(cart[j] + t @ lat - cart[i]))
    assert closest_distance(s, 10.0) == pytest.approx(best, abs=1e-9)


def test_compact_structure_round_trip_is_exact(rng):
    # reference: the original pymatgen Structure, compared array for array (no tolerance)
    from pymatgen.core import Species

    lat = np.diag([3.0, 4.0, 5.0]) + rng.uniform(-0.2, 0.2, (3, 3))
    s = Structure(Lattice(lat), [Species("Ba", 2), "O", "Ti"], rng.uniform(0, 1, (3, 3)))
    c = CompactStructure.from_structure(s)
    back = as_structure(c)
    np.testing.assert_array_equal(back.lattice.matrix, s.lattice.matrix)
    np.testing.assert_array_equal(back.frac_coords, s.frac_coords)
    np.testing.assert_array_equal(back.cart_coords, s.cart_coords)
    assert [str(x.specie) for x in back] == ["Ba2+", "O", "Ti"] and len(c) == 3
    assert len(pickle.dumps(c)) < len(pickle.dumps(s)) / 2
    disordered = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])
    assert CompactStructure.from_structure(disordered) is disordered  # kept for validation to reject


def test_extxyz_info_and_json_properties_become_record_properties(tmp_path, nacl):
    lat = " ".join(f"{x:.10f}" for x in nacl.lattice.matrix.ravel())
    body = "\n".join(f"{s.specie.symbol} {x:.10f} {y:.10f} {z:.10f}" for s, (x, y, z) in
                     zip(nacl, nacl.cart_coords, strict=True))
    comment = (f'Lattice="{lat}" Properties=species:S:1:pos:R:3 energy=-3.25 n=7 metal=F '
               f'label="rock salt" vec="1 2 3" pbc="T T T"')  # ASE reads stress= as a 3x3 matrix only
    (tmp_path / "x.xyz").write_text(f"2\n{comment}\n{body}\n2\nLattice=\"{lat}\" tag=b\n{body}\n")
    with_props = nacl.copy()
    with_props.properties = {"electronic": "semiconducting", "gap": 5.0}
    (tmp_path / "y.json").write_text(json.dumps(with_props.as_dict()))
    (tmp_path / "z.json").write_text(json.dumps(nacl.as_dict()))  # no properties
    records = {r.id: r for r in collect_inputs([tmp_path])}
    # the values written above, typed as extended XYZ defines them (T/F bool, ints, floats, quoted text)
    assert records["x-0"].properties == {
        "energy": -3.25, "n": 7, "metal": False, "label": "rock salt", "vec": [1.0, 2.0, 3.0]
    }
    assert records["x-1"].properties == {"tag": "b"}
    assert records["y"].properties == {"electronic": "semiconducting", "gap": 5.0}
    assert records["z"].properties is None


def test_properties_json_is_canonical():
    from sporep_hpc.structures import properties_json

    assert properties_json(None) == "" and properties_json({}) == ""
    text = properties_json({"b": np.int64(2), "a": np.array([1.5, 2.0]), "c": (1, "x")})
    assert text == '{"a":[1.5,2.0],"b":2,"c":[1,"x"]}'


def _vasprun_moved_final(path, rng):
    """The test_bandfiles vasprun.xml, with the final positions moved away from the initial ones."""
    from test_bandfiles import insulator_arrays, write_vasprun

    eig, occ = insulator_arrays(rng)
    k = np.round(rng.uniform(-0.5, 0.5, (4, 3)), 8)
    write_vasprun(path, eig, occ / 2.0, k, np.full(4, 0.25), nelect=4.0, efermi=-3.0)
    text = path.read_text()
    head, _, tail = text.rpartition("<v> 0.0 0.0 0.0 </v>")  # the last one: finalpos
    path.write_text(head + "<v> 0.1 0.2 0.3 </v>" + tail)
    return path


def test_vasprun_record_carries_its_final_structure(tmp_path, rng):
    (tmp_path / "run1").mkdir()
    _vasprun_moved_final(tmp_path / "run1" / "vasprun.xml", rng)
    (tmp_path / "run2").mkdir()
    (tmp_path / "run2" / "vasprun.xml").write_text("<modeling><generator>")  # unreadable
    records = {r.id: r for r in collect_inputs([tmp_path])}
    assert {r.kind for r in records.values()} == {"bands"}
    s = records["run1"].structure
    # what the generator wrote: one Si atom, cubic 5.43 Å cell, final fractional position (0.1, 0.2, 0.3)
    assert [site.specie.symbol for site in s] == ["Si"]
    np.testing.assert_allclose(s.lattice.matrix, 5.43 * np.eye(3), rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.frac_coords, [[0.1, 0.2, 0.3]], rtol=0, atol=1e-12)
    assert records["run2"].structure is None  # the band reader reports this file's problem later


# ---------------------------------------------------------------------------- issue 12: hostile inputs
@pytest.mark.parametrize(
    ("lattice", "species", "coords", "fragment"),
    [
        (np.diag([np.inf, 5.0, 5.0]), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]], "non-finite entries"),
        (np.diag([np.nan, 5.0, 5.0]), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]], "non-finite entries"),
        (np.diag([1e9, 5.0, 5.0]), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]], "lattice vector lengths"),
        (np.diag([0.0, 5.0, 5.0]), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]], "lattice vector lengths"),
        (np.diag([5.0, 5.0, 5.0]), ["Na", "Cl"], [[0, 0, 0], [np.inf, 0.5, 0.5]], "non-finite atomic"),
        (np.diag([5.0, 5.0, 5.0]), ["Na", "Cl"], [[0, 0, 0], [np.nan, 0.5, 0.5]], "non-finite atomic"),
        (np.diag([5.0, 5.0, 5.0]), ["Na", "Cl"], [[0, 0, 0], [1e12, 0.5, 0.5]], "coordinate 1e+12 outside"),
        (np.diag([5.0, 5.0, 5.0]), ["Na", "Cl"], [[0, 0, 0], [-10.5, 0.5, 0.5]], "coordinate 10.5 outside"),
        (np.diag([5.0, 5.0, 5.0]), ["Na", "X"], [[0, 0, 0], [0.5, 0.5, 0.5]], "unknown element(s) X0+"),
    ],
)
def test_hostile_structures_fail_validation_naming_them(lattice, species, coords, fragment):
    # what a parser hands over from a broken file: the checks stop it before spglib or the kernels,
    # with an InputError (never a numpy/pymatgen exception, never a RuntimeWarning: warnings are errors)
    with np.errstate(all="ignore"):  # building such a structure is pymatgen's arithmetic, not ours
        s = Structure(Lattice(lattice), species, coords)
    with pytest.raises(InputError, match=rf"structure 'bad-1': .*{re.escape(fragment)}"):
        check_structure(s, "bad-1")


def test_atoms_a_few_cells_away_are_accepted(nacl):
    # unwrapped coordinates within ±MAX_FRACTIONAL (10) are legitimate (e.g. from an MD trajectory)
    s = Structure(nacl.lattice, ["Na", "Cl"], [[-9.0, 0, 0], [0.5, 9.5, 0.5]])
    check_structure(s, "md")


def test_ids_never_hold_control_characters(tmp_path, nacl):
    # a file named like a k-point chunk with the journal's mark, or with a newline, or not UTF-8
    for name in ("x\x1fk0of2.json", "two\nlines.json"):
        nacl.to(filename=str(tmp_path / name))
    raw = os.path.join(os.fsencode(tmp_path), b"caf\xe9.json")
    with open(raw, "wb") as fh:
        fh.write(json.dumps(nacl.as_dict()).encode())
    assert sorted(r.id for r in collect_inputs([tmp_path])) == ["caf_", "two_lines", "x_k0of2"]
    assert clean_id("a\x00b\tc\x7fd\udce9") == "a_b_c_d_"
    for bad in ("x\x1fk0of2", "a\nb", "tab\t"):
        with pytest.raises(InputError, match="must not contain control characters"):
            check_unique_ids([InputRecord(bad, "examples:x", "structure")])


def test_failed_rows_of_any_structure_can_be_written():
    # measured before issue 12: a disordered structure raised AttributeError (atomic_numbers) at assembly
    from pymatgen.core import Composition

    from sporep_hpc.store.schema import STATUS_FAILED, failed_result

    disordered = Structure(Lattice.cubic(5.64), [Composition({"Na": 0.5, "K": 0.5}), "Cl"],
                           [[0, 0, 0], [0.5, 0.5, 0.5]])
    row = failed_result(3, "partial", "structure 'partial': partial occupancy\nsecond line", disordered)
    assert (row.status, row.n_atoms) == (STATUS_FAILED, 0)
    assert row.error == "structure 'partial': partial occupancy"  # one line
    assert row.formula == disordered.composition.reduced_formula
    np.testing.assert_array_equal(row.cell, 5.64 * np.eye(3))
    with np.errstate(all="ignore"):
        broken = Structure(Lattice(np.diag([np.nan, 5.0, 5.0])), ["Na"], [[0, 0, 0]])
    assert failed_result(0, "nan", "x", broken).n_atoms == 1  # NaN cells are stored as they are
    dummy = Structure(Lattice.cubic(5.0), ["X"], [[0, 0, 0]])
    assert failed_result(0, "dummy", "x", dummy).n_atoms == 0  # no atomic number to store
    # a message holding an undecodable file name (lone surrogate) is escaped, so HDF5 can take it
    row = failed_result(0, "caf_", "/d/caf\udce9.cif: unreadable", None)
    assert row.error == "/d/caf\\udce9.cif: unreadable"
