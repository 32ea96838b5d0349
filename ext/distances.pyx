# cython: language_level=3
"""Distance kernels between fingerprint rows (DESIGN §3 "Distances").

Kernels assume clean input (C-contiguous float64, matching shapes, n_threads >= 1); the
Python face is sporep_hpc.analysis.similarity, which validates and prepares the rows.

* euclidean, cosine, tanimoto: one GEMM (scipy.linalg.cython_blas.dgemm) for all dot products
  a_i · b_j of a tile, then an element-wise transform with the squared norms. Euclidean pairs whose
  Gram-derived square distance is small against the norms (cancellation) are recomputed directly.
* wasserstein: weighted L1 distance between per-window normalised cumulative sums (prepared in
  Python), with the zero-area rules of DESIGN §3.
* top-k: merge a distance tile into per-row lists of the k nearest (distance, index) pairs, ties to
  the smaller index (the Python face is sporep_hpc.analysis.neighbours).

The `nogil` routines return 0 on success, a negative status otherwise; the `def` faces take typed
memoryviews and return that status, and the Python callers raise.
"""

from cython.parallel cimport prange
from libc.math cimport fabs, sqrt
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport dgemm

# Interface version of the `def` faces, checked by sporep_hpc._ext.load (bump with any signature change).
ABI = 2

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


def dot_metric_block(int metric,                       # IN EUCLIDEAN, COSINE or TANIMOTO (METRIC_CODES)
                     const double[:, ::1] a not None,  # IN (na, f)
                     const double[:, ::1] b not None,  # IN (nb, f)
                     const double[::1] sq_a not None,  # IN (na,) squared norms
                     const double[::1] sq_b not None,  # IN (nb,) squared norms
                     double[:, ::1] out not None,      # OUT (na, nb)
                     int n_threads) -> int:
    """Distances of a tile for euclidean (0), cosine (1) or tanimoto (2); returns the status."""
    cdef int status
    with nogil:
        status = gram(a, b, out)
        if status == 0:
            status = from_gram(metric, a, b, sq_a, sq_b, out, n_threads)
    return status


def wasserstein_block(const double[:, ::1] cdf_a not None,          # IN (na, f) see `wasserstein`
                      const double[:, ::1] cdf_b not None,          # IN (nb, f)
                      const double[::1] step not None,              # IN (f,)
                      const int[::1] offsets not None,              # IN (n_windows + 1,)
                      const unsigned char[:, ::1] zero_a not None,  # IN (na, n_windows)
                      const unsigned char[:, ::1] zero_b not None,  # IN (nb, n_windows)
                      const double[::1] widths not None,            # IN (n_windows,)
                      double[:, ::1] out not None,                  # OUT (na, nb)
                      int n_threads) -> int:
    """Wasserstein-1 distances of a tile from prepared cumulative sums; returns the status."""
    cdef int status
    with nogil:
        status = wasserstein(cdf_a, cdf_b, step, offsets, zero_a, zero_b, widths, out, n_threads)
    return status


# ---- top-k selection (DESIGN §8.5 "Neighbours") ----------------------------------------------------

# Owner columns handled together in the transposed update (one cache line run of each block row).
cdef Py_ssize_t TOPK_CHUNK = 64


cdef inline bint precedes(double d, int64_t i, double d_ref, int64_t i_ref) noexcept nogil:
    """(d, i) < (d_ref, i_ref) lexicographically: the nearer one, ties to the smaller index."""
    return d < d_ref or (d == d_ref and i < i_ref)


cdef inline void insert(double *best_d, int64_t *best_i, Py_ssize_t k, double d, int64_t i) noexcept nogil:
    """Insert (d, i) into the ascending list of length k; the caller checked it precedes the last."""
    cdef Py_ssize_t p = k - 1
    while p > 0 and precedes(d, i, best_d[p - 1], best_i[p - 1]):
        best_d[p] = best_d[p - 1]
        best_i[p] = best_i[p - 1]
        p -= 1
    best_d[p] = d
    best_i[p] = i


cdef int topk_update(const double[:, ::1] block,  # IN (r, c) distances of a tile
                     int64_t row0,                # global index of block row 0
                     int64_t col0,                # global index of block column 0
                     int transpose,               # 0: the rows own lists; 1: the columns do
                     int skip_self,               # 1: never insert the pair with equal global indices
                     double[:, ::1] best_d,       # IN/OUT (n_owners, k) ascending distances
                     int64_t[:, ::1] best_i,      # IN/OUT (n_owners, k) their global indices
                     int n_threads) noexcept nogil:
    """Merge a tile into the k-best lists of its owners (rows, or columns when `transpose`).

    Lists hold (distance, index) pairs in ascending lexicographic order, so the result is the k
    smallest pairs of everything merged, whatever the order of the tiles. Empty slots are
    (+inf, INT64_MAX). NaN distances are never inserted.
    """
    cdef Py_ssize_t r = block.shape[0], c = block.shape[1], k = best_d.shape[1]
    cdef Py_ssize_t n_chunks, ch, i, j, j0, j1
    cdef double d
    cdef int64_t cand
    if k < 1 or best_i.shape[1] != k or best_i.shape[0] != best_d.shape[0]:
        return -1
    if best_d.shape[0] != (c if transpose else r):
        return -2
    if r == 0 or c == 0:
        return 0
    if not transpose:
        for i in prange(r, nogil=True, schedule="static", num_threads=n_threads):
            for j in range(c):
                d = block[i, j]
                cand = col0 + j
                if skip_self and cand == row0 + i:
                    continue
                if precedes(d, cand, best_d[i, k - 1], best_i[i, k - 1]):
                    insert(&best_d[i, 0], &best_i[i, 0], k, d, cand)
    else:
        # each chunk of owner columns is private to one thread; block rows are read contiguously
        n_chunks = (c + TOPK_CHUNK - 1) // TOPK_CHUNK
        for ch in prange(n_chunks, nogil=True, schedule="static", num_threads=n_threads):
            j0 = ch * TOPK_CHUNK
            j1 = j0 + TOPK_CHUNK
            if j1 > c:
                j1 = c
            for i in range(r):
                cand = row0 + i
                for j in range(j0, j1):
                    d = block[i, j]
                    if skip_self and cand == col0 + j:
                        continue
                    if precedes(d, cand, best_d[j, k - 1], best_i[j, k - 1]):
                        insert(&best_d[j, 0], &best_i[j, 0], k, d, cand)
    return 0


def topk_block(const double[:, ::1] block not None,  # IN (r, c) distances of a tile
               int64_t row0,                         # IN global index of block row 0
               int64_t col0,                         # IN global index of block column 0
               bint transpose,                       # IN False: the rows own lists; True: the columns do
               bint skip_self,                       # IN never insert the pair with equal global indices
               double[:, ::1] best_d not None,       # IN/OUT (n_owners, k) ascending distances
               int64_t[:, ::1] best_i not None,      # IN/OUT (n_owners, k) their global indices
               int n_threads) -> int:
    """Merge a distance tile into k-best lists (see `topk_update`); returns the status."""
    cdef int status
    with nogil:
        status = topk_update(block, row0, col0, transpose, skip_self, best_d, best_i, n_threads)
    return status
