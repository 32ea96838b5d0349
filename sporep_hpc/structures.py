"""One crystal structure: compact storage, coercion to pymatgen, validation (one-line reasons).

Lowest layer of the package: no MPI, no HDF5, no file formats (reading files is `sporep_hpc.inputs`),
no numerics beyond geometry.
"""

from __future__ import annotations

import functools
import json
import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .errors import InputError
from .params import Param

log = logging.getLogger(__name__)


#: Run parameters checked here (`check_structure`); listed in `sporep_hpc.config.RUN_PARAMETERS`.
MAX_ATOMS = Param("max_atoms", 200, "structures with more atoms fail", kind=int, low=1, closed="left")
#: Closest allowed distance between two atoms (periodic images included), Å.
MIN_DISTANCE = Param("min_distance", 0.5, "structures with two atoms closer than this fail",
                     low=0.0, closed="left", unit="Å")


#: Smallest allowed cell volume relative to the product of the lattice vector lengths.
MIN_CELL_FLATNESS = 1e-3


#: Shortest allowed lattice vector, Å (shorter ones put an atom's images closer than any bond).
MIN_LATTICE_LENGTH = 1e-3


#: Longest allowed lattice vector, Å (1 mm): beyond it the lattice sums and k-grids mean nothing.
MAX_LATTICE_LENGTH = 1e7


#: Largest allowed |fractional coordinate|: atoms far outside the cell (unwrapped trajectories,
#: corrupted files) would make the lattice sums enumerate that many more translations.
MAX_FRACTIONAL = 10.0


@dataclass(frozen=True, eq=False)
class CompactStructure:
    """An ordered structure as plain arrays: what the MPI driver keeps for every input on every rank.

    A pymatgen Structure of 56 atoms holds about 47 kB of Python objects; this holds about 2 kB, so
    10^5 inputs fit on each rank. `to_structure` rebuilds the identical Structure (same lattice and
    fractional coordinates, species with their oxidation states); site properties are dropped.

    Attributes
    ----------
    lattice : ndarray of shape (3, 3), float64, Å
        Lattice vectors as rows.
    species : tuple of str
        One species string per site (e.g. "Ba", "Ba2+").
    frac_coords : ndarray of shape (n_atoms, 3), float64
    pbc : tuple of 3 bool
    """

    lattice: np.ndarray
    species: tuple
    frac_coords: np.ndarray
    pbc: tuple = (True, True, True)

    def __len__(self) -> int:
        return len(self.species)

    @property
    def numbers(self) -> np.ndarray:
        """Atomic numbers, (n_atoms,) intc (0 for a dummy species)."""
        return np.array([_species_element(sp)[0] for sp in self.species], dtype=np.intc)

    @property
    def symbols(self) -> tuple[str, ...]:
        """Element symbols, one per site ("" for a dummy species)."""
        return tuple(_species_element(sp)[1] for sp in self.species)

    @property
    def cart_coords(self) -> np.ndarray:
        """Cartesian positions, (n_atoms, 3) float64, Å: each site's fractional coordinates times the
        lattice, one site at a time as pymatgen's sites compute them (bit-identical to its cart_coords)."""
        frac = np.asarray(self.frac_coords, dtype=np.float64).reshape(-1, 3)
        return np.array([np.dot(f, self.lattice) for f in frac], dtype=np.float64).reshape(-1, 3)

    @property
    def formula(self) -> str:
        """pymatgen's reduced formula of the species (e.g. "BaTiO3")."""
        return _reduced_formula(tuple(sorted(Counter(self.species).items())))

    @classmethod
    def from_structure(cls, structure: Any) -> Any:
        """The compact form of an ordered pymatgen Structure (a disordered one, or a CompactStructure, is
        returned unchanged)."""
        if isinstance(structure, cls) or not structure.is_ordered:
            return structure
        return cls(
            np.array(structure.lattice.matrix, dtype=np.float64),
            tuple(str(site.specie) for site in structure),
            np.array(structure.frac_coords, dtype=np.float64).reshape(-1, 3),
            tuple(bool(p) for p in getattr(structure.lattice, "pbc", (True, True, True))),
        )

    def to_structure(self) -> Any:
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.lattice, pbc=self.pbc), list(self.species), self.frac_coords)


@functools.lru_cache(maxsize=4096)
def _reduced_formula(counts: tuple[tuple[str, int], ...]) -> str:
    """pymatgen's reduced formula of (species, count) pairs (one formula per composition: cached)."""
    from pymatgen.core import Composition

    return str(Composition(dict(counts)).reduced_formula)


@functools.lru_cache(maxsize=4096)
def _species_element(species: str) -> tuple[int, str]:
    """(atomic number, element symbol) of a species string such as "Ba" or "Ba2+" ((0, "") for a dummy)."""
    from pymatgen.core import Element
    from pymatgen.core.periodic_table import get_el_sp

    symbol = str(getattr(get_el_sp(species), "symbol", ""))
    return (int(Element(symbol).Z), symbol) if Element.is_valid_symbol(symbol) else (0, "")


def _json_default(value: Any) -> Any:
    """JSON form of numpy scalars/arrays (and, as a last resort, str) for `properties_json`."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=str)
    return str(value)


def properties_json(properties: Any) -> str:
    """Canonical JSON text (sorted keys, compact) of a record's properties; "" for none/empty."""
    if not properties:
        return ""
    return json.dumps(properties, sort_keys=True, separators=(",", ":"), default=_json_default)


@dataclass(frozen=True, eq=False)
class Cell:
    """A structure as checked arrays (`as_cell`): what kpoints (spglib) and operators (kernels) use.

    Attributes
    ----------
    lattice : ndarray of shape (3, 3), float64, Å
        Lattice vectors as rows; finite, |det| >= 1e-8 Å³.
    frac : ndarray of shape (n_atoms, 3), float64
        Fractional coordinates, finite; n_atoms >= 1.
    cart : ndarray of shape (n_atoms, 3), float64, Å
        Cartesian positions (the structure's own, else frac @ lattice).
    numbers : ndarray of shape (n_atoms,), intc
        Atomic numbers.
    """

    lattice: np.ndarray
    frac: np.ndarray
    cart: np.ndarray
    numbers: np.ndarray

    @property
    def symbols(self) -> tuple[str, ...]:
        """Element symbols, one per atom ("" for a dummy species, atomic number 0)."""
        return tuple(_element_symbol(int(z)) if z > 0 else "" for z in self.numbers)


def as_lattice(lattice_matrix: Any) -> np.ndarray:
    """A lattice as a checked (3, 3) float64 array, vectors as rows (Å): finite, |det| >= 1e-8 Å³."""
    lattice = np.ascontiguousarray(lattice_matrix, dtype=np.float64)
    if lattice.shape != (3, 3):
        raise InputError(f"lattice must be a (3, 3) array, vectors as rows; got shape {lattice.shape}")
    if not np.all(np.isfinite(lattice)):
        raise InputError("lattice contains non-finite entries")
    volume = float(np.linalg.det(lattice))
    if abs(volume) < 1e-8:
        raise InputError(f"lattice is singular (volume {volume:.3g} Å³)")
    return lattice


def as_cell(structure: Any) -> Cell:
    """The one coercion of a structure (pymatgen Structure or anything with ``lattice.matrix``,
    ``frac_coords`` and ``atomic_numbers``) into checked arrays. A Cell is returned as it is; a
    CompactStructure is read without building a pymatgen Structure.

    Raises
    ------
    InputError
        Not a structure, disordered, no atoms, a non-finite or singular lattice, non-finite positions
        (spglib crashes on NaN positions; the kernels would return garbage).
    """
    if isinstance(structure, Cell):
        return structure
    if getattr(structure, "is_ordered", True) is False:
        raise InputError("structure: partial occupancy (disordered sites) is not supported")
    try:
        if isinstance(structure, CompactStructure):
            lattice, numbers, cart = structure.lattice, structure.numbers, structure.cart_coords
            frac = np.array(structure.frac_coords, dtype=np.float64)
        else:
            lattice = structure.lattice.matrix
            frac = np.array(structure.frac_coords, dtype=np.float64)
            numbers = np.ascontiguousarray(structure.atomic_numbers, dtype=np.intc)
            cart = getattr(structure, "cart_coords", None)
    except AttributeError as exc:
        raise InputError(f"structure must be a pymatgen Structure; got {type(structure).__name__}") from exc
    except (ValueError, TypeError) as exc:
        raise InputError(f"structure cannot be used: {exc}") from exc
    lattice = as_lattice(lattice)
    if frac.ndim != 2 or frac.shape[1] != 3 or frac.shape[0] != numbers.shape[0] or frac.shape[0] == 0:
        raise InputError(f"structure has no atoms or positions of shape {frac.shape} (need (n_atoms, 3))")
    if not np.all(np.isfinite(frac)):
        raise InputError("structure has non-finite atomic positions")
    cart = frac @ lattice if cart is None else np.array(cart, dtype=np.float64).reshape(-1, 3)
    if cart.shape != frac.shape or not np.all(np.isfinite(cart)):
        raise InputError("structure has non-finite atomic positions")
    return Cell(lattice, np.ascontiguousarray(frac), np.ascontiguousarray(cart), numbers)


def as_structure(obj: Any) -> Any:
    """A pymatgen Structure from a CompactStructure (anything else is returned unchanged)."""
    return obj.to_structure() if isinstance(obj, CompactStructure) else obj


def check_structure(
    structure: Any, name: str, *, max_atoms: int | None = None, min_distance: float = MIN_DISTANCE.default
) -> None:
    """Raise InputError (naming the structure) unless `structure` can be computed.

    Checks, in this order: at least one atom; ordered sites (no partial occupancy); real elements
    (no dummy species); a periodic 3-D cell; a finite lattice with vectors of MIN_LATTICE_LENGTH to
    MAX_LATTICE_LENGTH Å and a volume of at least MIN_CELL_FLATNESS times the product of their
    lengths (not flat); finite fractional coordinates within ±MAX_FRACTIONAL; at most `max_atoms`
    atoms; no two atoms (periodic images included) closer than `min_distance` Å. After these, the
    kernels see clean input. The basis check (element without basis functions) is done where the
    basis is known, the k-point count where the grid is made (sporep_hpc.kpoints).
    """
    if max_atoms is not None:
        MAX_ATOMS.check(max_atoms)
    MIN_DISTANCE.check(min_distance)
    prefix = f"structure {name!r}"
    n_atoms = len(structure)
    if n_atoms == 0:
        raise InputError(f"{prefix}: no atoms")
    if not structure.is_ordered:
        raise InputError(f"{prefix}: partial occupancy (disordered sites) is not supported")
    from pymatgen.core import Element

    symbols = {str(site.specie): getattr(site.specie, "symbol", "") for site in structure}
    dummies = sorted(name for name, symbol in symbols.items() if not Element.is_valid_symbol(symbol))
    if dummies:
        raise InputError(f"{prefix}: unknown element(s) {', '.join(dummies)} (not in the periodic table)")
    lattice = structure.lattice
    pbc = getattr(lattice, "pbc", (True, True, True))
    if not all(pbc):
        raise InputError(f"{prefix}: cell is not periodic in 3 dimensions (pbc={tuple(pbc)})")
    matrix = np.asarray(lattice.matrix, dtype=np.float64)
    if not np.all(np.isfinite(matrix)):
        raise InputError(f"{prefix}: lattice has non-finite entries ({matrix.tolist()})")
    lengths = np.linalg.norm(matrix, axis=1)
    if np.any(lengths < MIN_LATTICE_LENGTH) or np.any(lengths > MAX_LATTICE_LENGTH):
        shown = [float(f"{x:.4g}") for x in lengths]
        raise InputError(
            f"{prefix}: lattice vector lengths {shown} Å outside [{MIN_LATTICE_LENGTH:g}, "
            f"{MAX_LATTICE_LENGTH:g}] Å"
        )
    volume = abs(float(np.linalg.det(matrix)))
    if volume < MIN_CELL_FLATNESS * float(np.prod(lengths)):
        raise InputError(f"{prefix}: degenerate (flat) cell, volume {volume:.4g} Å^3")
    frac = np.asarray(structure.frac_coords, dtype=np.float64)
    if not np.all(np.isfinite(frac)):
        raise InputError(f"{prefix}: non-finite atomic coordinates")
    worst = float(np.max(np.abs(frac)))
    if worst > MAX_FRACTIONAL:
        raise InputError(
            f"{prefix}: fractional coordinate {worst:.4g} outside [-{MAX_FRACTIONAL:g}, {MAX_FRACTIONAL:g}] "
            "(wrap the atoms into the cell)"
        )
    if max_atoms is not None and n_atoms > max_atoms:
        raise InputError(f"{prefix}: {n_atoms} atoms, more than max_atoms={max_atoms}")
    if min_distance > 0:
        d = closest_distance(structure, min_distance)
        if d < min_distance:
            raise InputError(f"{prefix}: atoms {d:.3f} Å apart, closer than {min_distance} Å")


def closest_distance(structure: Any, cutoff: float) -> float:
    """Shortest distance between two atoms, periodic images included, if below `cutoff` (else inf), Å."""
    _, _, _, dist = structure.get_neighbor_list(r=cutoff, exclude_self=True)
    return float(np.min(dist)) if len(dist) else float("inf")


#: Run parameter: compute structures in the cell they are given in instead of their primitive cell.
KEEP_CELL = Param("keep_cell", False, "compute each structure in the cell it is given in (default: its "
                  "standardized primitive cell, so that any cell of one crystal gives one fingerprint)",
                  kind=bool)

#: Symmetry tolerance of `symmetry_of`, Å (the default of `sporep_hpc.kpoints.irreducible_kpoints`).
PRIMITIVE_SYMPREC = 1e-5

_H, _T = 0.5, 1.0 / 3.0
#: spglib's centring matrices P_c, (a_p b_p c_p) = (a_s b_s c_s) P_c, from its standardized conventional
#: cell to its standardized primitive cell, by the centring letter of the international symbol (spglib's
#: documentation, "Transformation to the primitive cell"; tests check `symmetry_of` against spglib's own
#: ``standardize_cell(to_primitive=True)``).
_CENTRING = {
    "P": np.eye(3),
    "A": np.array([[1, 0, 0], [0, _H, -_H], [0, _H, _H]]),
    "C": np.array([[_H, _H, 0], [-_H, _H, 0], [0, 0, 1]]),
    "I": np.array([[-_H, _H, _H], [_H, -_H, _H], [_H, _H, -_H]]),
    "F": np.array([[0, _H, _H], [_H, 0, _H], [_H, _H, 0]]),
    "R": np.array([[2 * _T, -_T, -_T], [_T, _T, -2 * _T], [_T, _T, _T]]),
}
_FROM_CENTRING = {letter: np.linalg.inv(matrix) for letter, matrix in _CENTRING.items()}


class Symmetrized(NamedTuple):
    """A structure as it is computed (`symmetry_of`).

    Attributes
    ----------
    structure : CompactStructure
        The cell computed (Å; site properties are not kept).
    n_cells : int
        How many such cells the given cell holds.
    rotations : ndarray of shape (n_rot, 3, 3), intc
        The crystal's point group in the fractional basis of `structure`, each rotation once.
    """

    structure: Any
    n_cells: int
    rotations: np.ndarray


@functools.lru_cache(maxsize=128)
def _element_symbol(number: int) -> str:
    """The element symbol of atomic number `number` (1-118)."""
    from pymatgen.core import Element

    return Element.from_Z(number).symbol


def _dataset(cell: Cell) -> Any:
    """spglib's symmetry dataset of a clean cell at PRIMITIVE_SYMPREC Å (InputError when it finds none)."""
    import spglib

    error_type = getattr(spglib, "SpglibError", RuntimeError)
    with warnings.catch_warnings():
        # spglib >= 2.5 warns about its legacy "return None" error handling; both styles are handled
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            dataset = spglib.get_symmetry_dataset((cell.lattice, cell.frac, cell.numbers),
                                                  symprec=PRIMITIVE_SYMPREC)
        except error_type as exc:
            raise InputError(f"spglib finds no symmetry: {exc}") from exc
        if dataset is None:
            raise InputError(f"spglib finds no symmetry: {spglib.get_error_message()}")
    return dataset


def _point_group(rotations: np.ndarray) -> np.ndarray:
    """Each of these rotation matrices (float, must be integral) once, as intc, in order of first
    appearance (a space group lists a rotation once per translation: centring, supercell)."""
    rounded = np.rint(rotations)
    if np.abs(rotations - rounded).max(initial=0.0) > 1e-6:
        raise InputError("spglib's rotations are not integral in the cell computed")
    unique: dict[bytes, np.ndarray] = {}
    for r in rounded.astype(np.intc):
        unique.setdefault(r.tobytes(), r)
    return np.array(list(unique.values()))


def symmetry_of(structure: Any, keep_cell: bool = False) -> Symmetrized:
    """The cell a structure is computed in, how many such cells the given one holds, and its point group,
    from one spglib symmetry search (tolerance PRIMITIVE_SYMPREC Å) on the cleaned cell (`as_cell`).

    By default the standardized primitive cell, idealized: spglib's standardized conventional cell
    (rotated to spglib's standard orientation, positions symmetrized: they move by at most the tolerance)
    times its centring matrix, which is what spglib's ``standardize_cell(to_primitive=True)`` returns. Any
    cell of one crystal (primitive, conventional, supercell, rotated, with its origin shifted) gives the
    same lattice vectors, hence the same k-point grid and spectrum; the atoms may differ by a
    lattice-preserving symmetry, which leaves the spectrum unchanged. With `keep_cell`, the given cell.

    Raises
    ------
    InputError
        Not a clean structure (`as_cell`), or spglib finds no symmetry.
    """
    import spglib

    cell = as_cell(structure)
    dataset = _dataset(cell)
    if keep_cell:  # the given lattice's share of the point group (spglib searches within it)
        rotations = _point_group(np.asarray(dataset.rotations, float))
        return Symmetrized(CompactStructure.from_structure(structure), 1, rotations)
    letter = dataset.international[0]
    to_primitive, from_primitive = _CENTRING[letter], _FROM_CENTRING[letter]
    mapping = np.asarray(dataset.std_mapping_to_primitive)
    first = np.unique(mapping, return_index=True)[1]  # one conventional atom per primitive atom, in order
    frac = np.asarray(dataset.std_positions)[first] @ from_primitive.T
    frac -= np.rint(frac)  # into [0, 1) as spglib's standardize_cell: -1e-10 < x < 0 stays as it is
    frac[frac < -1e-10] += 1.0
    n_cells, rest = divmod(len(cell.numbers), len(first))
    if rest:
        raise InputError(f"spglib's primitive cell has {len(first)} atoms, not a divisor of "
                         f"{len(cell.numbers)}")
    symbols = tuple(_element_symbol(int(z)) for z in np.asarray(dataset.std_types)[first])
    primitive = CompactStructure(to_primitive.T @ np.asarray(dataset.std_lattice), symbols, frac)
    # the whole point group, from the space group's operations in the standardized cell (spglib's table
    # for the Hall setting found; those of the given cell miss the ones its lattice breaks, e.g. in a
    # supercell), in the primitive basis: x_p = P_c^-1 x_s, R -> P_c^-1 R P_c
    standard = spglib.get_symmetry_from_database(dataset.hall_number)["rotations"]
    rotations = from_primitive @ np.asarray(standard, float) @ to_primitive
    return Symmetrized(primitive, n_cells, _point_group(rotations))
