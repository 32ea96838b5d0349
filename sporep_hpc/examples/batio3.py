"""The four BaTiO3 polymorphs: cubic Pm-3m, tetragonal P4mm, orthorhombic Amm2, rhombohedral R3m.

Provenance of the numbers (checked 2026-11-26 against public copies of database records; every digit
marked VERIFIED was read from the record named, nothing was interpolated or rounded):

* cubic (Pm-3m) -- VERIFIED. ICSD 67518: R. H. Buttner and E. N. Maslen, "Structural parameters and
  electron difference density in BaTiO3", Acta Cryst. B48, 764-769 (1992), as copied in the public
  repository pavoljuhas/pdfrecipebuilder, file ``BaTiO3.cif`` (commit 7060801): a = 4.006(2) A;
  Ba 1a (0, 0, 0), Ti 1b (1/2, 1/2, 1/2), O 3c (1/2, 1/2, 0). The record states no measurement
  temperature, so ``temperature`` is None. (The value used before, a = 4.0094 A "from Kwei et al.",
  was found in no source; the abstract of Kwei et al., as reproduced at datapdf.com, speaks of the
  three *ferroelectric* phases only.)

* tetragonal (P4mm, 280 K), orthorhombic (Amm2, 190 K), rhombohedral (R3m, 15 K) -- UNVERIFIED.
  These digits were typed from memory when the module was written and attributed to G. H. Kwei,
  A. C. Lawson, S. J. L. Billinge and S.-W. Cheong, "Structures of the ferroelectric phases of barium
  titanate", J. Phys. Chem. 97, 2368-2377 (1993), doi:10.1021/j100112a043. No readable copy of the
  paper's tables, nor of the matching COD/AMCSD records, was found, so they are NOT confirmed; do not
  quote them. What was found:

  - Kwei et al., orthorhombic at T = 270 K: COD 9016638 (AMCSD 0018596), in the FINDSYM-processed copy
    httk/httk ``Tutorial/tutorial_data/all_spacegroups/cifs/38.cif`` (commit cdbe28e): Amm2,
    a = 3.98740, b = 5.67510, c = 5.69010 A; Ba 2a (0, 0, 0), Ti 2b (1/2, 0, 0.48310),
    O1 2a (0, 0, 0.59900), O2 4e (1/2, 0.74400, 0.75140). Its cell agrees with the 190 K cell below
    to 0.1 % (checked by a test), but its O1 z puts O1 2.28 A from Ba, which is physically implausible
    (probably a transcription error in that copy), so the record was not adopted.
  - Kwei et al. at 190 K (orthorhombic) is COD 9014492 according to amirkhesro/xrdkit
    (``src/xrdkit/structures/perovskite/Amm2.toml``); the record itself was not found.
  - A tetragonal candidate named there: Aimi et al., J. Ceram. Soc. Jpn. 129, 73-78 (2021), 298 K,
    COD 1559964 (``.../perovskite/P4mm.toml``); its numbers were not found either.

Positions are given with Ba at the origin and expanded with pymatgen's space-group machinery; each
cell's symmetry, Ti-O octahedron and volume are checked by tests (spglib), which does not validate the
digits themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["POLYMORPHS", "Polymorph", "entries", "polymorph", "polymorphs"]

REFERENCE = "Kwei, Lawson, Billinge & Cheong, J. Phys. Chem. 97, 2368 (1993)"
_UNVERIFIED = f"UNVERIFIED, attributed to {REFERENCE}; digits not checked against the paper"
_BUTTNER_MASLEN = "Buttner & Maslen, Acta Cryst. B48, 764 (1992), ICSD 67518"


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
    temperature : float or None
        Measurement temperature, K (None: not stated in the source record).
    reference : str
        Where the numbers come from.
    verified : bool
        True if every number was checked against the cited record (see the module docstring).
    """

    phase: str
    spacegroup: str
    number: int
    lattice: tuple
    sites: tuple
    temperature: float | None
    reference: str = _UNVERIFIED
    verified: bool = False


POLYMORPHS = (
    Polymorph(
        "cubic", "Pm-3m", 221, (4.006, 4.006, 4.006, 90.0, 90.0, 90.0),
        (("Ba", (0.0, 0.0, 0.0)), ("Ti", (0.5, 0.5, 0.5)), ("O", (0.5, 0.5, 0.0))),
        None, _BUTTNER_MASLEN, True,
    ),
    # the three ferroelectric phases below are UNVERIFIED (see the module docstring)
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
        "phase": p.phase, "spacegroup": p.spacegroup, "temperature": p.temperature,
        "reference": p.reference, "verified": p.verified,
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
