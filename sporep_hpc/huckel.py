"""Extended-Hückel parameters: valence-orbital ionisation energies h_l per element, with their sources.

The extended-Hückel operator (DESIGN.md §8.3, `sporep_hpc.operators`, ``operator="huckel"``) is
    H_μν(k) = K/2 (h_μ + h_ν) S_μν(k) − (K − 1) h_μ δ_μν
(Wolfsberg & Helmholz, J. Chem. Phys. 20, 837 (1952); K = 1.75 as in Hoffmann, J. Chem. Phys. 39, 1397
(1963)), or, with ``weighted=True``, K replaced per pair by K' = K + Δ² + Δ⁴(1 − K),
Δ = (h_μ − h_ν)/(h_μ + h_ν) (Ammeter, Bürgi, Thibeault & Hoffmann, J. Am. Chem. Soc. 100, 3686 (1978)).
h_μ is the valence-orbital ionisation energy (negative, eV) of orbital μ's element and angular momentum.

Only the energies come from the extended-Hückel literature: the orbitals are those of our contracted
Gaussian basis (the Gaussian basis replaces the Slater functions and their exponents), and the valence
electron counts are the basis' own (`sporep_hpc.basis.BasisSet.valence`). With a basis that has several
shells of one angular momentum on an element, every such shell gets the same h_l.

Sources, one tag per table entry (`SOURCES` holds the full citations):

``"yaehmop"``
    The parameter file of YAeHMOP (G. A. Landrum and W. V. Glassey), ``eht_parms.dat``: Hoffmann's and
    Alvarez's compilation (S. Alvarez, "Tables of parameters for extended Hückel calculations",
    Universitat de Barcelona, 1989/1993). Copied from the IP column of
    github.com/greglandrum/yaehmop, tightbind/eht_parms.dat (commit 1a1c344cf44ca7fdf295901e1060f4b259dba15e),
    every non-zero entry of Z <= 103 (the p rows of elements whose basis has no p included); eV.
``"nist-lda"``
    Where that file has a zero or no row for an orbital the valence-minimal basis keeps (DESIGN.md §3),
    the eigenvalue of that orbital in the neutral atom from the NIST atomic reference data for electronic
    structure calculations (S. Kotochigova, Z. H. Levine, E. L. Shirley, M. D. Stiles and C. W. Clark,
    Phys. Rev. A 55, 191 (1997); NIST SRD 141; non-relativistic LDA, NIST's ground configurations;
    Z = 1–92). Machine-readable copy: github.com/certik/dftatom, tests/lda/nonrel_energies.dat (commit
    7c3c779337aa3091b19c756dc0aad67e876dedf3; orbitals labelled with the configurations of src/states.f90,
    which are NIST's), rounded to NIST's six decimals; Hartree in the table, converted with `HARTREE_EV`.
    Those values agree with the NIST tables to 1e-6 Hartree where compared (C, Na, Fe, Kr, Xe, Au, U).
    The orbital is the basis' valence shell: n = period for s and p, period − 1 for d, period − 2 for f
    (e.g. Ga 3d, Ba 6s, Xe 4d), given per element in the comments.

The two kinds of numbers are not on one scale (LDA eigenvalues of the neutral atom lie above the
empirical ionisation energies, e.g. Ar 3p −10.4 eV against its 15.8 eV ionisation energy); each entry keeps
its source so the choice stays visible. Orbitals without a value in either source (the 5d of Pr, Nd, Pm,
Eu, Tb–Tm, which NIST's configurations leave empty, the 5f of Np, everything beyond Np except Lr s, p, d)
are absent: a structure containing such an element fails with an `InputError` naming element and orbital.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import InputError, ParameterError
from .params import Param

__all__ = [
    "HARTREE_EV",
    "HUCKEL_K",
    "HUCKEL_WEIGHTED",
    "K_DEFAULT",
    "SOURCES",
    "TABLE",
    "OrbitalEnergy",
    "check_parameters",
    "coupling_matrix",
    "orbital_energy",
    "provenance",
]

HARTREE_EV = 27.211386245988  # CODATA 2018
K_DEFAULT = 1.75  # Wolfsberg-Helmholz constant of Hoffmann's extended-Hückel method
#: Run parameters of the "huckel" operator (listed in `sporep_hpc.config.RUN_PARAMETERS`).
HUCKEL_K = Param("huckel_k", K_DEFAULT, "Wolfsberg-Helmholz constant K of the huckel operator", low=1.0,
                 closed="neither")
HUCKEL_WEIGHTED = Param("huckel_weighted", False, "huckel operator with the weighted formula of Ammeter et "
                        "al. (1978)", kind=bool)
_L = "spdf"

SOURCES = MappingProxyType({
    "yaehmop": (
        "YAeHMOP eht_parms.dat (G. A. Landrum, W. V. Glassey), Hoffmann/Alvarez compilation: S. Alvarez, "
        "Tables of parameters for extended Hückel calculations, Universitat de Barcelona (1993); "
        "github.com/greglandrum/yaehmop tightbind/eht_parms.dat @ 1a1c344cf44ca7fdf295901e1060f4b259dba15e"
    ),
    "nist-lda": (
        "NIST atomic reference data for electronic structure calculations, LDA, non-relativistic, neutral "
        "atoms: S. Kotochigova, Z. H. Levine, E. L. Shirley, M. D. Stiles, C. W. Clark, Phys. Rev. A 55, "
        "191 (1997); values via github.com/certik/dftatom tests/lda/nonrel_energies.dat "
        "@ 7c3c779337aa3091b19c756dc0aad67e876dedf3, Hartree converted to eV (CODATA 2018)"
    ),
})
_UNIT_EV = {"yaehmop": 1.0, "nist-lda": HARTREE_EV}  # source tag -> eV per unit of the raw table

Y, N = "yaehmop", "nist-lda"
# symbol -> {l: (value in the source's unit, source tag)}; "yaehmop" values in eV, "nist-lda" in Hartree.
# Generated from the two files named above (every YAeHMOP non-zero IP; NIST for the remaining valence
# orbitals of the ano-valence basis); the comment names the NIST orbital.
_RAW = {
    "H": {"s": (-13.600, Y)},
    "He": {"s": (-23.400, Y)},
    "Li": {"s": (-5.400, Y), "p": (-3.500, Y)},
    "Be": {"s": (-10.000, Y), "p": (-6.000, Y)},
    "B": {"s": (-15.200, Y), "p": (-8.500, Y)},
    "C": {"s": (-21.400, Y), "p": (-11.400, Y)},
    "N": {"s": (-26.000, Y), "p": (-13.400, Y)},
    "O": {"s": (-32.300, Y), "p": (-14.800, Y)},
    "F": {"s": (-40.000, Y), "p": (-18.100, Y)},
    "Ne": {"s": (-43.200, Y), "p": (-20.000, Y)},
    "Na": {"s": (-5.100, Y), "p": (-3.000, Y)},
    "Mg": {"s": (-9.000, Y), "p": (-4.500, Y)},
    "Al": {"s": (-12.300, Y), "p": (-6.500, Y)},
    "Si": {"s": (-17.300, Y), "p": (-9.200, Y)},
    "P": {"s": (-18.600, Y), "p": (-14.000, Y)},
    "S": {"s": (-20.000, Y), "p": (-11.000, Y)},
    "Cl": {"s": (-26.300, Y), "p": (-14.200, Y)},
    "Ar": {"s": (-0.883384, N), "p": (-0.382330, N)},  # NIST: 3s 3p
    "K": {"s": (-4.340, Y), "p": (-2.730, Y)},
    "Ca": {"s": (-7.000, Y), "p": (-4.000, Y)},
    "Sc": {"s": (-8.870, Y), "p": (-2.750, Y), "d": (-8.510, Y)},
    "Ti": {"s": (-8.970, Y), "p": (-5.440, Y), "d": (-10.810, Y)},
    "V": {"s": (-8.810, Y), "p": (-5.520, Y), "d": (-11.000, Y)},
    "Cr": {"s": (-8.660, Y), "p": (-5.240, Y), "d": (-11.220, Y)},
    "Mn": {"s": (-9.750, Y), "p": (-5.890, Y), "d": (-11.670, Y)},
    "Fe": {"s": (-9.100, Y), "p": (-5.320, Y), "d": (-12.600, Y)},
    "Co": {"s": (-9.210, Y), "p": (-5.290, Y), "d": (-13.180, Y)},
    "Ni": {"s": (-10.950, Y), "p": (-6.270, Y), "d": (-14.200, Y)},
    "Cu": {"s": (-11.400, Y), "p": (-6.060, Y), "d": (-14.000, Y)},
    "Zn": {"s": (-12.410, Y), "p": (-6.530, Y), "d": (-0.398944, N)},  # NIST: 3d
    "Ga": {"s": (-14.580, Y), "p": (-6.750, Y), "d": (-0.736204, N)},  # NIST: 3d
    "Ge": {"s": (-16.000, Y), "p": (-9.000, Y), "d": (-1.117316, N)},  # NIST: 3d
    "As": {"s": (-16.220, Y), "p": (-12.160, Y), "d": (-1.542767, N)},  # NIST: 3d
    "Se": {"s": (-20.500, Y), "p": (-14.400, Y), "d": (-2.011392, N)},  # NIST: 3d
    "Br": {"s": (-22.070, Y), "p": (-13.100, Y), "d": (-2.522110, N)},  # NIST: 3d
    "Kr": {"s": (-0.820574, N), "p": (-0.346340, N), "d": (-3.074109, N)},  # NIST: 4s 4p 3d
    "Rb": {"s": (-4.180, Y), "p": (-2.600, Y)},
    "Sr": {"s": (-6.620, Y), "p": (-3.920, Y)},
    "Y": {"s": (-0.150727, N), "d": (-0.108691, N)},  # NIST: 5s 4d
    "Zr": {"s": (-9.870, Y), "p": (-6.760, Y), "d": (-11.180, Y)},
    "Nb": {"s": (-10.100, Y), "p": (-6.860, Y), "d": (-12.100, Y)},
    "Mo": {"s": (-8.340, Y), "p": (-5.240, Y), "d": (-10.500, Y)},
    "Tc": {"s": (-10.070, Y), "p": (-5.400, Y), "d": (-12.820, Y)},
    "Ru": {"s": (-10.400, Y), "p": (-6.870, Y), "d": (-14.900, Y)},
    "Rh": {"s": (-8.090, Y), "p": (-4.570, Y), "d": (-12.500, Y)},
    "Pd": {"s": (-7.320, Y), "p": (-3.750, Y), "d": (-12.020, Y)},
    "Ag": {"s": (-0.157408, N), "d": (-0.298706, N)},  # NIST: 5s 4d
    "Cd": {"s": (-11.800, Y), "p": (-8.200, Y), "d": (-0.470530, N)},  # NIST: 4d
    "In": {"s": (-12.600, Y), "p": (-6.190, Y), "d": (-0.730481, N)},  # NIST: 4d
    "Sn": {"s": (-16.160, Y), "p": (-8.320, Y), "d": (-1.004952, N)},  # NIST: 4d
    "Sb": {"s": (-18.800, Y), "p": (-11.700, Y), "d": (-1.297338, N)},  # NIST: 4d
    "Te": {"s": (-20.800, Y), "p": (-14.800, Y), "d": (-1.608381, N)},  # NIST: 4d
    "I": {"s": (-18.000, Y), "p": (-12.700, Y), "d": (-1.938179, N)},  # NIST: 4d
    "Xe": {"s": (-0.672086, N), "p": (-0.309835, N), "d": (-2.286666, N)},  # NIST: 5s 5p 4d
    "Cs": {"s": (-3.880, Y), "p": (-2.490, Y)},
    "Ba": {"s": (-0.118967, N)},  # NIST: 6s
    "La": {"s": (-7.670, Y), "p": (-5.010, Y), "d": (-8.210, Y)},
    "Ce": {"s": (-4.970, Y), "p": (-4.970, Y), "d": (-6.430, Y), "f": (-11.280, Y)},
    "Pr": {"s": (-0.124465, N), "f": (-0.155139, N)},  # NIST: 6s 4f
    "Nd": {"s": (-0.125796, N), "f": (-0.179509, N)},  # NIST: 6s 4f
    "Pm": {"s": (-0.127053, N), "f": (-0.200159, N)},  # NIST: 6s 4f
    "Sm": {"s": (-4.860, Y), "p": (-4.860, Y), "d": (-6.060, Y), "f": (-11.280, Y)},
    "Eu": {"s": (-0.129426, N), "f": (-0.232773, N)},  # NIST: 6s 4f
    "Gd": {"s": (-5.440, Y), "p": (-5.440, Y), "d": (-6.060, Y), "f": (-11.280, Y)},
    "Tb": {"s": (-0.131677, N), "f": (-0.256311, N)},  # NIST: 6s 4f
    "Dy": {"s": (-0.132769, N), "f": (-0.265302, N)},  # NIST: 6s 4f
    "Ho": {"s": (-0.133845, N), "f": (-0.272677, N)},  # NIST: 6s 4f
    "Er": {"s": (-0.134905, N), "f": (-0.278577, N)},  # NIST: 6s 4f
    "Tm": {"s": (-0.135953, N), "f": (-0.283120, N)},  # NIST: 6s 4f
    "Yb": {"s": (-5.350, Y), "p": (-5.350, Y), "d": (-5.210, Y), "f": (-13.860, Y)},
    "Lu": {"s": (-6.050, Y), "p": (-6.050, Y), "d": (-5.120, Y), "f": (-22.400, Y)},
    "Hf": {"s": (-4.840, Y), "p": (-4.840, Y), "d": (-6.560, Y)},
    "Ta": {"s": (-10.100, Y), "p": (-6.860, Y), "d": (-12.100, Y)},
    "W": {"s": (-8.260, Y), "p": (-5.170, Y), "d": (-10.370, Y)},
    "Re": {"s": (-9.360, Y), "p": (-5.960, Y), "d": (-12.660, Y)},
    "Os": {"s": (-8.170, Y), "p": (-4.810, Y), "d": (-11.840, Y)},
    "Ir": {"s": (-11.360, Y), "p": (-4.500, Y), "d": (-12.170, Y)},
    "Pt": {"s": (-9.077, Y), "p": (-5.475, Y), "d": (-12.590, Y)},
    "Au": {"s": (-10.920, Y), "p": (-5.550, Y), "d": (-15.070, Y)},
    "Hg": {"s": (-13.680, Y), "p": (-8.470, Y), "d": (-17.500, Y)},
    "Tl": {"s": (-11.600, Y), "p": (-5.800, Y), "d": (-0.674544, N)},  # NIST: 5d
    "Pb": {"s": (-15.700, Y), "p": (-8.000, Y), "d": (-0.902393, N)},  # NIST: 5d
    "Bi": {"s": (-15.190, Y), "p": (-7.790, Y), "d": (-1.139408, N)},  # NIST: 5d
    "Po": {"s": (-0.493528, N), "p": (-0.217889, N), "d": (-1.386458, N)},  # NIST: 6s 6p 5d
    "At": {"s": (-0.560189, N), "p": (-0.255453, N), "d": (-1.643758, N)},  # NIST: 6s 6p 5d
    "Rn": {"s": (-0.626570, N), "p": (-0.293180, N), "d": (-1.911329, N)},  # NIST: 6s 6p 5d
    "Fr": {"s": (-0.076176, N)},  # NIST: 7s
    "Ra": {"s": (-0.113732, N)},  # NIST: 7s
    "Ac": {"s": (-5.190, Y), "p": (-5.190, Y), "d": (-4.790, Y)},
    "Th": {"s": (-5.390, Y), "p": (-5.390, Y), "d": (-10.110, Y), "f": (-9.640, Y)},
    "Pa": {"s": (-5.410, Y), "p": (-5.410, Y), "d": (-5.080, Y), "f": (-0.316813, N)},  # NIST: 5f
    "U": {"s": (-5.500, Y), "p": (-5.500, Y), "d": (-9.190, Y), "f": (-10.620, Y)},
    "Np": {"s": (-5.600, Y), "p": (-5.600, Y), "d": (-5.110, Y)},
    "Lr": {"s": (-6.740, Y), "p": (-6.740, Y), "d": (-4.110, Y)},
}
del Y, N


@dataclass(frozen=True)
class OrbitalEnergy:
    """One valence-orbital ionisation energy.

    Attributes
    ----------
    energy : float, eV
        h_l, negative.
    source : str
        Key of `SOURCES`.
    """

    energy: float
    source: str


def _build() -> MappingProxyType:
    table = {}
    for symbol, entries in _RAW.items():
        table[symbol] = MappingProxyType({
            _L.index(ang): OrbitalEnergy(value * _UNIT_EV[tag], tag) for ang, (value, tag) in entries.items()
        })
    return MappingProxyType(table)


#: Element symbol -> angular momentum l -> OrbitalEnergy (eV, with its source tag).
TABLE = _build()


def orbital_energy(symbol: str, l: int) -> float:  # noqa: E741 (the standard name of the angular momentum)
    """h_l of an element in eV (negative).

    Raises
    ------
    InputError
        The table has no value for this element and angular momentum (names both).
    """
    entry = TABLE.get(symbol, {}).get(l)
    if entry is None:
        orbital = _L[l] if 0 <= l < len(_L) else f"l={l}"
        known = TABLE.get(symbol)
        have = f"; it has {', '.join(_L[k] for k in sorted(known))}" if known else ""
        raise InputError(
            f"no extended-Hückel energy for the {symbol} {orbital} orbital (neither YAeHMOP's table nor "
            f"the NIST LDA atom has one{have})"
        )
    return entry.energy


def check_parameters(k: float, weighted: bool) -> None:
    """ParameterError unless K and `weighted` are valid (declarations `HUCKEL_K`, `HUCKEL_WEIGHTED`)."""
    HUCKEL_K.check(k)
    HUCKEL_WEIGHTED.check(weighted)


def coupling_matrix(h: Any, k: float = K_DEFAULT, weighted: bool = False) -> np.ndarray:
    """M with H_μν = M_μν S_μν off the on-site diagonal: M_μν = K_μν (h_μ + h_ν) / 2.

    Parameters
    ----------
    h : array_like of shape (n,), negative (any energy unit; M has the same)
        Orbital energies.
    k : float in (1, inf)
        Wolfsberg-Helmholz constant.
    weighted : bool
        Use Ammeter's K_μν = K + Δ² + Δ⁴(1 − K), Δ = (h_μ − h_ν)/(h_μ + h_ν); else K_μν = K.

    Returns
    -------
    ndarray of shape (n, n), float64, symmetric
    """
    check_parameters(k, weighted)
    h = np.ascontiguousarray(h, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(h)) or np.any(h >= 0.0):
        raise ParameterError("orbital energies h must be finite and negative")
    total = h[:, None] + h[None, :]
    if not weighted:
        return 0.5 * k * total
    delta2 = ((h[:, None] - h[None, :]) / total) ** 2
    return 0.5 * (k + delta2 + delta2 * delta2 * (1.0 - k)) * total


def provenance(symbols: Iterable[str] | None = None) -> dict:
    """JSON-able record of the table for the store's attributes: sources and the values used.

    Parameters
    ----------
    symbols : iterable of str, optional
        Restrict the ``values`` to these elements (default: the whole table).

    Returns
    -------
    dict
        ``{"unit": "eV", "sources": {tag: citation}, "values": {symbol: {"s": [h, tag], ...}}}``.
    """
    chosen = sorted(TABLE) if symbols is None else sorted(set(symbols) & set(TABLE))
    return {
        "unit": "eV",
        "sources": dict(SOURCES),
        "values": {s: {_L[ang]: [e.energy, e.source] for ang, e in sorted(TABLE[s].items())} for s in chosen},
    }
