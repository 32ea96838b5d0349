"""Single-wall carbon nanotubes (n, m): one translational unit cell along z.

Construction (Dresselhaus, Dresselhaus & Saito, "Physical Properties of Carbon Nanotubes", ch. 3):
graphene lattice vectors a1 = a (1, 0), a2 = a (1/2, √3/2) with a = √3 · bond; chiral vector
C = n a1 + m a2; translation vector T = t1 a1 + t2 a2 with t1 = (2m + n)/d_R, t2 = -(2n + m)/d_R,
d_R = gcd(2m + n, 2n + m). The rectangle spanned by C and T holds N_hex = 2 (n² + nm + m²)/d_R graphene
cells, i.e. N = 2 N_hex carbon atoms. The sheet is rolled so that C becomes the circumference
(diameter d = |C|/π = a √(n² + nm + m²)/π) and T the axis (|T| = √3 |C|/d_R).

`bond` is the C–C distance on the unrolled sheet, which is also the geodesic nearest-neighbour distance
on the cylinder; the straight-line (chord) bond lengths are shorter by the curvature (about 2 % for the
(4, 0) tube, under 0.5 % above 8 Å diameter), as in the usual rolled-graphene construction.

Atoms are selected in exact integer arithmetic (no rounding at the cell boundary), so no atom is
duplicated across the periodic boundary along the axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._validation import check_interval

__all__ = ["NanotubeInfo", "chiralities", "nanotube", "nanotube_info"]

N_MIN, N_MAX = 4, 12  # the built-in set: 4 <= n <= 12, 0 <= m <= n


@dataclass(frozen=True)
class NanotubeInfo:
    """Geometry and zone-folding label of an (n, m) nanotube, from closed formulas.

    Attributes
    ----------
    n, m : int
        Chiral indices, n >= m >= 0 (other orders are normalised).
    n_atoms : int
        Carbon atoms in one translational unit cell, 4 (n² + nm + m²)/d_R.
    diameter : float
        Tube diameter a √(n² + nm + m²)/π, Å.
    length : float
        Length of the translational unit cell along the axis, √3 |C|/d_R, Å.
    chiral_angle : float
        Angle between C and a1, degrees (0 zigzag, 30 armchair).
    metallic : bool
        Zone-folding rule: metallic when (n − m) mod 3 == 0 (curvature gaps of small tubes ignored).
    family : str
        "metallic", "semi-1" ((n − m) mod 3 == 1) or "semi-2" ((n − m) mod 3 == 2).
    kind : str
        "zigzag" (m = 0), "armchair" (n = m) or "chiral".
    """

    n: int
    m: int
    n_atoms: int
    diameter: float
    length: float
    chiral_angle: float
    metallic: bool
    family: str
    kind: str

    def as_properties(self) -> dict:
        """Plain-JSON properties stored with the structure."""
        return {
            "n": self.n,
            "m": self.m,
            "n_atoms": self.n_atoms,
            "diameter": self.diameter,
            "chiral_angle": self.chiral_angle,
            "metallic": int(self.metallic),
            "electronic": "metallic" if self.metallic else "semiconducting",
            "family": self.family,
            "kind": self.kind,
        }


def _check_indices(n: int, m: int) -> tuple[int, int]:
    check_interval("n", n, 1, None, integer=True)
    check_interval("m", m, 0, None, integer=True)
    n, m = int(n), int(m)
    return (n, m) if n >= m else (m, n)


def nanotube_info(n: int, m: int, bond: float = 1.42) -> NanotubeInfo:
    """Closed-form geometry and metallicity of the (n, m) tube (see `NanotubeInfo`)."""
    n, m = _check_indices(n, m)
    check_interval("bond", bond, 0.0, None, closed="neither", unit="Å")
    return _info(n, m, float(bond))


def _info(n: int, m: int, bond: float) -> NanotubeInfo:
    a = math.sqrt(3.0) * bond
    q = n * n + n * m + m * m
    d_r = math.gcd(2 * m + n, 2 * n + m)
    circumference = a * math.sqrt(q)
    mod = (n - m) % 3
    return NanotubeInfo(
        n=n,
        m=m,
        n_atoms=4 * q // d_r,
        diameter=circumference / math.pi,
        length=math.sqrt(3.0) * circumference / d_r,
        chiral_angle=math.degrees(math.atan2(math.sqrt(3.0) * m, 2 * n + m)),
        metallic=mod == 0,
        family=("metallic", "semi-1", "semi-2")[mod],
        kind="zigzag" if m == 0 else "armchair" if n == m else "chiral",
    )


def _sheet_coordinates(n: int, m: int) -> np.ndarray:
    """Fractional coordinates (s along C, t along T) of the atoms of the unrolled cell, shape (N, 2).

    Atom positions on the sheet are (p + b) a1 + (q + b) a2 with b in {0, 1/3}. Writing them as
    s C + t T and multiplying by 3 D (D = n t2 − m t1) keeps everything in integers, so the half-open
    test 0 <= s, t < 1 is exact.
    """
    d_r = math.gcd(2 * m + n, 2 * n + m)
    t1, t2 = (2 * m + n) // d_r, -(2 * n + m) // d_r
    det = n * t2 - m * t1  # negative: -2 (n² + nm + m²)/d_R
    corners_p = (0, n, t1, n + t1)
    corners_q = (0, m, t2, m + t2)
    p, q = np.meshgrid(
        np.arange(min(corners_p) - 1, max(corners_p) + 2),
        np.arange(min(corners_q) - 1, max(corners_q) + 2),
        indexing="ij",
    )
    p, q = p.ravel().astype(np.int64), q.ravel().astype(np.int64)
    out = []
    for shift in (0, 1):  # b = shift/3
        x, y = 3 * p + shift, 3 * q + shift  # 3 (p + b), 3 (q + b)
        s_num = x * t2 - y * t1  # s = s_num / (3 det)
        t_num = n * y - m * x  # t = t_num / (3 det)
        den = 3 * det
        # 0 <= num/den < 1 with den < 0  <=>  den < num <= 0
        keep = (s_num <= 0) & (s_num > den) & (t_num <= 0) & (t_num > den)
        out.append(np.column_stack([s_num[keep] / den, t_num[keep] / den]))
    return np.concatenate(out)


def nanotube(n: int, m: int, bond: float = 1.42, vacuum: float = 10.0):
    """The (n, m) single-wall carbon nanotube as a periodic pymatgen Structure.

    Parameters
    ----------
    n, m : int
        Chiral indices (n >= 1, m >= 0; (m, n) is normalised to (n, m)).
    bond : float
        C–C distance of the unrolled graphene sheet, Å (default 1.42).
    vacuum : float
        Minimum wall-to-wall gap between periodic images perpendicular to the axis, Å (default 10).

    Returns
    -------
    pymatgen.core.Structure
        Tetragonal cell (d + vacuum, d + vacuum, |T|), the axis along z through the cell centre,
        4 (n² + nm + m²)/d_R carbon atoms. ``structure.properties`` holds `NanotubeInfo.as_properties()`.
    """
    from pymatgen.core import Lattice, Structure

    n, m = _check_indices(n, m)
    check_interval("bond", bond, 0.0, None, closed="neither", unit="Å")
    check_interval("vacuum", vacuum, 0.0, None, unit="Å")
    info = _info(n, m, float(bond))
    st = _sheet_coordinates(n, m)
    if len(st) != info.n_atoms:  # internal consistency of the exact selection
        raise RuntimeError(f"nanotube ({n},{m}): selected {len(st)} atoms, expected {info.n_atoms}")
    radius = info.diameter / 2.0
    box = info.diameter + float(vacuum)
    theta = 2.0 * math.pi * st[:, 0]
    coords = np.column_stack(
        [box / 2 + radius * np.cos(theta), box / 2 + radius * np.sin(theta), st[:, 1] * info.length]
    )
    order = np.lexsort((theta, coords[:, 2]))
    lattice = Lattice.from_parameters(box, box, info.length, 90.0, 90.0, 90.0)
    structure = Structure(
        lattice,
        ["C"] * len(coords),
        coords[order],
        coords_are_cartesian=True,
        properties=info.as_properties(),
    )
    return structure


def chiralities(n_min: int = N_MIN, n_max: int = N_MAX) -> list[tuple[int, int]]:
    """All (n, m) with n_min <= n <= n_max and 0 <= m <= n, in lexicographic order."""
    return [(n, m) for n in range(n_min, n_max + 1) for m in range(n + 1)]
