"""The four BaTiO3 polymorphs: cubic Pm-3m, tetragonal P4mm, orthorhombic Amm2, rhombohedral R3m.

Source: G. H. Kwei, A. C. Lawson, S. J. L. Billinge and S.-W. Cheong, "Structures of the ferroelectric
phases of barium titanate", J. Phys. Chem. 97, 2368–2377 (1993) (neutron powder diffraction, Rietveld):
rhombohedral at 15 K, orthorhombic at 190 K, tetragonal at 280 K; the cubic cell edge is the
paraelectric value quoted from the same work. Positions are given in the paper's settings (Ba at the
origin) and expanded with pymatgen's space-group machinery.

Note for maintainers: the numbers below were transcribed for this module without access to the
paper's tables in the session that wrote it; the symmetry of each cell is checked by tests (spglib),
but the digits should be checked against Tables II–IV of the paper before they are quoted elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["POLYMORPHS", "Polymorph", "entries", "polymorph", "polymorphs"]

REFERENCE = "Kwei, Lawson, Billinge & Cheong, J. Phys. Chem. 97, 2368 (1993)"


@dataclass(frozen=True)
class Polymorph:
    """Published cell of one BaTiO3 phase.

    Attributes
    ----------
    phase : str
        "cubic", "tetragonal", "orthorhombic" or "rhombohedral".
    spacegroup : str
        Hermann–Mauguin symbol of the setting the coordinates are given in.
    number : int
        International space-group number.
    lattice : tuple of 6 floats
        a, b, c (Å), alpha, beta, gamma (degrees).
    sites : tuple of (element, (x, y, z))
        Asymmetric unit, fractional coordinates.
    temperature : float
        Measurement temperature, K.
    """

    phase: str
    spacegroup: str
    number: int
    lattice: tuple
    sites: tuple
    temperature: float


POLYMORPHS = (
    Polymorph(
        "cubic", "Pm-3m", 221, (4.0094, 4.0094, 4.0094, 90.0, 90.0, 90.0),
        (("Ba", (0.0, 0.0, 0.0)), ("Ti", (0.5, 0.5, 0.5)), ("O", (0.5, 0.5, 0.0))),
        400.0,
    ),
    Polymorph(
        "tetragonal", "P4mm", 99, (3.9970, 3.9970, 4.0314, 90.0, 90.0, 90.0),
        (("Ba", (0.0, 0.0, 0.0)), ("Ti", (0.5, 0.5, 0.5224)), ("O", (0.5, 0.5, -0.0244)),
         ("O", (0.5, 0.0, 0.4895))),
        280.0,
    ),
    Polymorph(
        "orthorhombic", "Amm2", 38, (3.9841, 5.6741, 5.6916, 90.0, 90.0, 90.0),
        (("Ba", (0.0, 0.0, 0.0)), ("Ti", (0.5, 0.0, 0.5170)), ("O", (0.0, 0.0, 0.4890)),
         ("O", (0.5, 0.2561, 0.2341))),
        190.0,
    ),
    Polymorph(
        "rhombohedral", "R3m", 160, (4.0036, 4.0036, 4.0036, 89.839, 89.839, 89.839),
        (("Ba", (0.0, 0.0, 0.0)), ("Ti", (0.4870, 0.4870, 0.4870)), ("O", (0.5110, 0.5110, 0.0193))),
        15.0,
    ),
)


def _properties(p: Polymorph) -> dict:
    return {
        "phase": p.phase, "spacegroup": p.spacegroup, "temperature": p.temperature, "reference": REFERENCE
    }


def polymorph(phase: str):
    """The primitive pymatgen Structure of one phase (5 atoms: Ba, Ti, 3 O)."""
    from pymatgen.core import Lattice, Structure

    from .._validation import check_choice

    check_choice("phase", phase, [p.phase for p in POLYMORPHS])
    p = next(p for p in POLYMORPHS if p.phase == phase)
    lattice = Lattice.from_parameters(*p.lattice)
    species = [s for s, _ in p.sites]
    coords = [c for _, c in p.sites]
    if p.phase == "rhombohedral":
        # rhombohedral axes: the coordinates are already in the primitive cell; expand with the
        # point-group operations of R3m about the origin (pymatgen's from_spacegroup assumes hexagonal
        # axes for R groups)
        structure = _expand_rhombohedral(lattice, species, coords)
    else:
        structure = Structure.from_spacegroup(p.spacegroup, lattice, species, coords)
    structure = structure.get_primitive_structure()
    structure.properties = _properties(p)
    return structure


def _expand_rhombohedral(lattice, species, coords):
    """R3m in rhombohedral axes: the orbit of each site under the 6 permutations of (x, y, z)."""
    from itertools import permutations

    import numpy as np
    from pymatgen.core import Structure

    out_species, out_coords = [], []
    for sp, c in zip(species, coords, strict=True):
        seen = []
        for perm in permutations(range(3)):
            x = np.mod(np.array(c)[list(perm)], 1.0)
            if not any(np.allclose(x, y, atol=1e-8) for y in seen):
                seen.append(x)
        out_species += [sp] * len(seen)
        out_coords += seen
    return Structure(lattice, out_species, out_coords)


def polymorphs() -> list:
    """All four phases as (id, Structure) pairs, ids ``batio3_<phase>``."""
    return [(f"batio3_{p.phase}", polymorph(p.phase)) for p in POLYMORPHS]


def entries() -> list:
    """Catalogue entries for `sporep_hpc.examples.load_set`."""
    from . import Entry

    return [
        Entry(
            f"batio3_{p.phase}",
            5,
            _properties(p),
            lambda phase=p.phase: polymorph(phase),
        )
        for p in POLYMORPHS
    ]
