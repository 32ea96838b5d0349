"""Brillouin-zone sampling: Γ-centred Monkhorst-Pack grids and their irreducible wedge (spglib).

DESIGN.md §3: the grid shape comes from a spacing ``kdensity`` in Å⁻¹ with the reciprocal vectors b_i
including the 2π factor, n_i = max(1, ceil(|b_i| / kdensity)) (``rounding="ceil"``, guarantees the
spacing) or n_i = max(1, round(|b_i| / kdensity)) (``rounding="round"``, the original study's operator
grids; halves round up). The irreducible points and integer multiplicities come from spglib's
``get_ir_reciprocal_mesh`` with time reversal on; weights are normalised to 1.

A grid has at most MAX_KPOINTS (10⁶) points: a finer one is refused before anything
is allocated (InputError naming the structure for a grid from a spacing, ParameterError for an explicit
grid), never left to overflow or to exhaust the memory.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
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
    "full_grid",
    "irreducible_kpoints",
    "monkhorst_pack_grid",
]

ROUNDING_MODES = ("ceil", "round")
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


def _label(structure: Any) -> str:
    """The reduced formula of a structure, for messages ("?" when pymatgen cannot give one)."""
    try:
        return str(structure.composition.reduced_formula)
    except (AttributeError, ValueError, TypeError):
        return "?"


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
    return _grid_impl(lat, float(kdensity), rounding, "the lattice")


def _grid_impl(lat: np.ndarray, kdensity: float, rounding: str, label: str) -> tuple[int, int, int]:
    """Grid shape for a clean lattice (rows, Å) and a positive spacing; InputError naming `label` when it
    has more than MAX_KPOINTS points (checked in floating point, before any integer can overflow)."""
    recip = 2.0 * np.pi * np.linalg.inv(lat).T  # rows b_i, Å⁻¹
    with np.errstate(over="ignore"):
        ratios = np.linalg.norm(recip, axis=1) / kdensity
    if rounding == "ceil":
        # Guard against ratios like 3.0000000000000004 from round-off producing an extra point.
        counts = np.maximum(1.0, np.ceil(ratios - 1e-10))
    else:
        counts = np.maximum(1.0, np.floor(ratios + 0.5))
    with np.errstate(over="ignore"):
        total = float(np.prod(counts))
    if not total <= MAX_KPOINTS:  # also catches inf and NaN
        shown = "x".join(f"{c:.0f}" if c < 1e6 else f"{c:.3g}" for c in counts)
        raise InputError(
            f"{label}: the k-point grid {shown} for kdensity {kdensity:g} 1/Å has {total:.3g} points, "
            f"more than {MAX_KPOINTS} (MAX_KPOINTS); use a larger kdensity"
        )
    return tuple(int(n) for n in counts)  # type: ignore[return-value]


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
        mesh = _grid_impl(lat, float(kdensity), rounding, f"structure {_label(structure)!r}")
    else:
        mesh = _check_grid(grid)
    sh = _check_shift(shift)
    return _irreducible_impl(lat, pos, num, mesh, sh, float(symprec))


def _irreducible_impl(
    lat: np.ndarray, pos: np.ndarray, num: np.ndarray, mesh: tuple[int, int, int], shift: np.ndarray,
    symprec: float,
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
            result = spglib.get_ir_reciprocal_mesh(
                np.array(mesh, dtype=np.intc), (lat, pos, num), is_shift=shift, is_time_reversal=True,
                symprec=symprec,
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
