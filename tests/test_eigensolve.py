"""The batched eigensolver kernel against scipy.linalg.eigh / numpy on random Hermitian problems.

Reference: scipy.linalg.eigh(A, B, eigvals_only=True) (LAPACK *hegvd via scipy's own wrappers) and, for
near-singular B, canonical orthogonalisation written out in numpy. Tolerances are relative to the
spectral scale (|A| ~ 10, B well conditioned): 1e-10 absolute leaves room for LAPACK's O(n ε ‖A‖)
rounding differences between code paths.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
from numpy.testing import assert_allclose, assert_array_equal

from sporep_hpc._ext import load
from sporep_hpc.operators import _Inversion, _real_form

eigensolve = load("eigensolve")

TOL = 1e-10


def hermitian(rng, n_k, n, real=False):
    x = rng.standard_normal((n_k, n, n))
    if not real:
        x = x + 1j * rng.standard_normal((n_k, n, n))
    return x + np.conj(np.swapaxes(x, 1, 2))


def positive(rng, n_k, n, real=False):
    y = rng.standard_normal((n_k, n, n))
    if not real:
        y = y + 1j * rng.standard_normal((n_k, n, n))
    return y @ np.conj(np.swapaxes(y, 1, 2)) / n + 0.5 * np.eye(n)


def planes(m):
    """(n_k, 2, n, n) real and imaginary planes of a (n_k, n, n) stack, the kernel's input layout."""
    return np.stack([m.real, np.imag(m)], axis=1)


def solve(a, b, real_k=None, generalized=True, lindep=1e-8, n_threads=1, hermitize=False):
    n_k, n, _ = a.shape
    real_k = np.zeros(n_k, np.int8) if real_k is None else np.asarray(real_k, np.int8)
    w = np.empty((n_k, n))
    dropped = np.zeros(n_k, np.int32)
    info = np.zeros(n_k, np.int32)
    status = eigensolve.eig_batch(
        a=planes(a), b=planes(b), real_k=real_k, generalized=generalized, hermitize=hermitize, lindep=lindep,
        w=w, n_dropped=dropped, info=info, n_threads=n_threads,
    )
    assert status == 0 and not info.any()
    return w, dropped


def test_generalized_complex_matches_scipy(rng):
    a, b = hermitian(rng, 7, 23), positive(rng, 7, 23)
    w, dropped = solve(a, b)
    ref = np.array([scipy.linalg.eigh(a[i], b[i], eigvals_only=True) for i in range(7)])
    assert_allclose(w, ref, rtol=0, atol=TOL)
    assert not dropped.any()


def test_real_path_matches_scipy(rng):
    a, b = hermitian(rng, 5, 17, real=True), positive(rng, 5, 17, real=True)
    w_real, _ = solve(a.astype(complex), b.astype(complex), real_k=np.ones(5))
    w_cplx, _ = solve(a.astype(complex), b.astype(complex), real_k=np.zeros(5))
    ref = np.array([scipy.linalg.eigh(a[i], b[i], eigvals_only=True) for i in range(5)])
    assert_allclose(w_real, ref, rtol=0, atol=TOL)
    assert_allclose(w_cplx, ref, rtol=0, atol=TOL)


@pytest.mark.parametrize("real", [False, True])
def test_hermitize_uses_x_plus_x_dagger(rng, real):
    # the operators pass H with X = H + H^H (half the lattice sum); H itself is not Hermitian
    n_k, n = 4, 9
    h_a = rng.standard_normal((n_k, n, n)) + (0 if real else 1j * rng.standard_normal((n_k, n, n)))
    h_b = positive(rng, n_k, n, real=real) / 2 + 0.01 * rng.standard_normal((n_k, n, n))
    a = h_a + np.conj(np.swapaxes(h_a, 1, 2))
    b = h_b + np.conj(np.swapaxes(h_b, 1, 2))
    w, _ = solve(h_a.astype(complex), h_b.astype(complex), real_k=np.full(n_k, int(real)), hermitize=True)
    ref = np.array([scipy.linalg.eigh(a[i], b[i], eigvals_only=True) for i in range(n_k)])
    assert_allclose(w, ref, rtol=0, atol=TOL)
    w, _ = solve(h_a.astype(complex), h_b.astype(complex), real_k=np.full(n_k, int(real)), hermitize=True,
                 generalized=False)
    assert_allclose(w, np.linalg.eigvalsh(a), rtol=0, atol=TOL)


def test_standard_problem_matches_numpy(rng):
    a = hermitian(rng, 4, 11)
    w, _ = solve(a, a, generalized=False)
    assert_allclose(w, np.linalg.eigvalsh(a), rtol=0, atol=TOL)
    w, _ = solve(a.real.astype(complex), a.real.astype(complex), real_k=np.ones(4), generalized=False)
    assert_allclose(w, np.linalg.eigvalsh(a.real), rtol=0, atol=TOL)


def canonical_reference(a, b, lindep):
    """Canonical orthogonalisation in numpy: X = U s^-1/2 over the kept eigenvectors of B."""
    s, u = np.linalg.eigh(b)
    keep = s >= lindep
    x = u[:, keep] / np.sqrt(s[keep])
    w = np.linalg.eigvalsh(np.conj(x.T) @ a @ x)
    return np.concatenate([w, np.full(len(s) - keep.sum(), np.nan)]), int((~keep).sum())


@pytest.mark.parametrize("real", [False, True])
def test_near_singular_overlap_is_orthogonalised(rng, real):
    n, n_k = 12, 3
    a = hermitian(rng, n_k, n, real=real)
    # B with prescribed spectrum: two eigenvalues below lindep = 1e-8, the rest in [0.3, 2]
    q, _ = np.linalg.qr(rng.standard_normal((n, n)) + (0 if real else 1j * rng.standard_normal((n, n))))
    spectrum = np.concatenate([[1e-13, 3e-10], np.linspace(0.3, 2.0, n - 2)])
    b = np.broadcast_to(q @ np.diag(spectrum) @ np.conj(q.T), (n_k, n, n)).copy()
    w, dropped = solve(a.astype(complex), b.astype(complex), real_k=np.full(n_k, int(real)))
    for i in range(n_k):
        ref, n_drop = canonical_reference(a[i], b[i], 1e-8)
        assert dropped[i] == n_drop == 2
        assert np.isnan(w[i, -2:]).all()
        assert_allclose(w[i, :-2], ref[:-2], rtol=0, atol=1e-8)  # B has condition ~7: ε‖A‖·κ


def test_condition_below_safety_margin_still_exact(rng):
    # smallest B eigenvalue 5e-8: above lindep (nothing dropped) but close enough that the kernel may take
    # the canonical path; both paths must give the full generalized spectrum
    n = 10
    a = hermitian(rng, 1, n)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n)))
    b = (q @ np.diag(np.concatenate([[5e-8], np.linspace(0.5, 1.5, n - 1)])) @ np.conj(q.T))[None]
    w, dropped = solve(a, b)
    ref, _ = canonical_reference(a[0], b[0], 0.0)
    assert dropped[0] == 0
    assert_allclose(w[0], ref, rtol=1e-6)  # eigenvalues up to ~‖A‖/5e-8: relative accuracy


def test_thread_count_does_not_change_results(rng):
    a, b = hermitian(rng, 9, 15), positive(rng, 9, 15)
    real_k = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0])
    a[real_k == 1] = a[real_k == 1].real
    b[real_k == 1] = b[real_k == 1].real
    w1, _ = solve(a, b, real_k=real_k, n_threads=1)
    w2, _ = solve(a, b, real_k=real_k, n_threads=2)
    w3, _ = solve(a, b, real_k=real_k, n_threads=3)
    assert_array_equal(w1, w2)
    assert_array_equal(w1, w3)


def test_operator_stack_views_accepted(rng):
    # the operators module passes views into one (n_op, n_k, 2, n, n) array: a = stack[1], b = stack[0]
    n_k, n = 4, 6
    a, b = hermitian(rng, n_k, n), positive(rng, n_k, n)
    stack = np.empty((2, n_k, 2, n, n))
    stack[0, :, 0], stack[0, :, 1], stack[1, :, 0], stack[1, :, 1] = b.real, b.imag, a.real, a.imag
    w = np.empty((n_k, n))
    dropped, info = np.zeros(n_k, np.int32), np.zeros(n_k, np.int32)
    status = eigensolve.eig_batch(a=stack[1], b=stack[0], real_k=np.zeros(n_k, np.int8), generalized=True,
                                  hermitize=False, lindep=1e-8, w=w, n_dropped=dropped, info=info,
                                  n_threads=1)
    assert status == 0
    ref = np.array([scipy.linalg.eigh(a[i], b[i], eigvals_only=True) for i in range(n_k)])
    assert_allclose(w, ref, rtol=0, atol=TOL)


def test_real_path_reads_one_plane(rng):
    # every k-point real: (n_k, 1, n, n) inputs suffice (the real form of sporep_hpc.operators)
    a, b = hermitian(rng, 3, 9, real=True), positive(rng, 3, 9, real=True)
    w = np.empty((3, 9))
    dropped, info = np.zeros(3, np.int32), np.zeros(3, np.int32)
    status = eigensolve.eig_batch(a=a[:, None], b=b[:, None], real_k=np.ones(3, np.int8), generalized=True,
                                  hermitize=False, lindep=1e-8, w=w, n_dropped=dropped, info=info,
                                  n_threads=1)
    assert status == 0
    ref = np.array([scipy.linalg.eigh(a[i], b[i], eigvals_only=True) for i in range(3)])
    assert_allclose(w, ref, rtol=0, atol=TOL)


@pytest.mark.parametrize("case", ["one plane, complex k", "n mismatch", "info length", "b n_k"])
def test_bad_shapes_return_status_without_reading(rng, case):
    n_k, n = 3, 5
    a, b = planes(hermitian(rng, n_k, n)), planes(positive(rng, n_k, n))
    real_k, info = np.zeros(n_k, np.int8), np.zeros(n_k, np.int32)
    if case == "one plane, complex k":
        a = np.ascontiguousarray(a[:, :1])
    elif case == "n mismatch":
        a = np.ascontiguousarray(a[:, :, :4, :4])
    elif case == "info length":
        info = np.zeros(n_k + 1, np.int32)
    else:
        b = np.ascontiguousarray(b[:2])
    w = np.full((n_k, n), -7.0)
    status = eigensolve.eig_batch(a=a, b=b, real_k=real_k, generalized=True, hermitize=False, lindep=1e-8,
                                  w=w, n_dropped=np.zeros(n_k, np.int32), info=info, n_threads=1)
    assert status == eigensolve.BAD_SHAPE
    assert (w == -7.0).all()  # nothing computed


def test_typed_signature_refuses_wrong_dtype_and_none(rng):
    a = planes(hermitian(rng, 2, 3))
    kw = dict(real_k=np.zeros(2, np.int8), generalized=False, hermitize=False, lindep=1e-8,
              w=np.empty((2, 3)), n_dropped=np.zeros(2, np.int32), info=np.zeros(2, np.int32), n_threads=1)
    with pytest.raises(ValueError, match="dtype"):
        eigensolve.eig_batch(a=a.astype(np.float32), b=a, **kw)
    with pytest.raises(TypeError):
        eigensolve.eig_batch(a=None, b=a, **kw)


def test_indefinite_b_reports_nan_padding_not_garbage(rng):
    # B with a negative eigenvalue (not an overlap matrix): Cholesky fails, canonical path drops it
    n = 5
    a = hermitian(rng, 1, n)
    b = np.diag([-1.0, 1.0, 2.0, 3.0, 4.0]).astype(complex)[None]
    w, dropped = solve(a, b)
    ref, n_drop = canonical_reference(a[0], b[0], 1e-8)
    assert dropped[0] == n_drop == 1
    assert_allclose(w[0, :-1], ref[:-1], rtol=0, atol=TOL)
    assert np.isnan(w[0, -1])


def test_real_form_of_inversion_symmetric_matrices(rng):
    # X = M X* M^H with M[μ, μ'] = d_μ (inversion partners μ <-> μ', |d| = 1, d_μ d*_μ' = 1): the basis
    # change of sporep_hpc.operators._real_form must give a real symmetric matrix with X's eigenvalues
    partner = np.array([3, 5, 2, 0, 6, 1, 4])
    parity = np.array([1.0, -1.0, 1.0, 1.0, -1.0, -1.0, -1.0])
    shift = np.array([[1, 0, 2], [0, -1, 0], [0, 0, 0], [1, 0, 2], [3, 1, 1], [0, -1, 0], [3, 1, 1]], float)
    inv = _Inversion(partner, parity, shift)
    k = np.array([[0.13, -0.31, 0.22], [0.4, 0.1, -0.05]])
    n = len(partner)
    halves = np.empty((len(k), 2, n, n))
    for i, kk in enumerate(k):
        d = parity * np.exp(-2j * np.pi * (shift @ kk))
        m = np.zeros((n, n), complex)
        m[np.arange(n), partner] = d
        y = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
        y = y + np.conj(y.T)
        x = (y + m @ np.conj(y) @ np.conj(m.T)) / 2
        assert_allclose(x, m @ np.conj(x) @ np.conj(m.T), atol=1e-13)  # the symmetry holds
        halves[i, 0], halves[i, 1] = (x / 2).real, (x / 2).imag  # H with X = H + H^H
    real, residual = _real_form(halves, k, inv)
    assert residual < 1e-13
    for i in range(len(k)):
        x = halves[i, 0] * 2 + 2j * halves[i, 1]
        assert_allclose(real[i], real[i].T, rtol=0, atol=1e-13)
        assert_allclose(np.linalg.eigvalsh(real[i]), np.linalg.eigvalsh(x), rtol=0, atol=1e-12)
