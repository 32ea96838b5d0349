"""Contracted real spherical Gaussian basis sets (l <= 3) from basis_set_exchange.

The default ``"ano-valence"`` basis applies the valence-minimal rule of DESIGN.md §3 to
basis_set_exchange's ``ANO-RCC-MB``: per element only the outermost contraction (the last
coefficient column of the last shell block) of each valence angular momentum is kept.
Any other basis_set_exchange basis can be named; then every contracted function is kept.

Primitives with an exponent below ``exp_to_discard`` (Bohr⁻²) are dropped and the
contraction is renormalised; a contraction left without primitives is dropped.

Conventions follow PySCF: shells of an element are grouped by increasing l (stable, as PySCF's
``format_basis`` sorts them), functions are real solid harmonics, ordered p: x, y, z and
m = -l..l for l >= 2, each contracted function normalised to one. The coefficients of a
`Shell` multiply *normalised* primitives (as basis_set_exchange and PySCF list them);
`Shell.kernel_coefficients` folds in the primitive norms for the integral kernels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from .errors import InputError, ParameterError
from .params import Param

__all__ = [
    "DEFAULT_BASIS",
    "L_MAX",
    "BasisSet",
    "Shell",
    "load_basis",
    "n_ao",
    "valence_electrons",
]

DEFAULT_BASIS = "ano-valence"
#: Run parameters of the basis, checked by `load_basis` (listed in `sporep_hpc.config.RUN_PARAMETERS`).
BASIS = Param("basis", DEFAULT_BASIS, "Gaussian basis (ano-valence or a basis_set_exchange name)", kind=str)
EXP_TO_DISCARD = Param("exp_to_discard", 0.1, "primitives with smaller exponents are dropped", low=0.0,
                       closed="left", unit="Bohr⁻²")
L_MAX = 3
_ANO_SOURCE = "ANO-RCC-MB"

# Valence-minimal rule (DESIGN.md §3): (first Z, last Z, kept angular momenta, core electrons).
# The valence electrons of an element are Z minus the electrons of the shells below the kept ones.
# Z > 86 is not in DESIGN.md; it is extended by analogy (Fr, Ra: s; Ac: s, d; Th-Lr: s, d, f).
_VALENCE_RULE: tuple[tuple[int, int, tuple[int, ...], int], ...] = (
    (1, 2, (0,), 0),  # H, He
    (3, 4, (0,), 2),  # Li, Be
    (5, 10, (0, 1), 2),  # B-Ne
    (11, 12, (0,), 10),  # Na, Mg
    (13, 18, (0, 1), 10),  # Al-Ar
    (19, 20, (0,), 18),  # K, Ca
    (21, 30, (0, 2), 18),  # Sc-Zn
    (31, 36, (0, 1, 2), 18),  # Ga-Kr
    (37, 38, (0,), 36),  # Rb, Sr
    (39, 48, (0, 2), 36),  # Y-Cd
    (49, 54, (0, 1, 2), 36),  # In-Xe
    (55, 56, (0,), 54),  # Cs, Ba
    (57, 57, (0, 2), 54),  # La
    (58, 71, (0, 2, 3), 54),  # Ce-Lu
    (72, 80, (0, 2), 68),  # Hf-Hg
    (81, 86, (0, 1, 2), 68),  # Tl-Rn
    (87, 88, (0,), 86),  # Fr, Ra (extension)
    (89, 89, (0, 2), 86),  # Ac (extension)
    (90, 103, (0, 2, 3), 86),  # Th-Lr (extension)
)

_SYMBOLS = (
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm "
    "Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf Es Fm Md No "
    "Lr Rf Db Sg Bh Hs Mt Ds Rg Cn Nh Fl Mc Lv Ts Og"
).split()
_Z = {s: i + 1 for i, s in enumerate(_SYMBOLS)}


def atomic_number(symbol: str) -> int:
    """Atomic number of an element symbol; InputError if the symbol is not an element."""
    try:
        return _Z[symbol]
    except KeyError as exc:
        raise InputError(f"unknown element symbol {symbol!r}") from exc


def _valence_rule(z: int) -> tuple[tuple[int, ...], int]:
    for first, last, ls, core in _VALENCE_RULE:
        if first <= z <= last:
            return ls, core
    raise KeyError(z)


def _radial_norm(ang: int, exponents: np.ndarray) -> np.ndarray:
    """1/sqrt(∫ r^(2l+2) exp(-2 a r²) dr): the norm of a primitive radial function r^l exp(-a r²)."""
    integral = math.gamma(ang + 1.5) / (2.0 * (2.0 * exponents) ** (ang + 1.5))
    return 1.0 / np.sqrt(integral)


def _normalised(ang: int, exponents: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """Rescale coefficients of normalised primitives so the contracted function has unit norm."""
    n = _radial_norm(ang, exponents)
    d = coefficients * n
    p = exponents[:, None] + exponents[None, :]
    overlap = math.gamma(ang + 1.5) / (2.0 * p ** (ang + 1.5))  # ∫ r^(2l+2) exp(-(a+b) r²) dr
    norm2 = float(d @ overlap @ d)
    return coefficients / math.sqrt(norm2)


@dataclass(frozen=True, eq=False)
class Shell:
    """One contracted real spherical Gaussian shell (2l+1 functions) on one element.

    Attributes
    ----------
    l : int
        Angular momentum, 0 <= l <= 3.
    exponents : ndarray of shape (n_prim,), float64, Bohr⁻²
        Primitive exponents (read-only).
    coefficients : ndarray of shape (n_prim,), float64
        Contraction coefficients of *normalised* primitives, scaled so the contracted
        function has unit norm (read-only). This is the PySCF basis format.
    """

    l: int  # noqa: E741 (the standard name of the angular momentum)
    exponents: np.ndarray
    coefficients: np.ndarray

    def __post_init__(self):
        for name in ("exponents", "coefficients"):
            a = np.array(getattr(self, name), dtype=np.float64).reshape(-1)
            a.setflags(write=False)
            object.__setattr__(self, name, a)
        if self.exponents.shape != self.coefficients.shape or len(self.exponents) == 0:
            raise ParameterError("exponents and coefficients must be equally long and non-empty")
        if not 0 <= self.l <= L_MAX:
            raise ParameterError(f"l must be an integer in [0, {L_MAX}]; got {self.l!r}")
        bare = self.coefficients * _radial_norm(self.l, self.exponents)
        bare.setflags(write=False)
        object.__setattr__(self, "_bare", bare)

    @property
    def n_functions(self) -> int:
        """Number of spherical functions, 2l + 1."""
        return 2 * self.l + 1

    @property
    def kernel_coefficients(self) -> np.ndarray:
        """Coefficients of the bare primitives r^l exp(-a r²) (primitive radial norms folded in)."""
        return self._bare

    def to_pyscf(self) -> list:
        """This shell in PySCF's internal basis format ``[l, [exp, coef], ...]``."""
        pairs = zip(self.exponents, self.coefficients, strict=True)
        return [self.l, *[[float(e), float(c)] for e, c in pairs]]


@dataclass(frozen=True, eq=False)
class BasisSet:
    """A basis set: contracted shells and valence-electron counts per element.

    Attributes
    ----------
    name : str
        Basis name as given (``"ano-valence"`` or a basis_set_exchange name).
    exp_to_discard : float
        Primitives with smaller exponents (Bohr⁻²) were dropped.
    shells : Mapping[str, tuple[Shell, ...]]
        Element symbol -> shells in basis order.
    valence : Mapping[str, int]
        Element symbol -> electrons the basis' shells describe (see `valence_electrons`).
    """

    name: str
    exp_to_discard: float
    shells: Mapping[str, tuple[Shell, ...]] = field(repr=False)
    valence: Mapping[str, int] = field(repr=False)
    unsupported: Mapping[str, str] = field(default_factory=dict, repr=False)

    def element(self, symbol: str) -> tuple[Shell, ...]:
        """Shells of one element; InputError naming element and basis if absent."""
        try:
            return self.shells[symbol]
        except KeyError as exc:
            why = f" ({self.unsupported[symbol]})" if symbol in self.unsupported else ""
            raise InputError(f"element {symbol} not in basis {self.name!r}{why}") from exc

    def n_ao(self, symbol: str) -> int:
        """Number of spherical functions on one atom of `symbol`."""
        return sum(s.n_functions for s in self.element(symbol))

    def to_pyscf(self, symbols: Iterable[str]) -> dict[str, list]:
        """The basis of the given elements in PySCF's format (for tests and benchmarks)."""
        return {s: [sh.to_pyscf() for sh in self.element(s)] for s in set(symbols)}


def _shell_columns(block: dict) -> list[tuple[int, np.ndarray]]:
    """The contracted functions of one basis_set_exchange shell block, as (l, coefficients) pairs."""
    ams = [int(x) for x in block["angular_momentum"]]
    columns = [np.array([float(c) for c in col]) for col in block["coefficients"]]
    if len(ams) > 1:  # SP-type block: one column per angular momentum
        return list(zip(ams, columns, strict=True))
    return [(ams[0], col) for col in columns]


def _make_shell(ang: int, exps: np.ndarray, coefs: np.ndarray, exp_to_discard: float) -> Shell | None:
    keep = (exps >= exp_to_discard) & (coefs != 0.0)
    if not keep.any():
        return None
    e, c = exps[keep], coefs[keep]
    return Shell(ang, e, _normalised(ang, e, c))


def _fetch(name: str) -> dict:
    import basis_set_exchange as bse

    try:
        return bse.get_basis(name)
    except (KeyError, RuntimeError) as exc:
        raise ParameterError(f"basis {name!r} not found in basis_set_exchange") from exc


@functools.lru_cache(maxsize=16)
def _load(name: str, exp_to_discard: float) -> BasisSet:
    ano = name.lower() == DEFAULT_BASIS
    data = _fetch(_ANO_SOURCE if ano else name)
    shells: dict[str, tuple[Shell, ...]] = {}
    valence: dict[str, int] = {}
    unsupported: dict[str, str] = {}
    for zkey, element in data["elements"].items():
        z = int(zkey)
        if z > len(_SYMBOLS) or "electron_shells" not in element:
            continue
        symbol = _SYMBOLS[z - 1]
        blocks = element["electron_shells"]
        if ano:
            try:
                kept_l, core = _valence_rule(z)
            except KeyError:
                continue
            outermost: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            for block in blocks:  # the last column of the last block with that l wins
                exps = np.array([float(x) for x in block["exponents"]])
                for ang, col in _shell_columns(block):
                    outermost[ang] = (exps, col)
            if any(ang not in outermost for ang in kept_l):
                continue
            candidates = [(ang, *outermost[ang]) for ang in kept_l]
            n_elec = z - core
        else:
            candidates = []
            for block in blocks:
                exps = np.array([float(x) for x in block["exponents"]])
                candidates += [(ang, exps, col) for ang, col in _shell_columns(block)]
            candidates.sort(key=lambda c: c[0])  # PySCF order: shells grouped by l (stable)
            n_elec = z - int(element.get("ecp_electrons", 0))
        if any(ang > L_MAX for ang, _, _ in candidates):
            top = max(ang for ang, _, _ in candidates)
            unsupported[symbol] = f"it has l = {top} functions; only l <= {L_MAX} are supported"
            continue
        made = [_make_shell(ang, e, c, exp_to_discard) for ang, e, c in candidates]
        kept = tuple(s for s in made if s is not None)
        if not kept:
            unsupported[symbol] = f"no primitive has an exponent >= exp_to_discard = {exp_to_discard:g}"
            continue
        shells[symbol] = kept
        valence[symbol] = n_elec
    return BasisSet(name, exp_to_discard, MappingProxyType(shells), MappingProxyType(valence),
                    MappingProxyType(unsupported))


def load_basis(name: str = BASIS.default, exp_to_discard: float = EXP_TO_DISCARD.default) -> BasisSet:
    """Load (and cache) a basis set.

    Parameters
    ----------
    name : str
        ``"ano-valence"`` (valence-minimal ANO-RCC-MB, DESIGN.md §3) or any basis_set_exchange name.
    exp_to_discard : float
        Drop primitives with exponents below this (Bohr⁻², >= 0) and renormalise.

    Returns
    -------
    BasisSet
        Cached per (name, exp_to_discard). Elements whose basis needs l > 3 are absent.

    Raises
    ------
    ParameterError
        Unknown basis name or invalid `exp_to_discard`.
    """
    BASIS.check(name)
    EXP_TO_DISCARD.check(exp_to_discard)
    key = DEFAULT_BASIS if name.lower() == DEFAULT_BASIS else name
    return _load(key, float(exp_to_discard))


def _as_basis(basis: str | BasisSet) -> BasisSet:
    return basis if isinstance(basis, BasisSet) else load_basis(basis)


def n_ao(species_symbols: Iterable[str], basis: str | BasisSet = DEFAULT_BASIS) -> int:
    """Number of spherical basis functions of a structure (one symbol per atom).

    Used by the cost model; raises InputError for an element the basis lacks.
    """
    b = _as_basis(basis)
    return sum(b.n_ao(s) for s in species_symbols)


def valence_electrons(symbols: Iterable[str], basis: str | BasisSet = DEFAULT_BASIS) -> int:
    """Electrons described by the basis' shells, summed over atoms (one symbol per atom).

    Rule: for ``ano-valence`` an atom contributes Z minus the electrons of the shells below the
    kept valence shells (e.g. Si 4, Ti 4 (3d4s), O 6, Ba 2, Ce 4 (4f5d6s), Ga 13 (3d4s4p),
    Hf 4 (4f¹⁴ counted as core)); for any other basis Z minus the basis' ECP electrons.
    This is the n_electrons of operator spectra (Fermi level). InputError if an element is absent.
    """
    b = _as_basis(basis)
    total = 0
    for s in symbols:
        b.element(s)
        total += b.valence[s]
    return total
