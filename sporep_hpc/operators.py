"""Operator spectra: periodic Gaussian-orbital overlap, kinetic and extended-Hückel operators.

DESIGN.md §3 "Operators": for lattice translations T (Bohr),
    S_μν(k) = Σ_T e^{ik·T} ⟨χ_μ(r − R_μ) | χ_ν(r − R_ν − T)⟩,
    T_μν(k) = Σ_T e^{ik·T} ⟨χ_μ(r − R_μ) | −½∇² | χ_ν(r − R_ν − T)⟩,
the same convention as PySCF's ``Cell.pbc_intor(..., kpts=...)``. Atoms are used where the structure
puts them (no wrapping), so the matrices equal PySCF's for the same Cartesian coordinates.
The extended-Hückel operator (DESIGN.md §8.3) needs no integrals of its own: its real-space blocks are
H_T = M ∘ S_T with M_μν = K_μν (h_μ + h_ν)/2 (`sporep_hpc.huckel.coupling_matrix`), minus (K − 1) h_μ on
the diagonal of H_0, an O(n²) scaling per translation; phased like T_T, this is
H_μν(k) = K/2 (h_μ + h_ν) S_μν(k) − (K − 1) h_μ δ_μν. Its lattice sum is screened on S (`precision` then
bounds a neglected H element by max|K h| · precision, at most a few times `precision` Hartree).

Pipeline (all numerics in ext/): real-space blocks S_T, T_T (or H_T) for T = 0 and one of each ±T pair within
the screening radius (`integrals.lattice_blocks`, Obara–Saika, OpenMP over shell pairs; S_{-T} = S_T^T),
then all k-points at once with one real GEMM on the stacked phases cos(2πk·n), sin(2πk·n)
(`integrals.bloch_phase`; the blocks are real, so this is the complex GEMM without its zero imaginary
half) giving H(k) with X(k) = H(k) + H(k)^H, then the eigenvalues
(`eigensolve.eig_batch`, OpenMP over k-points, the zhegvd sequence or canonical orthogonalisation).
Real symmetric LAPACK (the dsygvd sequence) is used at time-reversal-invariant k (2k ≡ 0) and, for
crystals with an inversion centre, at every k: inversion and time reversal together make X(k) real in
a basis of ± combinations of inversion partners (`_real_form`, an O(n²) change of basis in C), which
roughly halves the eigenvalue cost. The real form is used only if its imaginary residual is below
max(1e-11, 10 precision) Hartree; otherwise (an input that is only nearly centrosymmetric) the complex
path runs.

Screening: a primitive pair contributes at most
    |c_a c_b| (π/p)^{3/2} e^{−μR²} (|PA| + p^{−½})^{l_a} (|PB| + p^{−½})^{l_b}   (× a kinetic factor)
to a matrix element (p = a + b, μ = ab/p, R the centre distance); pairs (and translations) whose bound
is below `precision` are skipped.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

from ._ext import load
from ._validation import check_choice
from .bands import BandStructure
from .basis import BASIS, EXP_TO_DISCARD, BasisSet, load_basis
from .errors import InputError, ParameterError
from .huckel import (
    HARTREE_EV,
    HUCKEL_K,
    HUCKEL_WEIGHTED,
    check_parameters,
    coupling_matrix,
    orbital_energy,
)
from .kpoints import KDENSITY, KGRID_ROUNDING, irreducible_kpoints
from .params import Param
from .structures import CompactStructure, as_cell
from .threads import resolve_threads

__all__ = [
    "BOHR_ANGSTROM",
    "HARTREE_EV",
    "OPERATORS",
    "PRECISION_MIN",
    "SpectrumStats",
    "operator_matrices",
    "operator_spectrum",
    "spectrum_with_stats",
]

BOHR_ANGSTROM = 0.529177210903  # CODATA 2018
OPERATORS = ("kinetic", "overlap", "huckel")
#: Smallest lattice-sum threshold: 10⁻³⁰ of the largest primitive overlap is far below what double
#: precision resolves, and the screening radius (hence the memory) grows as √ln(1/precision).
PRECISION_MIN = 1e-30

#: Run parameters of the spectrum, checked here (`_check_common`) with the same declarations the run's
#: configuration uses (`sporep_hpc.config.RUN_PARAMETERS`): what a run accepts, these functions accept
#: (the basis' are `basis.BASIS` and `basis.EXP_TO_DISCARD`, Hückel's `huckel.HUCKEL_K` and
#: `huckel.HUCKEL_WEIGHTED`, checked by `load_basis` and `huckel.check_parameters`).
OPERATOR = Param("operator", "kinetic", "operator whose generalised spectrum is computed", kind=str,
                 choices=OPERATORS)
PRECISION = Param("precision", 1e-12, "lattice-sum screening threshold", low=PRECISION_MIN, high=1e-3)
LINDEP = Param("lindep", 1e-8, "overlap eigenvalues below this are dropped (canonical orthogonalisation)",
               low=0.0, high=1.0, closed="neither")
_PHASED_BYTES = 256 * 2**20  # k-point chunks keep the phased matrices below this (the blocks are extra)


# ----------------------------------------------------------------------------- spherical harmonics
def _cart_powers() -> np.ndarray:
    """(20, 3) int32 cartesian powers for l = 0..3 in PySCF order (lx descending, then ly)."""
    rows = [
        (lx, ly, ang - lx - ly)
        for ang in range(4)
        for lx in range(ang, -1, -1)
        for ly in range(ang - lx, -1, -1)
    ]
    return np.array(rows, dtype=np.int32)


def _poly(norm: float, terms: dict[tuple[int, int, int], float]) -> dict[tuple[int, int, int], float]:
    return {key: norm * value for key, value in terms.items()}


def _cart_to_sph() -> np.ndarray:
    """(4, 7, 10) real solid harmonics (unit norm on the sphere) in cartesian monomials, PySCF order."""
    pows = _cart_powers()
    out = np.zeros((4, 7, 10))
    q = 1.0 / math.pi
    # polynomials {(lx, ly, lz): coefficient}, m = -l..l (p: x, y, z as PySCF); no Condon-Shortley sign
    table = {
        0: [_poly(math.sqrt(q / 4), {(0, 0, 0): 1.0})],
        1: [_poly(math.sqrt(3 * q / 4), {key: 1.0}) for key in ((1, 0, 0), (0, 1, 0), (0, 0, 1))],
        2: [
            _poly(math.sqrt(15 * q / 4), {(1, 1, 0): 1.0}),
            _poly(math.sqrt(15 * q / 4), {(0, 1, 1): 1.0}),
            _poly(math.sqrt(5 * q / 16), {(0, 0, 2): 2.0, (2, 0, 0): -1.0, (0, 2, 0): -1.0}),
            _poly(math.sqrt(15 * q / 4), {(1, 0, 1): 1.0}),
            _poly(math.sqrt(15 * q / 16), {(2, 0, 0): 1.0, (0, 2, 0): -1.0}),
        ],
        3: [
            _poly(math.sqrt(35 * q / 32), {(2, 1, 0): 3.0, (0, 3, 0): -1.0}),
            _poly(math.sqrt(105 * q / 4), {(1, 1, 1): 1.0}),
            _poly(math.sqrt(21 * q / 32), {(0, 1, 2): 4.0, (2, 1, 0): -1.0, (0, 3, 0): -1.0}),
            _poly(math.sqrt(7 * q / 16), {(0, 0, 3): 2.0, (2, 0, 1): -3.0, (0, 2, 1): -3.0}),
            _poly(math.sqrt(21 * q / 32), {(1, 0, 2): 4.0, (3, 0, 0): -1.0, (1, 2, 0): -1.0}),
            _poly(math.sqrt(105 * q / 16), {(2, 0, 1): 1.0, (0, 2, 1): -1.0}),
            _poly(math.sqrt(35 * q / 32), {(3, 0, 0): 1.0, (1, 2, 0): -3.0}),
        ],
    }
    for ang, rows in table.items():
        off = ang * (ang + 1) * (ang + 2) // 6
        index = {tuple(pows[off + c]): c for c in range((ang + 1) * (ang + 2) // 2)}
        for m, poly in enumerate(rows):
            for key, value in poly.items():
                out[ang, m, index[key]] = value
    return out


_POWS = _cart_powers()
_C2S = _cart_to_sph()


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class _Cell:
    """A structure in kernel units: lattice rows and atom positions in Bohr, element symbols, a label."""

    lattice: np.ndarray  # (3, 3) Bohr, rows
    coords: np.ndarray  # (n_atoms, 3) Bohr
    symbols: tuple[str, ...]
    label: str


def _as_cell(structure: Any) -> _Cell:
    """A structure (Å, checked by `sporep_hpc.structures.as_cell`) as a `_Cell` (Bohr) with its symbols."""
    cell = as_cell(structure)
    try:
        if isinstance(structure, CompactStructure):
            symbols = structure.symbols
        else:
            symbols = tuple(getattr(site.specie, "symbol", str(site.specie)) for site in structure)
    except (AttributeError, TypeError) as exc:
        raise InputError(f"structure must be a pymatgen Structure; got {type(structure).__name__}") from exc
    label = "".join(f"{e}{n if n > 1 else ''}" for e, n in Counter(symbols).items())  # e.g. 'BaTiO3'
    return _Cell(cell.lattice / BOHR_ANGSTROM, cell.cart / BOHR_ANGSTROM, symbols, label)


def _as_kpoints(kpoints: Any, weights: Any) -> tuple[np.ndarray, np.ndarray]:
    k = np.ascontiguousarray(kpoints, dtype=np.float64)
    if k.ndim == 1 and k.size == 3:
        k = k.reshape(1, 3)
    if k.ndim != 2 or k.shape[1] != 3 or k.shape[0] == 0:
        raise ParameterError(f"kpoints must have shape (n_k, 3), fractional; got {np.shape(kpoints)}")
    if not np.all(np.isfinite(k)):
        raise ParameterError("kpoints must be finite")
    if weights is None:
        w = np.full(len(k), 1.0 / len(k))
    else:
        w = np.ascontiguousarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != (len(k),) or not np.all(np.isfinite(w)) or np.any(w <= 0):
            raise ParameterError(f"weights must be {len(k)} positive numbers; got {np.shape(weights)}")
    return k, w


# ----------------------------------------------------------------------------- shell tables
@dataclass(frozen=True)
class _Shells:
    """Kernel shell table of one structure."""

    table: np.ndarray  # (n_shells, 4) int32: atom, l, n_prim, first AO
    kinds: np.ndarray  # (n_shells,) int64: index into kind_shells
    kind_shells: tuple  # one Shell per (element, shell index) kind
    n_ao: int


def _shell_table(cell: _Cell, basis: BasisSet) -> _Shells:
    rows, kinds, kind_shells = [], [], []
    kind_index: dict[tuple[str, int], int] = {}
    ao = 0
    for atom, sym in enumerate(cell.symbols):
        try:
            shells = basis.element(sym)
        except InputError as exc:
            raise InputError(f"structure {cell.label!r}: {exc}") from exc
        for i, sh in enumerate(shells):
            key = (sym, i)
            if key not in kind_index:
                kind_index[key] = len(kind_shells)
                kind_shells.append(sh)
            kinds.append(kind_index[key])
            rows.append((atom, sh.l, len(sh.exponents), ao))
            ao += sh.n_functions
    if not rows:
        raise InputError(f"structure {cell.label!r}: no basis functions")
    return _Shells(np.array(rows, dtype=np.int32).reshape(-1, 4), np.array(kinds, dtype=np.int64),
                   tuple(kind_shells), ao)


@lru_cache(maxsize=8192)
def _prim_pairs(sa, sb, precision: float, kinetic: bool) -> np.ndarray:
    """(n_pa * n_pb, 6) primitive-pair table of a bra/ket shell pair, by decreasing screening radius.

    Columns a, b, 1/p, μ, c_a c_b (π/p)^{3/2}, r²_max, where r_max bounds the centre distance beyond
    which the pair's bound (module docstring) is below `precision`. r_max is the largest root of
    μr² = C + L(r) (C: log prefactor over precision, L: the polynomial and kinetic logs, increasing
    in r), found by fixed-point iteration from above, which stays above the root at every step.
    """
    a = np.repeat(sa.exponents, len(sb.exponents))
    b = np.tile(sb.exponents, len(sa.exponents))
    ca = np.repeat(sa.kernel_coefficients, len(sb.exponents))
    cb = np.tile(sb.kernel_coefficients, len(sa.exponents))
    p = a + b
    mu = a * b / p
    pref = ca * cb * (np.pi / p) ** 1.5
    sq = 1.0 / np.sqrt(p)
    c0 = np.log(np.abs(pref) + 1e-300) - math.log(precision)

    def logs(r):
        out = sa.l * np.log(b * r / p + sq) + sb.l * np.log(a * r / p + sq)
        if kinetic:
            out = out + np.log(1.0 + b * (2 * sb.l + 3) + 2.0 * b * b * (a * r / p + 2 * sq) ** 2)
        return out

    r = np.full_like(p, 1e3)
    for _ in range(30):
        r = np.sqrt(np.maximum(c0 + logs(r), 0.0) / mu)
    rmax2 = (r * (1 + 1e-6) + 1e-6) ** 2
    table = np.stack([a, b, 1.0 / p, mu, pref, rmax2], axis=1)
    table = np.ascontiguousarray(table[np.argsort(-rmax2, kind="stable")])
    table.setflags(write=False)
    return table


def _pair_tables(shells: _Shells, precision: float, kinetic: bool):
    """Shell pairs (I <= J) with their primitive-pair rows; returns (pairs, pair_rcut2, prim_pairs)."""
    n_sh = len(shells.table)
    ii, jj = np.triu_indices(n_sh)
    n_kind = len(shells.kind_shells)
    code = shells.kinds[ii] * n_kind + shells.kinds[jj]
    used, inverse = np.unique(code, return_inverse=True)
    tables, offsets, rcut2 = [], np.zeros(len(used), dtype=np.int64), np.zeros(len(used))
    start = 0
    for u, c in enumerate(used.tolist()):
        t = _prim_pairs(shells.kind_shells[c // n_kind], shells.kind_shells[c % n_kind], precision, kinetic)
        tables.append(t)
        offsets[u] = start
        rcut2[u] = t[0, 5]
        start += len(t)
    pairs = np.ascontiguousarray(np.stack([ii, jj, offsets[inverse]], axis=1), dtype=np.int32)
    return pairs, np.ascontiguousarray(rcut2[inverse]), np.ascontiguousarray(np.concatenate(tables))


def _translations(cell: _Cell, rcut: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer translations n (n_T, 3) with some atom pair within rcut, and the index of -n for each."""
    from scipy.spatial import cKDTree  # deferred: ~0.5 s to import, needed only by spectra

    lat = cell.lattice
    diffs = (cell.coords[None, :, :] - cell.coords[:, None, :]).reshape(-1, 3)  # R_A - R_B
    dmax = float(np.sqrt(np.max(np.einsum("ij,ij->i", diffs, diffs))))
    inv_cols = np.linalg.norm(np.linalg.inv(lat), axis=0)  # |n_i| <= |T| * ||inv(L)[:, i]||
    nmax = np.floor((rcut + dmax) * inv_cols + 1e-9).astype(np.int64)
    grids = np.meshgrid(*[np.arange(-m, m + 1) for m in nmax], indexing="ij")
    cand = np.stack([g.ravel() for g in grids], axis=1)
    dist, _ = cKDTree(diffs).query(cand @ lat, k=1, distance_upper_bound=rcut * (1 + 1e-12) + 1e-9)
    # the candidate box is symmetric and enumerated in lexicographic order, so the kept set is made
    # symmetric by adding the mirror of each kept point; -n then sits at the mirrored box index
    box = np.isfinite(dist)
    box = box | box[::-1]
    index = np.cumsum(box) - 1
    neg = index[::-1][box].astype(np.int32)
    return np.ascontiguousarray(cand[box]), neg


# ----------------------------------------------------------------------------- real-space blocks
@dataclass(frozen=True)
class _Blocks:
    ints: np.ndarray  # (n_T, 3) integer translations: T = 0 first, then one of each ±T pair
    blocks: np.ndarray  # (n_op, n_T, n_ao, n_ao) real-space blocks, Hartree (op 0: S, 1: T or H)
    n_ao: int
    precision: float
    inversion: _Inversion | None = None
    label: str = ""  # the structure, for error messages


@dataclass(frozen=True)
class _Inversion:
    """An inversion r -> 2c - r of the crystal, on the basis functions.

    Atom A goes to 2c - R_A = R_A' + n_A (n_A integer, fractional units); a function of angular
    momentum l picks up (-1)^l. With d_μ(k) = (-1)^l e^{-2πi k·n_A(μ)} the Bloch matrices obey
    X(k) = M X(k)* M^H, M[μ, μ'] = d_μ, M M* = 1, so X is real in the basis V = M V* (see `_real_form`).
    """

    partner: np.ndarray  # (n_ao,) int: μ'
    parity: np.ndarray  # (n_ao,) float: (-1)^l
    shift: np.ndarray  # (n_ao, 3) float: n_A(μ)


# Largest imaginary part (Hartree) tolerated after the real transform: the lattice-sum truncation
# (~precision) breaks the symmetry slightly; an input that is only nearly centrosymmetric fails the test
# and takes the complex path.
_INVERSION_TOL = 1e-11


def _find_inversion(cell: _Cell, shells: _Shells) -> _Inversion | None:
    """The crystal's inversion mapped onto basis functions, or None.

    Candidate centres 2c = x_A0 + x_A' (A0 the first atom of the rarest element, A' any atom of that
    element); a candidate is accepted when every atom's image 2c - x_A lands on an atom of the same
    element (periodic k-d tree in fractional coordinates, tolerance 1e-8). Exactness of the matrices is
    checked later (`_real_form` residual), so an approximate centre can only cost time, never accuracy.
    """
    from scipy.spatial import cKDTree  # deferred: ~0.5 s to import, needed only by spectra

    frac = cell.coords @ np.linalg.inv(cell.lattice)
    symbols = np.array(cell.symbols)
    kinds, counts = np.unique(symbols, return_counts=True)
    rare = np.nonzero(symbols == kinds[np.argmin(counts)])[0]
    wrapped = frac - np.floor(frac)
    wrapped[wrapped >= 1.0] = 0.0
    tree = cKDTree(wrapped, boxsize=1.0)
    tol = 1e-8
    for other in rare:
        two_c = frac[rare[0]] + frac[other]
        image = two_c - frac
        dist, partner = tree.query(image - np.floor(image), distance_upper_bound=tol)
        if np.all(np.isfinite(dist)) and np.array_equal(symbols[partner], symbols):
            break
    else:
        return None
    atom_shift = np.round(image - frac[partner])
    # AO offsets per atom: the shells of an element are the same on every atom
    table = shells.table
    first_ao = np.zeros(len(frac), dtype=np.int64)
    starts = np.ones(len(table), dtype=bool)
    starts[1:] = table[1:, 0] != table[:-1, 0]
    first_ao[table[starts, 0]] = table[starts, 3]
    ao_atom = np.repeat(table[:, 0], 2 * table[:, 1] + 1)
    ao_l = np.repeat(table[:, 1], 2 * table[:, 1] + 1)
    local = np.arange(shells.n_ao) - first_ao[ao_atom]
    return _Inversion(first_ao[partner[ao_atom]] + local, np.where(ao_l % 2 == 0, 1.0, -1.0),
                      atom_shift[ao_atom])


def _real_form(half: np.ndarray, kpoints: np.ndarray, inv: _Inversion, n_threads: int = 1):
    """Real symmetric V^H X(k) V with X = H + H^H, and the largest imaginary part left (should be ~0).

    half : (n_k, 2, n, n) Re and Im of H(k). V has two non-zeros per column: for a pair μ < μ' the
    columns (e_μ + d_μ' e_μ')/√2 and i(e_μ - d_μ' e_μ')/√2, for μ = μ' the column d_μ^{1/2} e_μ;
    V = M V* makes V^H X V real. Returns (matrices (n_k, n, n) float64, max |imaginary part|).
    """
    eigensolve = load("eigensolve")
    d = inv.parity[None, :] * np.exp(-2j * np.pi * (kpoints @ inv.shift.T))  # (n_k, n)
    mu = np.arange(len(inv.partner))
    lead = mu[mu <= inv.partner]
    fixed = inv.partner[lead] == lead
    pair_lo, pair_hi = lead[~fixed], inv.partner[lead[~fixed]]
    r1 = np.concatenate([lead[fixed], pair_lo, pair_lo]).astype(np.int32)
    r2 = np.concatenate([lead[fixed], pair_hi, pair_hi]).astype(np.int32)
    s2 = 1.0 / math.sqrt(2.0)
    n_k, n_fixed, n_pair = len(kpoints), int(fixed.sum()), len(pair_lo)
    d_partner = s2 * d[:, pair_hi]
    v1 = np.concatenate([np.sqrt(d[:, lead[fixed]]), np.full((n_k, n_pair), s2 + 0j),
                         np.full((n_k, n_pair), 1j * s2)], axis=1)
    v2 = np.concatenate([np.zeros((n_k, n_fixed), dtype=complex), d_partner, -1j * d_partner], axis=1)
    v = np.stack([v1, v2], axis=2)  # (n_k, n, 2) complex
    out = np.empty((n_k, len(mu), len(mu)))
    resid = np.zeros(n_k)
    info = np.zeros(n_k, dtype=np.int32)
    status = eigensolve.real_form(h=half, r1=r1, r2=r2, v=v, out=out, resid=resid, info=info,
                                  n_threads=n_threads)
    if status == eigensolve.NO_MEMORY:
        raise MemoryError(f"real-form workspace for n_ao = {len(mu)}")
    if status != 0:  # pragma: no cover - shapes are built above
        raise RuntimeError(f"real-form kernel refused its inputs (status {status})")
    return out, float(resid.max(initial=0.0))


def _huckel_onsite(cell: _Cell, shells: _Shells) -> np.ndarray:
    """(n_ao,) orbital energies h_μ in Hartree (`sporep_hpc.huckel`); InputError naming the structure."""
    try:
        per_shell = [orbital_energy(cell.symbols[atom], ang) for atom, ang in shells.table[:, :2].tolist()]
    except InputError as exc:
        raise InputError(f"structure {cell.label!r}: {exc}") from exc
    return np.repeat(np.array(per_shell) / HARTREE_EV, 2 * shells.table[:, 1] + 1)


def _add_huckel(blocks: np.ndarray, h: np.ndarray, k: float, weighted: bool) -> None:
    """Fill blocks[1] with H_T = M ∘ S_T (M from `huckel.coupling_matrix`), minus (K − 1) h_μ δ_μν at T = 0.

    O(n² n_T) in place; with S_μμ(0) = 1 the on-site diagonal is h_μ (DESIGN.md §8.3).
    """
    np.multiply(blocks[0], coupling_matrix(h, k, weighted)[None], out=blocks[1])
    diag = np.arange(len(h))
    blocks[1, 0, diag, diag] -= (k - 1.0) * h


def _real_space_blocks(
    cell: _Cell, basis: BasisSet, precision: float, operator: str, n_threads: int,
    huckel_k: float = HUCKEL_K.default, huckel_weighted: bool = HUCKEL_WEIGHTED.default,
) -> _Blocks:
    shells = _shell_table(cell, basis)
    kinetic = operator == "kinetic"
    h = _huckel_onsite(cell, shells) if operator == "huckel" else None
    pairs, pair_r2, prim_pairs = _pair_tables(shells, precision, kinetic)
    ints, neg = _translations(cell, math.sqrt(float(pair_r2.max())))
    trans = np.ascontiguousarray(ints @ cell.lattice)
    # store T = 0 and one of each ±T pair (the lexicographically positive half: the symmetric, sorted
    # list has T = 0 in the middle); S_{-T} = S_T^T gives the rest
    mid = len(ints) // 2
    slot = np.arange(len(ints), dtype=np.int32) - mid
    slot[:mid] = -1
    mslot = np.ascontiguousarray(slot[neg])
    n_op = 1 if operator == "overlap" else 2
    blocks = np.zeros((n_op, len(ints) - mid, shells.n_ao, shells.n_ao))
    s_view = blocks[0]
    t_view = blocks[1] if kinetic else s_view
    status = load("integrals").lattice_blocks(
        atom_xyz=np.ascontiguousarray(cell.coords), shells=shells.table, pairs=pairs, pair_rcut2=pair_r2,
        prim_pairs=prim_pairs, trans=trans, slot=slot, mslot=mslot, c2s=_C2S, cart_pows=_POWS,
        want_kinetic=kinetic, s_out=s_view, t_out=t_view, n_threads=n_threads,
    )
    if status != 0:  # pragma: no cover - the kernel has no failure mode today
        raise InputError(f"structure {cell.label!r}: integral kernel failed (status {status})")
    if h is not None:
        _add_huckel(blocks, h, huckel_k, huckel_weighted)
    ints = ints[mid:]
    nonzero = np.any(blocks != 0.0, axis=(0, 2, 3))
    nonzero[0] = True  # T = 0 stays first
    if not nonzero.all():
        ints, blocks = ints[nonzero], np.ascontiguousarray(blocks[:, nonzero])
    return _Blocks(ints, blocks, shells.n_ao, precision, _find_inversion(cell, shells), cell.label)


def _phased(rs: _Blocks, kpoints: np.ndarray, n_threads: int) -> np.ndarray:
    """(n_op, n_k, 2, n_ao, n_ao): Re and Im of H(k) = ½X_0 + Σ_{T>0} e^{2πi k·n_T} X_T per operator X.

    The full matrix is X(k) = H(k) + H(k)^H (S_{-T} = S_T^T), formed by the eigensolver's fill.
    """
    n_op, n_t, n, _ = rs.blocks.shape
    x = kpoints @ rs.ints.T.astype(np.float64)  # (n_k, n_T), exact phase argument in turns
    x -= np.round(x)
    phases = np.empty((2 * len(kpoints), n_t))
    phases[0::2] = np.cos(2.0 * np.pi * x)
    phases[1::2] = np.sin(2.0 * np.pi * x)
    phases[:, 0] *= 0.5  # T = 0 is counted twice in H + H^H
    out = np.empty((n_op, len(kpoints), 2, n, n))
    status = load("integrals").bloch_phase(
        blocks=rs.blocks.reshape(n_op, n_t, -1), phases=phases, out=out.reshape(n_op, 2 * len(kpoints), -1),
        n_threads=n_threads,
    )
    if status != 0:
        raise InputError(f"structure {rs.label!r}: no lattice translations survived screening")
    return out


@lru_cache(maxsize=1)
def _blas_controller():
    return ThreadpoolController()  # scans the loaded libraries once (a few ms)


def _blas_single_thread():
    """Keep BLAS single-threaded inside our OpenMP regions (threads are decided by n_threads)."""
    return _blas_controller().limit(limits=1, user_api="blas")


# ----------------------------------------------------------------------------- public API
def _check_common(operator: str, precision: float, huckel_k: float, huckel_weighted: bool) -> None:
    OPERATOR.check(operator)
    PRECISION.check(precision)
    check_parameters(huckel_k, huckel_weighted)


def operator_matrices(
    structure: Any,
    kpoints: Any,
    basis: str | BasisSet = BASIS.default,
    exp_to_discard: float = EXP_TO_DISCARD.default,
    precision: float = PRECISION.default,
    n_threads: int | None = None,
    operator: str = OPERATOR.default,
    huckel_k: float = HUCKEL_K.default,
    huckel_weighted: bool = HUCKEL_WEIGHTED.default,
) -> tuple[np.ndarray, np.ndarray]:
    """Overlap and operator matrices at the given k-points (for checks against other codes).

    Parameters
    ----------
    structure : pymatgen.core.Structure
        Lattice and positions in Å (positions used as given, not wrapped).
    kpoints : array_like of shape (n_k, 3), fractional (reciprocal-lattice units)
    basis, exp_to_discard, precision, n_threads, huckel_k, huckel_weighted
        As in `operator_spectrum`.
    operator : {"kinetic", "huckel"}

    Returns
    -------
    overlap : ndarray of shape (n_k, n_ao, n_ao), complex128, dimensionless
    matrix : ndarray of shape (n_k, n_ao, n_ao), complex128, Hartree
        The kinetic T(k) or the extended-Hückel H(k).
    """
    _check_common(operator, precision, huckel_k, huckel_weighted)
    check_choice("operator", operator, ("kinetic", "huckel"))
    cell = _as_cell(structure)
    k, _ = _as_kpoints(kpoints, None)
    bs = basis if isinstance(basis, BasisSet) else load_basis(basis, exp_to_discard)
    nt = resolve_threads(n_threads)
    with _blas_single_thread():
        rs = _real_space_blocks(cell, bs, float(precision), operator, nt, huckel_k, huckel_weighted)
        ph = _phased(rs, k, nt)
    half = ph[:, :, 0] + 1j * ph[:, :, 1]
    mats = half + np.conj(np.swapaxes(half, -1, -2))
    return mats[0], mats[1]


@dataclass(frozen=True)
class SpectrumStats:
    """Sizes and timings of one operator spectrum (for the MPI driver's cost model and logs).

    Attributes
    ----------
    n_ao : int
        Basis functions per cell (= bands).
    n_kpoints : int
    n_translations : int
        Lattice translations whose blocks were kept after screening: T = 0 and one of each ±T pair.
    n_dropped : int
        Largest number of overlap eigenvalues below `lindep` dropped at one k-point (0: none).
    t_integrals : float, s
        Real-space blocks and Bloch phases.
    t_eigen : float, s
        Eigenvalue solves.
    """

    n_ao: int
    n_kpoints: int
    n_translations: int
    n_dropped: int
    t_integrals: float
    t_eigen: float


def spectrum_with_stats(
    structure: Any,
    operator: str = OPERATOR.default,
    basis: str | BasisSet = BASIS.default,
    kpoints: Any = None,
    weights: Any = None,
    kdensity: float = KDENSITY.default,
    exp_to_discard: float = EXP_TO_DISCARD.default,
    precision: float = PRECISION.default,
    lindep: float = LINDEP.default,
    n_threads: int | None = None,
    kgrid_rounding: str = KGRID_ROUNDING.default,
    huckel_k: float = HUCKEL_K.default,
    huckel_weighted: bool = HUCKEL_WEIGHTED.default,
) -> tuple[BandStructure, SpectrumStats]:
    """`operator_spectrum` and its `SpectrumStats` (same arguments): (BandStructure, SpectrumStats)."""
    _check_common(operator, precision, huckel_k, huckel_weighted)
    LINDEP.check(lindep)
    cell = _as_cell(structure)
    bs = basis if isinstance(basis, BasisSet) else load_basis(basis, exp_to_discard)
    if kpoints is None:
        if weights is not None:
            raise ParameterError("weights given without kpoints")
        kpoints, weights = irreducible_kpoints(structure, kdensity=kdensity, rounding=kgrid_rounding)
    k, w = _as_kpoints(kpoints, weights)
    nt = resolve_threads(n_threads)
    with _blas_single_thread():
        t0 = time.perf_counter()
        rs = _real_space_blocks(cell, bs, float(precision), operator, nt, huckel_k, huckel_weighted)
        t_int = time.perf_counter() - t0
        eig, dropped, info, t_phase, t_eig = _spectrum_impl(rs, k, float(lindep), nt)
    if np.any(info):
        bad = int(np.nonzero(info)[0][0])
        raise InputError(
            f"structure {cell.label!r}: eigensolver failed at k-point {bad} {k[bad].tolist()} "
            f"(LAPACK info {int(info[bad])})"
        )
    if operator != "overlap":
        eig *= HARTREE_EV
    n_electrons = sum(bs.valence[s] for s in cell.symbols)
    bands = BandStructure(eig[None], w, n_electrons=n_electrons or None, kpoints=k)
    stats = SpectrumStats(rs.n_ao, len(k), len(rs.ints), int(dropped.max()), t_int + t_phase, t_eig)
    return bands, stats


def _spectrum_impl(rs: _Blocks, k: np.ndarray, lindep: float, n_threads: int):
    """Eigenvalues for clean inputs, k-points in chunks of bounded memory.

    Two operators (S and T or H): the generalized problem, Hartree; one (S): its eigenvalues.
    """
    eigensolve = load("eigensolve")
    n_op, n = rs.blocks.shape[0], rs.n_ao
    generalized = n_op == 2
    chunk = max(1, min(len(k), _PHASED_BYTES // (n_op * 2 * n * n * 8)))
    real_k = np.all(np.abs(2.0 * k - np.round(2.0 * k)) < 1e-12, axis=1).astype(np.int8)
    eig = np.empty((len(k), n))
    dropped = np.zeros(len(k), dtype=np.int32)
    info = np.zeros(len(k), dtype=np.int32)
    t_phase = t_eig = 0.0
    for k0 in range(0, len(k), chunk):
        sl = slice(k0, min(len(k), k0 + chunk))
        t0 = time.perf_counter()
        ph = _phased(rs, k[sl], n_threads)
        t1 = time.perf_counter()
        op_a = n_op - 1
        # A = T or H (or S alone), B = S, as (n_k, 2, n, n) Re/Im planes of the halves H(k), X = H + H^H
        args = dict(a=ph[op_a], b=ph[0], real_k=real_k[sl], generalized=generalized, hermitize=True,
                    lindep=lindep, w=eig[sl], n_dropped=dropped[sl], info=info[sl])
        if rs.inversion is not None and not real_k[sl].all():
            # inversion symmetry: real symmetric matrices at every k (real LAPACK path, ~2-4x cheaper)
            forms = [_real_form(ph[op], k[sl], rs.inversion, n_threads) for op in range(n_op)]
            if max(res for _, res in forms) <= max(_INVERSION_TOL, 10.0 * rs.precision):
                # the full real matrices, one (real) plane each
                args.update(a=forms[op_a][0][:, None], b=forms[0][0][:, None],
                            real_k=np.ones(sl.stop - sl.start, dtype=np.int8), hermitize=False)
        if sl.stop - sl.start >= n_threads:  # threads over k-points, BLAS single-threaded
            status = eigensolve.eig_batch(**args, n_threads=n_threads)
        else:  # fewer k-points than threads (a big cell): threaded BLAS inside LAPACK instead
            with _blas_controller().limit(limits=n_threads, user_api="blas"):
                status = eigensolve.eig_batch(**args, n_threads=1)
        if status == eigensolve.NO_MEMORY:
            raise MemoryError(f"structure {rs.label!r}: eigensolver workspace for n_ao = {n} x {n_threads} "
                              "threads")
        if status == eigensolve.BAD_SHAPE:  # pragma: no cover - shapes are built above
            raise RuntimeError(f"structure {rs.label!r}: eigensolver kernel refused its inputs (n_ao = {n})")
        if status != 0 and not np.any(info[sl]):
            info[sl] = status  # a workspace query failed: report it at the chunk's first k-point
        t_phase += t1 - t0
        t_eig += time.perf_counter() - t1
    return eig, dropped, info, t_phase, t_eig


def operator_spectrum(
    structure: Any,
    operator: str = OPERATOR.default,
    basis: str | BasisSet = BASIS.default,
    kpoints: Any = None,
    weights: Any = None,
    kdensity: float = KDENSITY.default,
    exp_to_discard: float = EXP_TO_DISCARD.default,
    precision: float = PRECISION.default,
    lindep: float = LINDEP.default,
    n_threads: int | None = None,
    kgrid_rounding: str = KGRID_ROUNDING.default,
    huckel_k: float = HUCKEL_K.default,
    huckel_weighted: bool = HUCKEL_WEIGHTED.default,
) -> BandStructure:
    """Spectrum of the kinetic, extended-Hückel (or overlap) operator of a crystal in a Gaussian basis.

    Parameters
    ----------
    structure : pymatgen.core.Structure
        Ordered crystal, Å.
    operator : {"kinetic", "huckel", "overlap"}
        "kinetic": eigenvalues of T(k) c = ε S(k) c, in eV. "huckel": eigenvalues of H(k) c = ε S(k) c
        with the extended-Hückel H of DESIGN.md §8.3 (parameters: `sporep_hpc.huckel`), in eV.
        "overlap": eigenvalues of S(k), which are dimensionless numbers (stored unscaled in the
        eV-labelled eigenvalue field).
    basis : str or BasisSet
        "ano-valence" (default) or any basis_set_exchange name; a loaded `BasisSet` is used as is
        (its own exp_to_discard applies).
    kpoints : array_like of shape (n_k, 3), fractional, optional
        Default: the irreducible Monkhorst-Pack points for `kdensity` (sporep_hpc.kpoints).
    weights : array_like of shape (n_k,), optional
        Default with explicit kpoints: uniform.
    kdensity : float, Å⁻¹
        k-point spacing when `kpoints` is None (default: the run's, `sporep_hpc.kpoints.KDENSITY`).
    exp_to_discard : float, Bohr⁻²
        Primitives with smaller exponents are dropped (basis loading).
    precision : float in [1e-30, 1e-3] (`PRECISION`)
        Screening threshold of the lattice sums (bound on a neglected primitive-pair contribution).
    lindep : float in (0, 1) (`LINDEP`)
        Overlap eigenvalues below this are dropped (canonical orthogonalisation); the missing
        eigenvalues are NaN at the top of each k-point's list.
    n_threads : int, optional
        OpenMP threads (default: `sporep_hpc.threads.resolve_threads`).
    kgrid_rounding : {"ceil", "round"}
        Grid rule when `kpoints` is None (DESIGN.md §3; "round" reproduces the original study's grids).
    huckel_k : float in (1, inf)
        Wolfsberg-Helmholz constant K of the "huckel" operator (default 1.75).
    huckel_weighted : bool
        "huckel" with the weighted formula of Ammeter et al. (1978), K' = K + Δ² + Δ⁴(1 − K).

    Returns
    -------
    BandStructure
        eigenvalues of shape (1, n_k, n_ao), ascending per k; weights; kpoints; n_electrons = the valence
        electrons of the basis (`sporep_hpc.basis.valence_electrons`).

    Raises
    ------
    InputError
        Unusable structure, element missing from the basis or (for "huckel") from the parameter table, or
        an eigensolver failure (names the k-point).
    ParameterError
        Invalid operator, precision, lindep, kpoints, weights, huckel_k or huckel_weighted.
    """
    return spectrum_with_stats(structure, operator, basis, kpoints, weights, kdensity, exp_to_discard,
                               precision, lindep, n_threads, kgrid_rounding, huckel_k, huckel_weighted)[0]
