# cython: language_level=3
"""Eigenvalues of A(k) c = ε B(k) c (or of A(k) alone) for a batch of k-points, OpenMP over k.

Kernels only: inputs are clean (validated by sporep_hpc.operators). Each matrix stack arrives as one
float64 array of shape (n_k, 2, n, n) holding the real and imaginary planes of M(k) (the layout the
Bloch-phase GEMM of ext/integrals.pyx writes, so no complex copy is made), or (n_k, 1, n, n) when every
k-point takes the real path. Row-major; LAPACK reads them column-major, i.e. it sees the complex
conjugates, which have the same eigenvalues. The `nogil` routines return an int status (LAPACK info,
NO_MEMORY or BAD_SHAPE); the `def` faces take typed memoryviews and return it, and the Python caller
(sporep_hpc.operators) raises, naming the structure and the k-point.

Per k-point (complex path; the real path uses the d-routines at time-reversal-invariant k):
  zlanhe + zpotrf + zpocon   Cholesky of B and a 1-norm estimate of its smallest eigenvalue;
  zhegst + zheevd('N')       the zhegvd sequence, when B is safely positive definite;
  otherwise canonical orthogonalisation: zheevd('V') on B, drop eigenvalues < lindep, X = U s^-1/2,
  eigenvalues of X^H A X (zhemm, zgemm, zheevd), padded with NaN; the drop count is returned.
Workspaces are queried once (lwork = -1) for n, allocated once per thread, reused for every k.

`real_form` is the O(n²) change of basis that makes the Bloch matrices of a centrosymmetric crystal
real symmetric (see sporep_hpc.operators._real_form), so that the real path serves every k-point.
"""

from cython.parallel cimport prange, threadid
from libc.math cimport NAN, sqrt
from libc.stdlib cimport calloc, free, malloc
from scipy.linalg.cython_blas cimport dgemm, dsymm, zgemm, zhemm
from scipy.linalg.cython_lapack cimport (dlansy, dpocon, dpotrf, dsyevd, dsygst, zheevd, zhegst,
                                         zlanhe, zpocon, zpotrf)

# Interface version of the `def` faces, checked by sporep_hpc._ext.load (bump with any signature change).
ABI = 2

# Status codes besides LAPACK's info (exported to Python as NO_MEMORY and BAD_SHAPE).
cdef enum:
    STATUS_NO_MEMORY = -1000
    STATUS_BAD_SHAPE = -2000
NO_MEMORY = STATUS_NO_MEMORY
BAD_SHAPE = STATUS_BAD_SHAPE

# A positive definite B is trusted when the estimate of its smallest eigenvalue (1 / ||B^-1||_1,
# which LAPACK's estimator gets within a small factor) exceeds lindep by this margin.
cdef double SAFETY = 10.0


cdef struct Work:
    double complex* a
    double complex* b
    double complex* c
    double complex* y
    double* w
    double complex* zwork
    double* dwork
    double* rwork
    int* iwork
    int lzwork
    int ldwork
    int lrwork
    int liwork


cdef int _query(int n, int* lz, int* ld, int* lr, int* li) noexcept nogil:
    """Workspace sizes for zheevd('V') / dsyevd('V') of order n, and for the condition estimators."""
    cdef double complex zdum[1]
    cdef double ddum[1]
    cdef double rq[1]
    cdef double complex zq[1]
    cdef double dq[1]
    cdef int iq[1]
    cdef int iq2[1]
    cdef int m1 = -1, info = 0, nn = n if n > 0 else 1
    zheevd("V", "L", &nn, zdum, &nn, ddum, zq, &m1, rq, &m1, iq, &m1, &info)
    if info != 0:
        return info
    dsyevd("V", "L", &nn, ddum, &nn, ddum, dq, &m1, iq2, &m1, &info)
    if info != 0:
        return info
    lz[0] = max(<int> zq[0].real, 2 * nn)
    lr[0] = max(<int> rq[0], nn)
    ld[0] = max(<int> dq[0], 3 * nn)
    li[0] = max(max(iq[0], iq2[0]), nn)
    return 0


cdef int _alloc(Work* ws, int n, int lz, int ld, int lr, int li) noexcept nogil:
    cdef size_t nn = <size_t> n * <size_t> n
    ws.lzwork = lz
    ws.ldwork = ld
    ws.lrwork = lr
    ws.liwork = li
    ws.a = <double complex*> malloc(nn * sizeof(double complex))
    ws.b = <double complex*> malloc(nn * sizeof(double complex))
    ws.c = <double complex*> malloc(nn * sizeof(double complex))
    ws.y = <double complex*> malloc(nn * sizeof(double complex))
    ws.w = <double*> malloc(<size_t> n * sizeof(double))
    ws.zwork = <double complex*> malloc(<size_t> lz * sizeof(double complex))
    ws.dwork = <double*> malloc(<size_t> ld * sizeof(double))
    ws.rwork = <double*> malloc(<size_t> lr * sizeof(double))
    ws.iwork = <int*> malloc(<size_t> li * sizeof(int))
    if (ws.a == NULL or ws.b == NULL or ws.c == NULL or ws.y == NULL or ws.w == NULL
            or ws.zwork == NULL or ws.dwork == NULL or ws.rwork == NULL or ws.iwork == NULL):
        return -1
    return 0


cdef void _release(Work* ws) noexcept nogil:
    free(ws.a)
    free(ws.b)
    free(ws.c)
    free(ws.y)
    free(ws.w)
    free(ws.zwork)
    free(ws.dwork)
    free(ws.rwork)
    free(ws.iwork)


ctypedef fused scalar:
    double
    double complex


cdef void _fill(scalar* dst, const double[:, :, :, ::1] m, int k, int n, int herm) noexcept nogil:
    """dst = M(k) (herm = 0) or M(k) + M(k)^H (herm = 1), row-major, from the planes m[k, 0] (Re) and
    m[k, 1] (Im); the real variant reads m[k, 0] only."""
    cdef int r, c
    if herm:
        for r in range(n):
            for c in range(n):
                if scalar is double:
                    dst[r * n + c] = m[k, 0, r, c] + m[k, 0, c, r]
                else:
                    dst[r * n + c] = (m[k, 0, r, c] + m[k, 0, c, r]) + 1j * (m[k, 1, r, c] - m[k, 1, c, r])
    else:
        for r in range(n):
            for c in range(n):
                if scalar is double:
                    dst[r * n + c] = m[k, 0, r, c]
                else:
                    dst[r * n + c] = m[k, 0, r, c] + 1j * m[k, 1, r, c]


cdef int _heevd(char* jobz, scalar* a, int n, Work* ws) noexcept nogil:
    """Eigenvalues (jobz "N") or also eigenvectors ("V", into a) of the n x n matrix a into ws.w; LAPACK info."""
    cdef int info = 0
    if scalar is double:
        dsyevd(jobz, "L", &n, a, &n, ws.w, ws.dwork, &ws.ldwork, ws.iwork, &ws.liwork, &info)
    else:
        zheevd(jobz, "L", &n, a, &n, ws.w, ws.zwork, &ws.lzwork, ws.rwork, &ws.lrwork,
               ws.iwork, &ws.liwork, &info)
    return info


cdef int _cholesky(scalar* b, int n, Work* ws, int* factored, double* lam) noexcept nogil:
    """Cholesky factor of B in place (potrf) and lam = 1 / ||B^-1||_1 (lanhe/lansy + pocon).

    factored[0] = 0 when B is not positive definite (lam is then not set); returns pocon's info.
    """
    cdef int info = 0
    cdef double anorm, rcond = 0.0
    if scalar is double:
        anorm = dlansy("1", "L", &n, b, &n, ws.dwork)
        dpotrf("L", &n, b, &n, &info)
    else:
        anorm = zlanhe("1", "L", &n, b, &n, ws.rwork)
        zpotrf("L", &n, b, &n, &info)
    factored[0] = info == 0
    if info != 0:
        return 0
    if scalar is double:
        dpocon("L", &n, b, &n, &anorm, &rcond, ws.dwork, ws.iwork, &info)
    else:
        zpocon("L", &n, b, &n, &anorm, &rcond, ws.zwork, ws.rwork, &info)
    lam[0] = rcond * anorm
    return info


cdef int _hegst(scalar* a, scalar* b, int n) noexcept nogil:
    """a = L^-1 a L^-H with the Cholesky factor L in b (itype 1); LAPACK info."""
    cdef int info = 0, itype = 1
    if scalar is double:
        dsygst(&itype, "L", &n, a, &n, b, &n, &info)
    else:
        zhegst(&itype, "L", &n, a, &n, b, &n, &info)
    return info


cdef void _project(scalar* a, scalar* x, scalar* y, scalar* c, int n, int m) noexcept nogil:
    """c (m x m) = X^H A X for A Hermitian (n x n, lower) and X (n x m); y is n x m scratch."""
    cdef scalar one = 1.0, zero = 0.0
    if scalar is double:
        dsymm("L", "L", &n, &m, &one, a, &n, x, &n, &zero, y, &n)
        dgemm("T", "N", &m, &m, &n, &one, x, &n, y, &n, &zero, c, &m)
    else:
        zhemm("L", "L", &n, &m, &one, a, &n, x, &n, &zero, y, &n)
        zgemm("C", "N", &m, &m, &n, &one, x, &n, y, &n, &zero, c, &m)


cdef inline void _store(double[:, ::1] w, int k, const double* src, int m) noexcept nogil:
    """w[k, :m] = src[:m]."""
    cdef int i
    for i in range(m):
        w[k, i] = src[i]


cdef int _canonical_vectors(scalar* b, const double* ev, int n, double lindep, double[:, ::1] w, int k,
                            int* dropped) noexcept nogil:
    """Canonical orthogonalisation after the eigenvectors of B (columns of b, eigenvalues ev ascending).

    Counts the eigenvalues below lindep into dropped[0] = nd, fills w[k] with NaN and scales the kept
    columns nd..n-1 of b by ev^-1/2, so that X = b + nd n holds the m = n − nd columns; returns m.
    """
    cdef int i, j, nd = 0
    cdef double scale
    cdef scalar* x
    while nd < n and ev[nd] < lindep:
        nd += 1
    dropped[0] = nd
    for i in range(n):
        w[k, i] = NAN
    x = b + <size_t> nd * <size_t> n
    for j in range(n - nd):
        scale = 1.0 / sqrt(ev[nd + j])
        for i in range(n):
            x[<size_t> j * n + i] = x[<size_t> j * n + i] * scale
    return n - nd


cdef int _solve_k(scalar* a, scalar* b, scalar* c, scalar* y, int k, int n,
                  const double[:, :, :, ::1] a_in, const double[:, :, :, ::1] b_in, int generalized, int herm,
                  double lindep, Work* ws, double[:, ::1] w, int* dropped) noexcept nogil:
    """Eigenvalues of one k-point into w[k]; a, b, c, y are ws's n x n buffers viewed as `scalar`
    (double: the real path, A(k) and B(k) real; double complex: the complex path). Returns LAPACK info."""
    cdef int info, m, factored = 0
    cdef double lam = 0.0
    dropped[0] = 0
    _fill(a, a_in, k, n, herm)
    if not generalized:
        info = _heevd("N", a, n, ws)
        _store(w, k, ws.w, n)
        return info
    _fill(b, b_in, k, n, herm)
    info = _cholesky(b, n, ws, &factored, &lam)
    if info != 0:
        return info
    if factored and lam >= SAFETY * lindep:
        info = _hegst(a, b, n)
        if info != 0:
            return info
        info = _heevd("N", a, n, ws)
        _store(w, k, ws.w, n)
        return info
    # canonical orthogonalisation
    _fill(b, b_in, k, n, herm)
    info = _heevd("V", b, n, ws)
    if info != 0:
        return info
    m = _canonical_vectors(b, ws.w, n, lindep, w, k, dropped)
    if m == 0:
        return 0
    _project(a, b + <size_t> dropped[0] * <size_t> n, y, c, n, m)
    info = _heevd("N", c, m, ws)
    _store(w, k, ws.w, m)
    return info


cdef int _eig_batch(const double[:, :, :, ::1] a,  # IN (n_k, 2 or 1, n, n) Re, Im of A(k), Hermitian
                    const double[:, :, :, ::1] b,  # IN (n_k, 2 or 1, n, n) Re, Im of B(k), positive
                    const signed char[::1] real_k,   # IN (n_k,) 1: A(k), B(k) real (2k ≡ 0)
                    int generalized,                 # IN 0: eigenvalues of A(k) only, B unused
                    int hermitize,                   # IN 1: the inputs hold X(k), the matrix is X + X^H
                    double lindep,                   # IN drop B eigenvalues below this
                    double[:, ::1] w,                # OUT (n_k, n) ascending, NaN-padded
                    int[::1] n_dropped,              # OUT (n_k,) B eigenvalues dropped
                    int[::1] info,                   # OUT (n_k,) LAPACK info per k
                    int n_threads) noexcept nogil:
    """Eigenvalues for all k-points; returns 0, or the first nonzero info in k order."""
    cdef int n_k = w.shape[0], n = w.shape[1]
    cdef int lz = 0, ld = 0, lr = 0, li = 0, status, k, nd, t, n_ws
    cdef Work* ws
    cdef Work* mine
    cdef int ok = 0
    if n_k == 0 or n == 0:
        return 0
    status = _query(n, &lz, &ld, &lr, &li)
    if status != 0:
        return status
    n_ws = n_threads if n_threads > 0 else 1
    ws = <Work*> calloc(n_ws, sizeof(Work))  # one workspace per thread, reused for every k
    if ws == NULL:
        return STATUS_NO_MEMORY
    for t in range(n_ws):
        ok = ok | _alloc(&ws[t], n, lz, ld, lr, li)
    if ok == 0:
        for k in prange(n_k, schedule="static", num_threads=n_ws):
            nd = 0
            mine = &ws[threadid()]
            if real_k[k]:
                info[k] = _solve_k(<double*> mine.a, <double*> mine.b, <double*> mine.c, <double*> mine.y,
                                   k, n, a, b, generalized, hermitize, lindep, mine, w, &nd)
            else:
                info[k] = _solve_k(mine.a, mine.b, mine.c, mine.y,
                                   k, n, a, b, generalized, hermitize, lindep, mine, w, &nd)
            n_dropped[k] = nd
    for t in range(n_ws):
        _release(&ws[t])
    free(ws)
    if ok != 0:
        return STATUS_NO_MEMORY
    for k in range(n_k):
        if info[k] != 0:
            return info[k]
    return 0


cdef int _real_form_k(int k, const double[:, :, :, ::1] h, const int[::1] r1, const int[::1] r2,
                      const double complex[:, :, ::1] v, double[:, :, ::1] out, double* resid) noexcept nogil:
    """One k-point of `real_form`; real arithmetic throughout (no C complex multiply helpers)."""
    cdef int n = out.shape[1], p, q, a, c, p1, p2, q1, q2
    cdef double* xr = <double*> malloc(<size_t> n * n * sizeof(double))
    cdef double* xi = <double*> malloc(<size_t> n * n * sizeof(double))
    cdef double wr1, wi1, wr2, wi2, yr, yi, l1r, l1i, l2r, l2i, v1r, v1i, v2r, v2i, worst = 0.0
    if xr == NULL or xi == NULL:
        free(xr)
        free(xi)
        return STATUS_NO_MEMORY
    for p in range(n):  # X = H + H^H, row-major
        for q in range(n):
            xr[p * n + q] = h[k, 0, p, q] + h[k, 0, q, p]
            xi[p * n + q] = h[k, 1, p, q] - h[k, 1, q, p]
    for a in range(n):
        p1 = r1[a]
        p2 = r2[a]
        l1r = v[k, a, 0].real
        l1i = -v[k, a, 0].imag  # conj(v1[a])
        l2r = v[k, a, 1].real
        l2i = -v[k, a, 1].imag  # conj(v2[a])
        for c in range(n):
            q1 = r1[c]
            q2 = r2[c]
            v1r = v[k, c, 0].real
            v1i = v[k, c, 0].imag
            v2r = v[k, c, 1].real
            v2i = v[k, c, 1].imag
            # w1 = X[p1, q1] v1 + X[p1, q2] v2 ; w2 = X[p2, q1] v1 + X[p2, q2] v2
            wr1 = (xr[p1 * n + q1] * v1r - xi[p1 * n + q1] * v1i
                   + xr[p1 * n + q2] * v2r - xi[p1 * n + q2] * v2i)
            wi1 = (xr[p1 * n + q1] * v1i + xi[p1 * n + q1] * v1r
                   + xr[p1 * n + q2] * v2i + xi[p1 * n + q2] * v2r)
            wr2 = (xr[p2 * n + q1] * v1r - xi[p2 * n + q1] * v1i
                   + xr[p2 * n + q2] * v2r - xi[p2 * n + q2] * v2i)
            wi2 = (xr[p2 * n + q1] * v1i + xi[p2 * n + q1] * v1r
                   + xr[p2 * n + q2] * v2i + xi[p2 * n + q2] * v2r)
            yr = l1r * wr1 - l1i * wi1 + l2r * wr2 - l2i * wi2
            yi = l1r * wi1 + l1i * wr1 + l2r * wi2 + l2i * wr2
            out[k, a, c] = yr
            if yi < 0:
                yi = -yi
            if yi > worst:
                worst = yi
    free(xr)
    free(xi)
    resid[0] = worst
    return 0


cdef int _real_form(const double[:, :, :, ::1] h,        # IN (n_k, 2, n, n) Re, Im of H(k), X = H + H^H
                    const int[::1] r1,                   # IN (n,) first row of column c of V
                    const int[::1] r2,                   # IN (n,) second row of column c of V
                    const double complex[:, :, ::1] v,   # IN (n_k, n, 2) V[r1[c], c], V[r2[c], c]
                    double[:, :, ::1] out,               # OUT (n_k, n, n) Re (V^H X V)
                    double[::1] resid,                   # OUT (n_k,) max |Im (V^H X V)|
                    int[::1] info,                       # OUT (n_k,) 0, or NO_MEMORY
                    int n_threads) noexcept nogil:
    """The basis change to real form of an inversion-symmetric Bloch matrix (two non-zeros per column)."""
    cdef int n_k = out.shape[0], k
    for k in prange(n_k, schedule="static", num_threads=n_threads):
        info[k] = _real_form_k(k, h, r1, r2, v, out, &resid[k])
    for k in range(n_k):
        if info[k] != 0:
            return info[k]
    return 0


def real_form(const double[:, :, :, ::1] h not None,       # IN (n_k, 2, n, n) Re, Im of H(k)
              const int[::1] r1 not None,                  # IN (n,) first row of column c of V
              const int[::1] r2 not None,                  # IN (n,) second row of column c of V
              const double complex[:, :, ::1] v not None,  # IN (n_k, n, 2) V[r1[c], c], V[r2[c], c]
              double[:, :, ::1] out not None,              # OUT (n_k, n, n) Re (V^H X V)
              double[::1] resid not None,                  # OUT (n_k,) max |Im (V^H X V)|
              int[::1] info not None,                      # OUT (n_k,) 0, or NO_MEMORY
              int n_threads) -> int:
    """Python face of `_real_form`; returns the status (0, NO_MEMORY or BAD_SHAPE)."""
    cdef Py_ssize_t n_k = out.shape[0], n = out.shape[1]
    cdef int status
    if (h.shape[0] != n_k or h.shape[1] != 2 or h.shape[2] != n or h.shape[3] != n or out.shape[2] != n
            or r1.shape[0] != n or r2.shape[0] != n or v.shape[0] != n_k or v.shape[1] != n or v.shape[2] != 2
            or resid.shape[0] != n_k or info.shape[0] != n_k):
        return STATUS_BAD_SHAPE
    with nogil:
        status = _real_form(h, r1, r2, v, out, resid, info, n_threads)
    return status


def eig_batch(const double[:, :, :, ::1] a not None,  # IN (n_k, 2, n, n) Re, Im of A(k); 1 plane if all real_k
              const double[:, :, :, ::1] b not None,  # IN as a, for B(k); unused (may be a) unless generalized
              const signed char[::1] real_k not None,   # IN (n_k,) 1: A(k), B(k) real (2k ≡ 0)
              bint generalized,                         # IN False: eigenvalues of A(k) only
              bint hermitize,                           # IN True: the inputs hold X(k), the matrix is X + X^H
              double lindep,                            # IN drop B eigenvalues below this
              double[:, ::1] w not None,                # OUT (n_k, n) ascending, NaN-padded
              int[::1] n_dropped not None,              # OUT (n_k,) B eigenvalues dropped
              int[::1] info not None,                   # OUT (n_k,) LAPACK info per k
              int n_threads) -> int:
    """Python face of `_eig_batch`; returns the status (0, the first LAPACK info in k order, NO_MEMORY or
    BAD_SHAPE)."""
    cdef Py_ssize_t n_k = w.shape[0], n = w.shape[1], k
    cdef int status, planes = 1
    if real_k.shape[0] != n_k or n_dropped.shape[0] != n_k or info.shape[0] != n_k:
        return STATUS_BAD_SHAPE
    for k in range(n_k):
        if not real_k[k]:
            planes = 2  # a k-point on the complex path reads the imaginary plane
            break
    if (a.shape[0] != n_k or a.shape[1] < planes or a.shape[2] != n or a.shape[3] != n
            or (generalized and (b.shape[0] != n_k or b.shape[1] < planes or b.shape[2] != n or b.shape[3] != n))):
        return STATUS_BAD_SHAPE
    with nogil:
        status = _eig_batch(a, b, real_k, generalized, hermitize, lindep, w, n_dropped, info, n_threads)
    return status
