# cython: language_level=3
"""Distance kernels between fingerprint rows (DESIGN §3 "Distances").

Kernels assume clean input (C-contiguous float64, matching shapes, n_threads >= 1); the
Python face is sporep_hpc.analysis.similarity, which validates and prepares the rows.

* euclidean, cosine, tanimoto: one GEMM (scipy.linalg.cython_blas.dgemm) for all dot products
  a_i · b_j of a tile, then an element-wise transform with the squared norms. Euclidean pairs whose
  Gram-derived square distance is small against the norms (cancellation) are recomputed directly.
* wasserstein: weighted L1 distance between per-window normalised cumulative sums (prepared in
  Python), with the zero-area rules of DESIGN §3.

Every function returns 0 on success, a negative status otherwise.
"""

from cython.parallel cimport prange
from libc.math cimport fabs, sqrt
from scipy.linalg.cython_blas cimport dgemm

cdef enum:
    EUCLIDEAN = 0
    COSINE = 1
    TANIMOTO = 2

# Gram-derived d² below this fraction of |a|² + |b|² is recomputed directly (relative error of the
# Gram route ~ 1e-16 (|a|² + |b|²) / d², so the transformed pairs keep ~1e-14 relative accuracy).
cdef double REFINE = 1e-2


cdef int gram(const double[:, ::1] a,   # IN (na, f)
              const double[:, ::1] b,   # IN (nb, f)
              double[:, ::1] out        # OUT (na, nb): a b^T
              ) noexcept nogil:
    """out = a b^T with one dgemm (row-major seen as column-major transposes)."""
    cdef int na = <int> a.shape[0]
    cdef int nb = <int> b.shape[0]
    cdef int f = <int> a.shape[1]
    cdef double one = 1.0, zero = 0.0
    cdef char transa = b'T', transb = b'N'
    cdef int i, j
    if na == 0 or nb == 0:
        return 0
    if f == 0:
        for i in range(na):
            for j in range(nb):
                out[i, j] = 0.0
        return 0
    # column-major C (nb x na, ldc = nb) == row-major out (na x nb); C = b a^T
    dgemm(&transa, &transb, &nb, &na, &f, &one, <double *> &b[0, 0], &f,
          <double *> &a[0, 0], &f, &zero, &out[0, 0], &nb)
    return 0


cdef int from_gram(int metric,
                   const double[:, ::1] a,     # IN (na, f)
                   const double[:, ::1] b,     # IN (nb, f)
                   const double[::1] sq_a,     # IN (na,) squared norms
                   const double[::1] sq_b,     # IN (nb,) squared norms
                   double[:, ::1] out,         # IN dot products, OUT distances (na, nb)
                   int n_threads) noexcept nogil:
    cdef Py_ssize_t na = a.shape[0], nb = b.shape[0], f = a.shape[1]
    cdef Py_ssize_t i, j, k
    cdef double dot, d2, den, t, diff
    if metric < 0 or metric > 2:
        return -1
    for i in prange(na, nogil=True, schedule="static", num_threads=n_threads):
        for j in range(nb):
            dot = out[i, j]
            if metric == EUCLIDEAN:
                d2 = sq_a[i] + sq_b[j] - 2.0 * dot
                if d2 < REFINE * (sq_a[i] + sq_b[j]):
                    d2 = 0.0
                    for k in range(f):
                        diff = a[i, k] - b[j, k]
                        d2 = d2 + diff * diff
                out[i, j] = sqrt(d2) if d2 > 0.0 else 0.0
            elif metric == COSINE:
                if sq_a[i] == 0.0 and sq_b[j] == 0.0:
                    out[i, j] = 0.0
                elif sq_a[i] == 0.0 or sq_b[j] == 0.0:
                    out[i, j] = 1.0
                else:
                    t = 1.0 - dot / (sqrt(sq_a[i]) * sqrt(sq_b[j]))
                    out[i, j] = 0.0 if t < 0.0 else (2.0 if t > 2.0 else t)
            else:
                den = sq_a[i] + sq_b[j] - dot
                if den == 0.0:  # only when both vectors are zero (den >= (|a| - |b|)² + |a||b| - a·b)
                    out[i, j] = 0.0
                else:
                    out[i, j] = 1.0 - dot / den
    return 0


cdef int wasserstein(const double[:, ::1] cdf_a,        # IN (na, f) per-window normalised cumsums
                     const double[:, ::1] cdf_b,        # IN (nb, f)
                     const double[::1] step,            # IN (f,) E[k+1] - E[k] inside a window, 0 at its end
                     const int[::1] offsets,            # IN (n_windows + 1,) feature offsets
                     const unsigned char[:, ::1] zero_a,  # IN (na, n_windows) 1 where the area is 0
                     const unsigned char[:, ::1] zero_b,  # IN (nb, n_windows)
                     const double[::1] widths,          # IN (n_windows,) E_last - E_first per window
                     double[:, ::1] out,                # OUT (na, nb)
                     int n_threads) noexcept nogil:
    cdef Py_ssize_t na = cdf_a.shape[0], nb = cdf_b.shape[0]
    cdef Py_ssize_t nw = offsets.shape[0] - 1
    cdef Py_ssize_t i, j, w, k
    cdef double total, part
    for i in prange(na, nogil=True, schedule="static", num_threads=n_threads):
        for j in range(nb):
            total = 0.0
            for w in range(nw):
                if zero_a[i, w] and zero_b[j, w]:
                    continue
                if zero_a[i, w] or zero_b[j, w]:
                    total = total + widths[w]
                    continue
                part = 0.0
                for k in range(offsets[w], offsets[w + 1]):
                    part = part + fabs(cdf_a[i, k] - cdf_b[j, k]) * step[k]
                total = total + part
            out[i, j] = total
    return 0


# ---- Python-callable wrappers (the Python face validates before calling) ---------------------------

METRIC_CODES = {"euclidean": EUCLIDEAN, "cosine": COSINE, "tanimoto": TANIMOTO}


def dot_metric_block(int metric, const double[:, ::1] a, const double[:, ::1] b,
                     const double[::1] sq_a, const double[::1] sq_b,
                     double[:, ::1] out, int n_threads) -> int:
    """Distances of a tile for euclidean (0), cosine (1) or tanimoto (2); returns the status."""
    cdef int status
    with nogil:
        status = gram(a, b, out)
        if status == 0:
            status = from_gram(metric, a, b, sq_a, sq_b, out, n_threads)
    return status


def wasserstein_block(const double[:, ::1] cdf_a, const double[:, ::1] cdf_b,
                      const double[::1] step, const int[::1] offsets,
                      const unsigned char[:, ::1] zero_a, const unsigned char[:, ::1] zero_b,
                      const double[::1] widths, double[:, ::1] out, int n_threads) -> int:
    """Wasserstein-1 distances of a tile from prepared cumulative sums; returns the status."""
    cdef int status
    with nogil:
        status = wasserstein(cdf_a, cdf_b, step, offsets, zero_a, zero_b, widths, out, n_threads)
    return status
