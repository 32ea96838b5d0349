"""`structures.symmetry_of` (one spglib search per structure) against spglib's own separate answers:
its ``standardize_cell(to_primitive=True)``, its symmetry search on the primitive cell, and its
``get_ir_reciprocal_mesh`` (issue 15: the planner ran two searches per structure)."""

import warnings

import numpy as np
import pytest
import spglib
from pymatgen.core import Lattice, Structure

from sporep_hpc.examples import load_set
from sporep_hpc.kpoints import irreducible_kpoints, kpoint_grid
from sporep_hpc.structures import as_cell, symmetry_of


def _variants(structure: Structure, rng: np.random.Generator) -> list[Structure]:
    """The structure, a supercell (unless large), and a copy rotated in space with its origin shifted."""
    out = [structure]
    if len(structure) <= 24:
        out.append(structure.copy().make_supercell([[1, 1, 0], [0, 1, 0], [0, 0, 2]]))
    axis = rng.normal(size=3)
    angle = rng.uniform(0, 2 * np.pi)
    k = axis / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    rotation = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    moved = Structure(Lattice(structure.lattice.matrix @ rotation.T), structure.species,
                      (structure.frac_coords + rng.random(3)) % 1.0)
    out.append(moved)
    return out


def _corpus() -> list[tuple[str, Structure]]:
    rng = np.random.default_rng(15)
    sets = load_set("aflow?max_atoms=40") + load_set("batio3") + load_set("cnt?max_atoms=60")
    return [(f"{id}/{i}", v) for id, s, _ in sets for i, v in enumerate(_variants(s, rng))]


CORPUS = _corpus()


def _spglib(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return function(*args, **kwargs)


def _maps_the_crystal(structure: Structure, rotation: np.ndarray) -> bool:
    """Brute force: some translation maps every atom onto an atom of its species under `rotation`."""
    frac, numbers = structure.frac_coords, np.array(structure.atomic_numbers)
    turned = frac @ rotation.T
    for j in np.flatnonzero(numbers == numbers[0]):
        moved = turned + (frac[j] - turned[0])
        delta = moved[:, None, :] - frac[None, :, :]
        delta -= np.rint(delta)
        distance = np.linalg.norm(delta @ structure.lattice.matrix, axis=2)
        distance[numbers[:, None] != numbers[None, :]] = np.inf
        if np.all(distance.min(axis=1) < 1e-4):
            return True
    return False


def test_the_corpus_covers_every_centring():
    letters = {_spglib(spglib.get_symmetry_dataset, (c.lattice, c.frac, c.numbers), symprec=1e-5)
               .international[0] for c in (as_cell(s) for _, s in CORPUS)}
    assert letters == {"P", "A", "C", "I", "F", "R"}


@pytest.mark.parametrize("name, structure", CORPUS, ids=[name for name, _ in CORPUS])
def test_one_search_equals_spglibs_separate_answers(name, structure):
    found = symmetry_of(structure)
    primitive = found.structure.to_structure()
    cell = as_cell(structure)
    lattice, frac, numbers = _spglib(spglib.standardize_cell, (cell.lattice, cell.frac, cell.numbers),
                                     to_primitive=True, no_idealize=False, symprec=1e-5)
    np.testing.assert_allclose(primitive.lattice.matrix, lattice, rtol=0, atol=1e-10)
    assert list(primitive.atomic_numbers) == list(numbers)
    delta = primitive.frac_coords - frac
    np.testing.assert_allclose(delta - np.rint(delta), 0.0, atol=1e-10)
    assert found.n_cells * len(numbers) == len(structure)

    # the point group: spglib's own search on the primitive cell, and each rotation maps the crystal
    arrays = (primitive.lattice.matrix, primitive.frac_coords, primitive.atomic_numbers)
    reference = np.unique(_spglib(spglib.get_symmetry, arrays, symprec=1e-5)["rotations"], axis=0)
    assert len(np.unique(found.rotations, axis=0)) == len(found.rotations)  # each once
    np.testing.assert_array_equal(np.unique(found.rotations, axis=0), reference)
    assert all(_maps_the_crystal(primitive, r) for r in found.rotations)

    # the irreducible k-points: identical to spglib's search-and-reduce
    grid = kpoint_grid(primitive, 0.25)
    with_rotations = irreducible_kpoints(found.structure, grid=grid, rotations=found.rotations)
    searched = irreducible_kpoints(primitive, grid=grid)
    for a, b in zip(with_rotations, searched, strict=True):
        np.testing.assert_array_equal(a, b)


def test_keep_cell_gives_the_cells_own_point_group():
    _, structure = CORPUS[1]  # a supercell
    found = symmetry_of(structure, keep_cell=True)
    assert found.n_cells == 1
    np.testing.assert_array_equal(found.structure.lattice, structure.lattice.matrix)
    np.testing.assert_array_equal(found.structure.frac_coords, structure.frac_coords)
    cell = as_cell(structure)
    reference = np.unique(_spglib(spglib.get_symmetry, (cell.lattice, cell.frac, cell.numbers),
                                  symprec=1e-5)["rotations"], axis=0)
    assert len(np.unique(found.rotations, axis=0)) == len(found.rotations)  # each once
    np.testing.assert_array_equal(np.unique(found.rotations, axis=0), reference)


def test_rotations_of_the_wrong_shape_are_refused():
    from sporep_hpc.errors import ParameterError

    structure = CORPUS[0][1]
    for bad in (np.eye(3, dtype=int), np.zeros((0, 3, 3), dtype=int)):
        with pytest.raises(ParameterError, match="rotations"):
            irreducible_kpoints(structure, grid=(2, 2, 2), rotations=bad)


def test_spglib_finding_nothing_is_the_structures_failure(monkeypatch):
    from sporep_hpc.errors import InputError

    structure = CORPUS[0][1]
    monkeypatch.setattr(spglib, "get_symmetry_dataset", lambda *a, **k: None)  # spglib's legacy style
    with pytest.raises(InputError, match="spglib finds no symmetry"):
        symmetry_of(structure)

    def refuse(*args, **kwargs):
        raise spglib.SpglibError("symmetry operation search failed")  # spglib >= 2.5's style

    monkeypatch.setattr(spglib, "get_symmetry_dataset", refuse)
    with pytest.raises(InputError, match="spglib finds no symmetry: symmetry operation search failed"):
        symmetry_of(structure, keep_cell=True)
