"""k-point grids and the irreducible wedge (sporep_hpc.kpoints)."""

import itertools
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from sporep_hpc.errors import InputError, ParameterError
from sporep_hpc.kpoints import full_grid, irreducible_kpoints, monkhorst_pack_grid

Structure = pytest.importorskip("pymatgen.core").Structure
spglib = pytest.importorskip("spglib")


def rocksalt() -> "Structure":
    """Primitive NaCl (fcc, Fm-3m, 48 operations), a = 5.64 Å."""
    a = 5.64
    lattice = np.array([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    return Structure(lattice, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def wurtzite() -> "Structure":
    """Hexagonal ZnO-like cell (P6_3mc, 12 operations, no inversion)."""
    a, c, u = 3.25, 5.21, 0.382
    lattice = np.array([[a, 0, 0], [-a / 2, a * math.sqrt(3) / 2, 0], [0, 0, c]])
    coords = [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, u], [2 / 3, 1 / 3, 0.5 + u]]
    return Structure(lattice, ["Zn", "Zn", "O", "O"], coords)


def triclinic(rng) -> "Structure":
    """A P1 cell: only time reversal reduces the grid."""
    lattice = np.array([[4.0, 0.3, 0.2], [0.5, 5.0, 0.1], [0.4, 0.6, 6.0]])
    return Structure(lattice, ["Si", "O", "O"], rng.random((3, 3)))


def test_grid_shape_analytic():
    # simple cubic a = 4 Å: |b| = 2π/4 = 1.5708 Å⁻¹; /0.5 = 3.14 -> ceil 4, round 3
    lattice = 4.0 * np.eye(3)
    assert monkhorst_pack_grid(lattice, 0.5) == (4, 4, 4)
    assert monkhorst_pack_grid(lattice, 0.5, rounding="round") == (3, 3, 3)
    # an exact multiple must not gain a point from round-off: |b|/kdensity = 2 exactly
    assert monkhorst_pack_grid(lattice, math.pi / 4) == (2, 2, 2)
    # huge spacing still gives one point (n_i = max(1, ...))
    assert monkhorst_pack_grid(lattice, 100.0) == (1, 1, 1)
    # orthorhombic: one axis per length
    assert monkhorst_pack_grid(np.diag([2.0, 4.0, 8.0]), 0.5) == (7, 4, 2)  # 2π/(2·0.5)=6.28 -> 7


def test_grid_guarantees_spacing(rng):
    # ceil rounding: |b_i| / n_i <= kdensity for random cells (definition of the spacing)
    for _ in range(20):
        lattice = rng.normal(size=(3, 3)) + 4 * np.eye(3)
        kd = rng.uniform(0.05, 0.6)
        grid = monkhorst_pack_grid(lattice, kd)
        b = np.linalg.norm(2 * np.pi * np.linalg.inv(lattice).T, axis=1)
        assert np.all(b / np.array(grid) <= kd * (1 + 1e-12))


@pytest.mark.parametrize("make", [rocksalt, wurtzite, triclinic])
@pytest.mark.parametrize(
    ("grid", "shift"), [((4, 4, 4), (0, 0, 0)), ((3, 3, 5), (0, 0, 0)), ((4, 4, 4), (1, 1, 1))]
)
def test_irreducible_unfolds_to_full_grid(make, grid, shift, rng):
    structure = make(rng) if make is triclinic else make()
    kpts, weights = irreducible_kpoints(structure, grid=grid, shift=shift)
    n_full = int(np.prod(grid))
    assert_allclose(weights.sum(), 1.0, rtol=0, atol=1e-14)
    multiplicity = weights * n_full
    assert_allclose(multiplicity, np.round(multiplicity), rtol=0, atol=1e-9)  # integer multiplicities
    # Independent unfolding: apply the crystal's rotations (from spglib.get_symmetry, in fractional
    # direct coordinates; k transforms with R^T) and time reversal to every irreducible point. A shifted
    # grid may not be closed under every operation; only those mapping the grid onto itself can relate its
    # points, so those are kept (all of them for Γ-centred grids).
    cell = (structure.lattice.matrix, structure.frac_coords, structure.atomic_numbers)
    rotations = spglib.get_symmetry(cell, symprec=1e-5)["rotations"]
    twice = 2 * np.array(grid)  # integer coordinates on the doubled grid hold shifted points exactly

    def on_grid(k):
        return tuple(np.round(twice * k).astype(int) % twice)

    full_points = full_grid(grid, shift)
    full = {on_grid(k) for k in full_points}
    assert len(full) == n_full
    candidates = np.concatenate([rotations, -rotations])
    ops = [r for r in candidates if all(on_grid(r.T @ k) in full for k in full_points)]
    if shift == (0, 0, 0) and len(set(grid)) == 1:
        assert len(ops) == 2 * len(rotations)
    seen = set()
    for k, m in zip(kpts, np.round(multiplicity).astype(int), strict=True):
        star = {on_grid(r.T @ k) for r in ops}
        assert star <= full
        assert len(star) == m  # the star of an irreducible point has its multiplicity of members
        assert not (star & seen)  # stars are disjoint
        seen |= star
    assert seen == full


def test_reduced_dos_equals_full_grid():
    # A symmetric test operator: a tight-binding band ε(k) = Σ_T cos(2π k·T) over all lattice vectors T
    # of the first three fcc shells is invariant under the full lattice point group, so the weighted
    # IBZ sum must equal the plain full-grid average for any function of ε (here a Gaussian-smeared DOS
    # evaluated in numpy).
    structure = rocksalt()
    grid = (6, 6, 6)
    lattice = structure.lattice.matrix
    vectors = np.array(list(itertools.product(range(-2, 3), repeat=3)))
    lengths = np.linalg.norm(vectors @ lattice, axis=1)
    shells = vectors[(lengths > 0) & (lengths < 2 * 5.64 / math.sqrt(2) * 1.01)]

    def bands(k):
        phase = 2 * np.pi * k @ shells.T
        return np.stack([np.cos(phase).sum(axis=1), np.cos(2 * phase).sum(axis=1)], axis=1)

    energies = np.linspace(-15, 30, 301)

    def dos(eps, w):
        x = (energies[:, None, None] - eps[None]) / 0.3
        return np.einsum("ekn,k->e", np.exp(-x * x) / math.sqrt(math.pi) / 0.3, w)

    kpts, weights = irreducible_kpoints(structure, grid=grid)
    assert len(kpts) < 0.2 * np.prod(grid)  # Oh reduces 216 points to a few tens
    full = full_grid(grid)
    # 1e-12 states/eV: both sides are sums of the same ~1e3 Gaussians in different order (round-off only)
    reference = dos(bands(full), np.full(len(full), 1 / len(full)))
    assert_allclose(dos(bands(kpts), weights), reference, rtol=0, atol=1e-12)


def test_kdensity_path_and_determinism():
    structure = wurtzite()
    k1, w1 = irreducible_kpoints(structure, kdensity=0.3)
    k2, w2 = irreducible_kpoints(structure, kdensity=0.3)
    assert_array_equal(k1, k2)
    assert_array_equal(w1, w2)
    grid = monkhorst_pack_grid(structure.lattice.matrix, 0.3)
    k3, w3 = irreducible_kpoints(structure, grid=grid)
    assert_array_equal(k1, k3)
    assert_array_equal(w1, w3)
    assert k1.dtype == np.float64 and k1.flags.c_contiguous and k1.shape[1] == 3
    # sorted on the integer grid address and inside (-1/2, 1/2]
    address = np.round(k1 * np.array(grid)).astype(int)
    assert [tuple(a) for a in address] == sorted(tuple(a) for a in address)
    assert np.all(k1 > -0.5) and np.all(k1 <= 0.5)
    assert np.any(np.all(k1 == 0, axis=1))  # Γ-centred


def test_rounding_round_changes_grid():
    structure = rocksalt()
    b = structure.lattice.reciprocal_lattice.abc[0]  # pymatgen includes 2π
    kd = b / 3.4  # ratio 3.4: ceil 4, round 3
    assert monkhorst_pack_grid(structure.lattice.matrix, kd) == (4, 4, 4)
    _, w_round = irreducible_kpoints(structure, kdensity=kd, rounding="round")
    assert_allclose(np.round(w_round * 27) / 27, w_round, atol=1e-12)  # weights are multiples of 1/27


def test_errors():
    structure = rocksalt()
    with pytest.raises(ParameterError, match="exactly one"):
        irreducible_kpoints(structure)
    with pytest.raises(ParameterError, match="exactly one"):
        irreducible_kpoints(structure, kdensity=0.2, grid=(2, 2, 2))
    with pytest.raises(ParameterError, match="kdensity"):
        irreducible_kpoints(structure, kdensity=-0.1)
    with pytest.raises(ParameterError, match=r"grid\[1\]"):
        irreducible_kpoints(structure, grid=(2, 0, 2))
    with pytest.raises(ParameterError, match="shift"):
        irreducible_kpoints(structure, grid=(2, 2, 2), shift=(0.5, 0, 0))
    with pytest.raises(ParameterError, match="rounding"):
        irreducible_kpoints(structure, kdensity=0.2, rounding="floor")
    with pytest.raises(ParameterError, match="symprec"):
        irreducible_kpoints(structure, kdensity=0.2, symprec=0)
    with pytest.raises(InputError, match="pymatgen Structure"):
        irreducible_kpoints("NaCl", kdensity=0.2)
    with pytest.raises(InputError, match="singular"):
        monkhorst_pack_grid(np.zeros((3, 3)), 0.2)


def test_spglib_failure_is_input_error(rng):
    # spglib's space-group search fails for a tolerance larger than the cell (symprec = 100 Å) and for
    # atoms closer than symprec; both must surface as InputError naming spglib.
    with pytest.raises(InputError, match="spglib"):
        irreducible_kpoints(rocksalt(), grid=(2, 2, 2), symprec=100.0)
    crowded = Structure(np.eye(3) * 4.0, ["H"] * 50, rng.random((50, 3)))
    with pytest.raises(InputError, match="spglib"):
        irreducible_kpoints(crowded, grid=(2, 2, 2), symprec=5.0)


def test_non_finite_positions_rejected_before_spglib():
    # spglib 2.8 segfaults on NaN positions; the coercion step must stop them first.
    class Fake:
        class lattice:
            matrix = np.eye(3) * 4.0

        frac_coords = np.array([[0.0, 0.0, np.nan]])
        atomic_numbers = (1,)

    with pytest.raises(InputError, match="non-finite"):
        irreducible_kpoints(Fake(), grid=(2, 2, 2))


@pytest.mark.parametrize(
    ("grid", "shift"), [((4, 4, 4), (0, 0, 0)), ((3, 4, 5), (1, 0, 1)), ((6, 2, 3), (1, 1, 1))]
)
def test_full_grid_matches_spglib_order(grid, shift):
    # spglib documents k = (2 · grid_address + is_shift) / (2 · mesh) in its own point order
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _, address = spglib.get_ir_reciprocal_mesh(grid, (np.eye(3) * 4, [[0, 0, 0]], [1]), is_shift=shift)
    assert_array_equal(full_grid(grid, shift), (2 * address + np.array(shift)) / (2 * np.array(grid)))


def test_grids_beyond_max_kpoints_are_refused_before_allocation():
    # a 1-atom cube of 120 Å³ (a = 4.932 Å, |b| = 2π/a = 1.2739 1/Å): kdensity KDENSITY_MIN gives 100 points
    # per axis, 10⁶ in all, the most allowed; 1 % finer gives 101³ > 10⁶. The check runs in floating
    # point before spglib or any array: 1e-300 (whose grid overflows int64) is refused the same way.
    from sporep_hpc.config import KDENSITY_MIN, MAX_KPOINTS

    a = 120.0 ** (1 / 3)
    cube = Structure(np.eye(3) * a, ["Cs"], [[0, 0, 0]])
    assert MAX_KPOINTS == 10**6
    assert monkhorst_pack_grid(cube.lattice.matrix, KDENSITY_MIN * (1 + 1e-9)) == (100, 100, 100)
    for kd in (KDENSITY_MIN * 0.99, 1e-6, 1e-300):
        with pytest.raises(InputError, match=r"structure 'Cs': the k-point grid .* more than 1000000"):
            irreducible_kpoints(cube, kdensity=kd)
        with pytest.raises(InputError, match="more than 1000000"):
            monkhorst_pack_grid(cube.lattice.matrix, kd)
    with pytest.raises(ParameterError, match=r"grid must have at most 1000000 points; got \(101, 100, 100\)"):
        irreducible_kpoints(cube, grid=(101, 100, 100))
    with pytest.raises(ParameterError, match="at most 1000000 points"):
        full_grid((10**7, 10**7, 10**7))
