"""One crystal structure: compact storage, coercion to pymatgen, validation (one-line reasons).

Lowest layer of the package: no MPI, no HDF5, no file formats (reading files is `sporep_hpc.inputs`),
no numerics beyond geometry.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import check_interval
from .errors import InputError

log = logging.getLogger(__name__)


#: Closest allowed distance between two atoms (periodic images included), Å.
MIN_DISTANCE = 0.5


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

    @classmethod
    def from_structure(cls, structure: Any) -> Any:
        """The compact form of an ordered pymatgen Structure (a disordered one is returned unchanged)."""
        if not structure.is_ordered:
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


def as_structure(obj: Any) -> Any:
    """A pymatgen Structure from a CompactStructure (anything else is returned unchanged)."""
    return obj.to_structure() if isinstance(obj, CompactStructure) else obj


def check_structure(
    structure: Any, name: str, *, max_atoms: int | None = None, min_distance: float = MIN_DISTANCE
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
        check_interval("max_atoms", max_atoms, 1, None, closed="left", integer=True)
    check_interval("min_distance", min_distance, 0.0, None, closed="left", unit="Å")
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
