"""Brillouin-zone sampling: Γ-centred Monkhorst-Pack grids and their irreducible wedge (spglib).

DESIGN.md §3: the grid shape comes from a spacing ``kdensity`` in Å⁻¹ with the reciprocal vectors b_i
including the 2π factor, n_i = max(1, ceil(|b_i| / kdensity)) (``rounding="ceil"``, guarantees the
spacing) or n_i = max(1, round(|b_i| / kdensity)) (``rounding="round"``, the original study's operator
grids; halves round up). The irreducible points and integer multiplicities come from spglib's
``get_ir_reciprocal_mesh`` with time reversal on; weights are normalised to 1.

A grid has at most MAX_KPOINTS (10⁶) points: a finer one is refused before anything
is allocated (InputError naming the structure for a grid from a spacing, ParameterError for an explicit
grid), never left to overflow or to exhaust the memory.

Vacuum directions (DESIGN.md §8.4). Lattice direction i is "vacuum" when the structure leaves an empty
slab at least `vacuum_gap` thick across face i: with the fractional coordinates f_i of the atoms wrapped
onto the circle [0, 1) and s_i the largest empty arc between two of them (the wrap-around one included),
the empty slab is s_i d_i thick, d_i = 2π / |b_i| the spacing of the lattice planes (a_j, a_k) (the
height of the cell over that face). With every atom represented on one side of that empty slab (moved
by a whole a_i where needed: a change of gauge that leaves every eigenvalue as it is), each translation
T = Σ n_j a_j with n_i ≠ 0 moves each atom at least s_i d_i away (along b_i) from every atom, so no pair
of atoms across face i comes closer than `vacuum_gap`. The measure uses b_i, not a Cartesian axis, so
tilted cells are exact.
With ``vacuum_kpoints = "gamma"`` (`VACUUM_KPOINTS`) such directions get n_i = 1 (`kpoint_grid`); the
caller decides `vacuum_gap` (the run takes it from the basis extent: `sporep_hpc.pipeline.vacuum_gap`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._validation import check_choice, check_interval
from .errors import InputError, ParameterError
from .params import Param
from .structures import as_cell, as_lattice

#: Most points of one structure's Monkhorst-Pack grid (a finer one is refused: the grid alone would
#: take tens of MB, its matrices gigabytes).
MAX_KPOINTS = 10**6

__all__ = [
    "KDENSITY",
    "KDENSITY_MIN",
    "KGRID_ROUNDING",
    "MAX_ATOMIC_VOLUME",
    "MAX_KPOINTS",
    "ROUNDING_MODES",
    "VACUUM_KPOINTS",
    "VACUUM_MODES",
    "full_grid",
    "irreducible_kpoints",
    "kpoint_grid",
    "monkhorst_pack_grid",
    "vacuum_directions",
    "vacuum_gaps",
]

ROUNDING_MODES = ("ceil", "round")
#: Sampling of vacuum directions: one k-point (Γ) or the k-spacing like any other direction.
VACUUM_MODES = ("gamma", "full")
#: Volume per atom of the most open elemental crystal, rounded up (bcc Cs: 117 Å³), Å³.
MAX_ATOMIC_VOLUME = 120.0
#: Smallest kdensity of a run, 1/Å: below it even a 1-atom cell of MAX_ATOMIC_VOLUME needs more than
#: MAX_KPOINTS grid points ((2π)³ / (V kdensity³) points), so every structure would fail (about 0.0127).
KDENSITY_MIN = 2.0 * math.pi / (MAX_ATOMIC_VOLUME * MAX_KPOINTS) ** (1.0 / 3.0)

#: Run parameters of the grid (listed in `sporep_hpc.config.RUN_PARAMETERS`). The functions below accept
#: any positive spacing (a big cell may use a smaller one); a run refuses spacings too fine for any cell.
KDENSITY = Param("kdensity", 0.15, "Monkhorst-Pack k-point spacing", low=KDENSITY_MIN, closed="left",
                 unit="1/Å")
KGRID_ROUNDING = Param(
    "kgrid_rounding", "ceil", "n_i = ceil(|b_i| / kdensity) (guarantees the spacing) or round (the original "
    "study's grids)", kind=str, choices=ROUNDING_MODES,
)
VACUUM_KPOINTS = Param(
    "vacuum_kpoints", "gamma", "gamma: one k-point along lattice directions with a vacuum gap wider than "
    "the basis extent (slabs, wires, tubes, molecules in boxes); full: the k-spacing there too",
    kind=str, choices=VACUUM_MODES,
)


def _label(structure: Any) -> str:
    """The reduced formula of a structure, for messages ("?" when pymatgen cannot give one)."""
    try:
        return str(structure.composition.reduced_formula)
    except (AttributeError, ValueError, TypeError):
        return "?"


def _naming(structure: Any) -> Callable[[], str]:
    """The words naming a structure in an error, made only when an error is raised (a formula costs
    more than a grid)."""
    return lambda: f"structure {_label(structure)!r}"


def _check_grid(grid: Any) -> tuple[int, int, int]:
    try:
        values = tuple(grid)
    except TypeError as exc:
        raise ParameterError(f"grid must be three positive integers; got {grid!r}") from exc
    if len(values) != 3:
        raise ParameterError(f"grid must be three positive integers; got {grid!r}")
    for i, n in enumerate(values):
        check_interval(f"grid[{i}]", int(n) if isinstance(n, np.integer) else n, 1, None, integer=True)
    mesh = tuple(int(n) for n in values)
    if math.prod(mesh) > MAX_KPOINTS:
        raise ParameterError(f"grid must have at most {MAX_KPOINTS} points; got {mesh} ({math.prod(mesh)})")
    return mesh  # type: ignore[return-value]


def _check_shift(shift: Any) -> np.ndarray:
    try:
        values = tuple(shift)
    except TypeError as exc:
        raise ParameterError(f"shift must be three values in {{0, 1}}; got {shift!r}") from exc
    if len(values) != 3 or any(isinstance(s, bool) or s not in (0, 1) for s in values):
        raise ParameterError(f"shift must be three values in {{0, 1}} (half a grid step); got {shift!r}")
    return np.array([int(s) for s in values], dtype=np.intc)


def monkhorst_pack_grid(lattice_matrix: Any, kdensity: float, rounding: str = "ceil") -> tuple[int, int, int]:
    """Grid shape of a Γ-centred Monkhorst-Pack mesh with spacing at most `kdensity`.

    Parameters
    ----------
    lattice_matrix : array_like of shape (3, 3), float, Å
        Direct lattice vectors as rows.
    kdensity : float, Å⁻¹
        Target spacing between k-points; |b_i| includes the 2π factor.
    rounding : {"ceil", "round"}
        ``"ceil"``: n_i = max(1, ceil(|b_i| / kdensity)); ``"round"``: n_i = max(1, round(|b_i| / kdensity))
        with halves rounded up.

    Returns
    -------
    tuple of 3 int
        Number of points along each reciprocal vector.

    Raises
    ------
    InputError
        The grid would have more than MAX_KPOINTS points.
    """
    check_interval("kdensity", kdensity, 0.0, None, closed="neither", unit="1/Å")
    check_choice("rounding", rounding, ROUNDING_MODES)
    lat = as_lattice(lattice_matrix)
    return _grid_impl(lat, float(kdensity), rounding, lambda: "the lattice")


def _grid_impl(
    lat: np.ndarray, kdensity: float, rounding: str, label: Callable[[], str],
    gamma_axes: np.ndarray | None = None,
) -> tuple[int, int, int]:
    """Grid shape for a clean lattice (rows, Å) and a positive spacing, one point along the directions
    where `gamma_axes` (3 bools) is true; InputError naming `label()` (made only then) when it has more
    than MAX_KPOINTS points (checked in floating point, before any integer can overflow)."""
    recip = 2.0 * np.pi * np.linalg.inv(lat).T  # rows b_i, Å⁻¹
    with np.errstate(over="ignore"):
        ratios = np.linalg.norm(recip, axis=1) / kdensity
    if rounding == "ceil":
        # Guard against ratios like 3.0000000000000004 from round-off producing an extra point.
        counts = np.maximum(1.0, np.ceil(ratios - 1e-10))
    else:
        counts = np.maximum(1.0, np.floor(ratios + 0.5))
    if gamma_axes is not None:
        counts = np.where(gamma_axes, 1.0, counts)
    with np.errstate(over="ignore"):
        total = float(np.prod(counts))
    if not total <= MAX_KPOINTS:  # also catches inf and NaN
        shown = "x".join(f"{c:.0f}" if c < 1e6 else f"{c:.3g}" for c in counts)
        raise InputError(
            f"{label()}: the k-point grid {shown} for kdensity {kdensity:g} 1/Å has {total:.3g} points, "
            f"more than {MAX_KPOINTS} (MAX_KPOINTS); use a larger kdensity"
        )
    return tuple(int(n) for n in counts)  # type: ignore[return-value]


def vacuum_gaps(structure: Any) -> np.ndarray:
    """Thickness of the empty slab across each face of the cell (see the module docstring).

    Parameters
    ----------
    structure : pymatgen.core.Structure
        Ordered structure (lattice vectors as rows, Å).

    Returns
    -------
    ndarray of shape (3,), float64, Å
        Per lattice direction i: s_i d_i, the widest empty interval of the atoms' (wrapped) fractional
        coordinates f_i times the spacing d_i = 2π / |b_i| of the lattice planes spanned by the other
        two lattice vectors; with the atoms on one side of that empty slab, the distance (along b_i)
        from any atom to any atom translated across face i is at least this. One atom: d_i.

    Raises
    ------
    InputError
        The structure cannot be used (`sporep_hpc.structures.as_cell`).
    """
    cell = as_cell(structure)
    return _gaps_impl(cell.lattice, cell.frac)


def _gaps_impl(lat: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """`vacuum_gaps` for a clean lattice (rows, Å) and fractional positions (n_atoms, 3)."""
    spacing = 1.0 / np.linalg.norm(np.linalg.inv(lat).T, axis=1)  # d_i = 2π/|b_i| = V/|a_j × a_k|, Å
    wrapped = np.sort(frac - np.floor(frac), axis=0)  # in [0, 1) (1.0 only after round-off of -tiny)
    inner = np.diff(wrapped, axis=0) if len(wrapped) > 1 else np.zeros((0, 3))
    around = 1.0 - (wrapped[-1] - wrapped[0])  # the arc from the highest atom to the lowest one's image
    widest = np.max(np.vstack([inner, around[None, :]]), axis=0)
    return np.clip(widest, 0.0, 1.0) * spacing


def vacuum_directions(structure: Any, vacuum_gap: float) -> tuple[bool, bool, bool]:
    """Which lattice directions have an empty slab at least `vacuum_gap` thick (`vacuum_gaps`).

    Parameters
    ----------
    structure : pymatgen.core.Structure
    vacuum_gap : float, Å
        Smallest empty thickness of a vacuum direction, in (0, inf).

    Returns
    -------
    tuple of 3 bool
        True for the vacuum directions (a molecule in a box: all three; a bulk crystal: none).
    """
    check_interval("vacuum_gap", vacuum_gap, 0.0, None, closed="neither", unit="Å")
    return tuple(bool(v) for v in vacuum_gaps(structure) >= vacuum_gap)  # type: ignore[return-value]


def kpoint_grid(
    structure: Any, kdensity: float, rounding: str = "ceil", vacuum_gap: float | None = None
) -> tuple[int, int, int]:
    """Grid shape of a structure: `monkhorst_pack_grid` of its lattice, with n_i = 1 along the
    directions with an empty slab at least `vacuum_gap` thick (`vacuum_directions`).

    Parameters
    ----------
    structure : pymatgen.core.Structure
    kdensity : float, Å⁻¹
    rounding : {"ceil", "round"}
    vacuum_gap : float, Å, optional
        None (the default): no direction is treated as vacuum (the plain Monkhorst-Pack grid).

    Returns
    -------
    tuple of 3 int

    Raises
    ------
    ParameterError
        Invalid kdensity, rounding or vacuum_gap.
    InputError
        The structure cannot be used, or its grid has more than MAX_KPOINTS points (the message names
        the structure).
    """
    check_interval("kdensity", kdensity, 0.0, None, closed="neither", unit="1/Å")
    check_choice("rounding", rounding, ROUNDING_MODES)
    if vacuum_gap is not None:
        check_interval("vacuum_gap", vacuum_gap, 0.0, None, closed="neither", unit="Å")
    cell = as_cell(structure)
    gamma = None if vacuum_gap is None else _gaps_impl(cell.lattice, cell.frac) >= vacuum_gap
    return _grid_impl(cell.lattice, float(kdensity), rounding, _naming(structure), gamma)


def full_grid(grid: Sequence[int], shift: Sequence[int] = (0, 0, 0)) -> np.ndarray:
    """All points of a Monkhorst-Pack mesh in fractional coordinates, in spglib's grid order.

    Parameters
    ----------
    grid : three positive int
    shift : three values in {0, 1}
        1 shifts that axis by half a grid step.

    Returns
    -------
    ndarray of shape (n1 * n2 * n3, 3), float64, fractional (reciprocal-lattice units), in (-1/2, 1/2]
        Point (i, j, k) has address index i + n1 * j + n1 * n2 * k.
    """
    mesh = np.array(_check_grid(grid), dtype=np.intc)
    sh = _check_shift(shift)
    axes = [np.arange(n) for n in mesh]
    k, j, i = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    address = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1)
    address = address - mesh * (address > mesh // 2)  # spglib's centred addresses
    return (2 * address + sh) / (2.0 * mesh)


def irreducible_kpoints(
    structure: Any,
    kdensity: float | None = None,
    grid: Sequence[int] | None = None,
    shift: Sequence[int] = (0, 0, 0),
    symprec: float = 1e-5,
    rounding: str = "ceil",
    rotations: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Irreducible k-points and normalised weights of a Monkhorst-Pack mesh.

    Exactly one of `kdensity` and `grid` must be given.

    Parameters
    ----------
    structure : pymatgen.core.Structure
        Ordered crystal structure (lattice vectors as rows, Å).
    kdensity : float, Å⁻¹, optional
        Spacing used to choose the grid (see `monkhorst_pack_grid`).
    grid : three positive int, optional
        Explicit grid shape.
    shift : three values in {0, 1}
        Half-step shift per axis (0: Γ-centred, the default).
    symprec : float, Å
        spglib symmetry tolerance.
    rounding : {"ceil", "round"}
        Rounding of |b_i| / kdensity (ignored with an explicit grid).
    rotations : ndarray of shape (n_rot, 3, 3), int, optional
        The crystal's point group in the structure's fractional basis, when known
        (`sporep_hpc.structures.symmetry_of`): no symmetry search is made, `symprec` is not used.

    Returns
    -------
    kpoints : ndarray of shape (n_irr, 3), float64, fractional (reciprocal-lattice units)
        Representatives in (-1/2, 1/2], sorted lexicographically on their integer grid address
        (a_0, a_1, a_2), where k = (2 a + shift) / (2 grid).
    weights : ndarray of shape (n_irr,), float64
        Multiplicity / total number of grid points; sums to 1.

    Raises
    ------
    ParameterError
        Invalid kdensity, grid, shift, symprec or rounding, or neither/both of kdensity and grid.
    InputError
        The structure cannot be used, its grid for `kdensity` has more than MAX_KPOINTS points, or
        spglib fails on it.
    """
    if (kdensity is None) == (grid is None):
        raise ParameterError("give exactly one of kdensity and grid")
    check_interval("symprec", symprec, 0.0, None, closed="neither", unit="Å")
    check_choice("rounding", rounding, ROUNDING_MODES)
    cell = as_cell(structure)
    lat, pos, num = cell.lattice, cell.frac, cell.numbers
    if grid is None:
        check_interval("kdensity", kdensity, 0.0, None, closed="neither", unit="1/Å")
        mesh = _grid_impl(lat, float(kdensity), rounding, _naming(structure))
    else:
        mesh = _check_grid(grid)
    sh = _check_shift(shift)
    if rotations is not None:
        rotations = np.asarray(rotations)
        if rotations.ndim != 3 or rotations.shape[1:] != (3, 3) or not len(rotations):
            raise ParameterError(f"rotations must have shape (n_rot, 3, 3); got {rotations.shape}")
    return _irreducible_impl(lat, pos, num, mesh, sh, float(symprec), rotations)


def _irreducible_impl(
    lat: np.ndarray, pos: np.ndarray, num: np.ndarray, mesh: tuple[int, int, int], shift: np.ndarray,
    symprec: float, rotations: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """spglib reduction for clean inputs (see `irreducible_kpoints`)."""
    import spglib

    error_type = getattr(getattr(spglib, "error", None), "SpglibError", None) or getattr(
        spglib, "SpglibError", RuntimeError
    )
    message = "unknown error"
    try:
        with warnings.catch_warnings():
            # spglib >= 2.5 warns about its legacy "return None" error handling (the default until
            # OLD_ERROR_HANDLING is switched off globally, which we leave to the application); both
            # styles are handled here.
            warnings.simplefilter("ignore", DeprecationWarning)
            if rotations is None:
                result = spglib.get_ir_reciprocal_mesh(
                    np.array(mesh, dtype=np.intc), (lat, pos, num), is_shift=shift, is_time_reversal=True,
                    symprec=symprec,
                )
            else:
                result = spglib.get_stabilized_reciprocal_mesh(
                    np.array(mesh, dtype=np.intc), np.ascontiguousarray(rotations, dtype=np.intc),
                    is_shift=shift, is_time_reversal=True,
                )
            if result is None:
                message = getattr(spglib, "get_error_message", lambda: "unknown error")()
    except error_type as exc:
        raise InputError(f"spglib could not reduce the {mesh} k-point mesh: {exc}") from exc
    if result is None:
        raise InputError(f"spglib could not reduce the {mesh} k-point mesh: {message}")
    mapping, address = result
    mapping = np.asarray(mapping)
    address = np.asarray(address, dtype=np.int64)
    reps, counts = np.unique(mapping, return_counts=True)
    rep_address = address[reps]
    order = np.lexsort((rep_address[:, 2], rep_address[:, 1], rep_address[:, 0]))
    mesh_arr = np.array(mesh, dtype=np.float64)
    kpoints = np.ascontiguousarray((2.0 * rep_address[order] + shift) / (2.0 * mesh_arr))
    weights = counts[order].astype(np.float64) / float(mapping.size)
    return kpoints, weights
