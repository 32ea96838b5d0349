"""Overlap and kinetic matrices S(k), T(k) against PySCF's `Cell.pbc_intor` with the same primitives.

Reference: PySCF (libcint + its own lattice sums), which shares no code with ext/integrals.pyx. The
agreement target is DESIGN.md §3: 1e-8 Hartree. PySCF's lattice-sum precision is set tighter (1e-13)
than ours (1e-12) so the difference measures our truncation, not PySCF's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

pytest.importorskip("pyscf")
from _references import CRYSTALS, GENERAL_K, ceo2_fluorite, pyscf_matrices, rutile_tio2, si_diamond
from pymatgen.core import Lattice, Structure

from sporep_hpc.basis import load_basis
from sporep_hpc.examples.cnt import nanotube
from sporep_hpc.operators import BOHR_ANGSTROM, _cart_to_sph, operator_matrices

TOL = 1e-8  # Hartree (DESIGN.md §3); the overlap is dimensionless and held to the same number


@pytest.fixture(scope="module")
def basis():
    return load_basis("ano-valence", 0.1)


# ----------------------------------------------------------------------------- tests
def test_cart_to_sph_matches_pyscf():
    # PySCF's own cartesian -> spherical matrices (libcint), up to one overall factor per l that PySCF
    # keeps in its cartesian normalisation: the angular shapes, signs and m order must be identical.
    from pyscf import gto

    ours = _cart_to_sph()
    for ang in range(4):
        ref = gto.cart2sph(ang, normalized="sp")  # (n_cart, 2l+1)
        mine = ours[ang, : 2 * ang + 1, : (ang + 1) * (ang + 2) // 2].T
        scale = np.linalg.lstsq(mine.reshape(-1, 1), ref.reshape(-1), rcond=None)[0][0]
        assert_allclose(mine * scale, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", list(CRYSTALS))
def test_matrices_match_pyscf(name, basis):
    structure = CRYSTALS[name]()
    s, t = operator_matrices(structure, GENERAL_K, basis=basis)
    s_ref, t_ref = pyscf_matrices(structure, GENERAL_K, basis)
    assert s.shape == s_ref.shape
    assert_allclose(s, s_ref, rtol=0, atol=TOL)
    assert_allclose(t, t_ref, rtol=0, atol=TOL)


@pytest.mark.parametrize("chirality", [(6, 6), (10, 0)])
def test_nanotube_matrices_match_pyscf(chirality, basis):
    structure = nanotube(*chirality, vacuum=8.0)
    k = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.37]])  # along the tube axis (c)
    s, t = operator_matrices(structure, k, basis=basis)
    s_ref, t_ref = pyscf_matrices(structure, k, basis)
    assert_allclose(s, s_ref, rtol=0, atol=TOL)
    assert_allclose(t, t_ref, rtol=0, atol=TOL)


def test_other_bse_basis_with_sp_shells_matches_pyscf():
    # 6-31G has SP blocks (one exponent list, s and p columns) and keeps every contraction
    b = load_basis("6-31G", 0.0)
    structure = si_diamond()
    s, t = operator_matrices(structure, GENERAL_K[:2], basis=b)
    s_ref, t_ref = pyscf_matrices(structure, GENERAL_K[:2], b)
    assert s.shape[1] == 2 * 13  # 6-31G Si: 4s 3p -> 4 + 9 = 13 functions per atom
    assert_allclose(s, s_ref, rtol=0, atol=TOL)
    assert_allclose(t, t_ref, rtol=0, atol=TOL)


def test_matrices_hermitian_and_thread_independent(basis):
    structure = rutile_tio2()
    s1, t1 = operator_matrices(structure, GENERAL_K, basis=basis, n_threads=1)
    s2, t2 = operator_matrices(structure, GENERAL_K, basis=basis, n_threads=2)
    # each shell pair is computed by one thread: bitwise identical whatever the thread count
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(t1, t2)
    assert_allclose(s1, np.conj(np.swapaxes(s1, 1, 2)), rtol=0, atol=1e-14)
    assert_allclose(t1, np.conj(np.swapaxes(t1, 1, 2)), rtol=0, atol=1e-13)


def test_isolated_gaussians_analytic():
    # Two normalised s primitives exp(-a r²), exp(-b r²) at distance R in a huge cell (no image within
    # screening range): S = (2√(ab)/(a+b))^{3/2} e^{-μR²}, T = μ(3 - 2μR²) S with μ = ab/(a+b) (textbook).
    from sporep_hpc.basis import BasisSet, Shell

    a, b_exp, r_bohr = 0.8, 0.5, 1.7
    shells = {"H": (Shell(0, [a], [1.0]),), "He": (Shell(0, [b_exp], [1.0]),)}
    bs = BasisSet("analytic", 0.0, shells, {"H": 1, "He": 2})
    length = 60.0
    st = Structure(Lattice.cubic(length), ["H", "He"], [[1, 1, 1], [1 + r_bohr * BOHR_ANGSTROM, 1, 1]],
                   coords_are_cartesian=True)
    s, t = operator_matrices(st, [[0.2, 0.1, 0.0]], basis=bs)
    mu = a * b_exp / (a + b_exp)
    s_ab = (2 * math.sqrt(a * b_exp) / (a + b_exp)) ** 1.5 * math.exp(-mu * r_bohr**2)
    t_ab = mu * (3 - 2 * mu * r_bohr**2) * s_ab
    assert_allclose(s[0], [[1, s_ab], [s_ab, 1]], rtol=0, atol=1e-14)
    assert_allclose(t[0], [[1.5 * a, t_ab], [t_ab, 1.5 * b_exp]], rtol=0, atol=1e-13)


def test_precision_bounds_the_truncation_error(basis):
    # the screening threshold bounds each neglected primitive-pair contribution: the matrices at
    # precision 1e-12 and 1e-8 differ from a far tighter sum (1e-16) by about that much, not more
    # (a few hundred neglected terms near the cut-off: factor 100 margin)
    st = ceo2_fluorite()
    s_ref, t_ref = operator_matrices(st, GENERAL_K, basis=basis, precision=1e-16)
    for precision in (1e-12, 1e-8):
        s, t = operator_matrices(st, GENERAL_K, basis=basis, precision=precision)
        assert np.abs(s - s_ref).max() < 100 * precision
        assert np.abs(t - t_ref).max() < 100 * precision
    s, _ = operator_matrices(st, GENERAL_K, basis=basis, precision=1e-4)
    assert np.abs(s - s_ref).max() > 1e-8  # a loose threshold does truncate: the test can fail
