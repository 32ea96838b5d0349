# cython: language_level=3
"""Smearing kernels: δ(x), θ(x), occupation counts and the smeared DOS accumulation.

Convention (DESIGN.md §3): x = (ε_ref − ε)/σ, θ(x) → 1 for states far below ε_ref, δ = dθ/dx.
The smearing kind is an integer code switched inside one loop (codes in sporep_hpc.smearing):
0 gaussian, 1 fermi-dirac, 2 methfessel-paxton (order N), 3 cold (Marzari-Vanderbilt).
Beyond |x| > cutoff (chosen in Python so that |δ| < 1e-16) δ is exactly 0 and θ exactly 0 or 1.

The `nogil` routines take clean, contiguous float64 memoryviews, hold no Python objects and return an int
status (0 success, 1 bad kind, 2 bad shape); the `def` faces take typed memoryviews and return that status,
and the Python callers (sporep_hpc.smearing, sporep_hpc.bands) check inputs before and raise after.
Reductions are done per fixed chunk of rows (not per thread) and the chunk partials summed in chunk order
afterwards, so the results do not depend on the number of threads.
"""

from cython.parallel cimport prange
from libc.math cimport erfc, exp, fabs, sqrt, M_PI

# Interface version of the `def` faces, checked by sporep_hpc._ext.load (bump with any signature change).
ABI = 2

cdef enum:
    GAUSSIAN = 0
    FERMI_DIRAC = 1
    METHFESSEL_PAXTON = 2
    COLD = 3

cdef double INV_SQRT_PI = 1.0 / sqrt(M_PI)
cdef double INV_SQRT_2PI = 1.0 / sqrt(2.0 * M_PI)
cdef double INV_SQRT2 = 1.0 / sqrt(2.0)
cdef double SQRT2 = sqrt(2.0)


cdef inline double _delta(double x, int kind, int order, double cutoff) noexcept nogil:
    """δ(x) = dθ/dx for one clean argument (0 beyond the cut-off)."""
    cdef double e, u, h_prev, h_cur, h_next, a, s, ax
    cdef int m, n
    if fabs(x) > cutoff or x != x:
        return 0.0
    if kind == GAUSSIAN:
        return exp(-x * x) * INV_SQRT_PI
    elif kind == FERMI_DIRAC:
        ax = fabs(x)
        e = exp(-ax)
        return e / ((1.0 + e) * (1.0 + e))
    elif kind == METHFESSEL_PAXTON:
        # δ_N = e^{-x²} Σ_{n=0..N} A_n H_{2n}(x), A_n = (-1)^n / (n! 4^n √π)
        a = INV_SQRT_PI
        s = a
        h_prev = 1.0          # H_0
        h_cur = 2.0 * x       # H_1
        for n in range(1, order + 1):
            m = 2 * n - 1     # h_cur = H_m; advance twice to H_{2n}
            h_next = 2.0 * x * h_cur - 2.0 * m * h_prev
            h_prev = h_cur
            h_cur = h_next    # H_{2n}
            a = -a / (4.0 * n)
            s = s + a * h_cur
            h_next = 2.0 * x * h_cur - 2.0 * (m + 1) * h_prev
            h_prev = h_cur
            h_cur = h_next    # H_{2n+1}
        return s * exp(-x * x)
    elif kind == COLD:
        u = x - INV_SQRT2
        return exp(-u * u) * (2.0 - SQRT2 * x) * INV_SQRT_PI
    return 0.0


cdef inline double _theta(double x, int kind, int order, double cutoff) noexcept nogil:
    """θ(x) for one clean argument (exactly 0 or 1 beyond the cut-off)."""
    cdef double e, u, h_prev, h_cur, h_next, a, s
    cdef int m, n
    if x != x:
        return x
    if x > cutoff:
        return 1.0
    if x < -cutoff:
        return 0.0
    if kind == GAUSSIAN:
        return 0.5 * erfc(-x)
    elif kind == FERMI_DIRAC:
        if x >= 0.0:
            return 1.0 / (1.0 + exp(-x))
        e = exp(x)
        return e / (1.0 + e)
    elif kind == METHFESSEL_PAXTON:
        # θ_N = ½ erfc(−x) − e^{-x²} Σ_{n=1..N} A_n H_{2n−1}(x)
        a = INV_SQRT_PI
        s = 0.0
        h_prev = 1.0          # H_0
        h_cur = 2.0 * x       # H_1
        for n in range(1, order + 1):
            a = -a / (4.0 * n)
            s = s + a * h_cur  # H_{2n-1}
            m = 2 * n - 1
            h_next = 2.0 * x * h_cur - 2.0 * m * h_prev
            h_prev = h_cur
            h_cur = h_next    # H_{2n}
            h_next = 2.0 * x * h_cur - 2.0 * (m + 1) * h_prev
            h_prev = h_cur
            h_cur = h_next    # H_{2n+1}
        return 0.5 * erfc(-x) - s * exp(-x * x)
    elif kind == COLD:
        u = x - INV_SQRT2
        return 0.5 * erfc(-u) + exp(-u * u) * INV_SQRT_2PI
    return 0.0


cdef int _map(const double[::1] x,   # IN (n,)
              double[::1] out,       # OUT (n,)
              bint want_theta,       # IN True: θ, False: δ
              int kind, int order, double cutoff, int n_threads) noexcept nogil:
    """out[i] = θ(x[i]) (want_theta) or δ(x[i]); shared body of `delta_array` and `theta_array`."""
    cdef Py_ssize_t i, n = x.shape[0]
    if out.shape[0] != n:
        return 2
    if kind < 0 or kind > 3:
        return 1
    for i in prange(n, schedule="static", num_threads=n_threads):
        out[i] = _theta(x[i], kind, order, cutoff) if want_theta else _delta(x[i], kind, order, cutoff)
    return 0


def delta_array(const double[::1] x not None,  # IN (n,)
                double[::1] out not None,      # OUT (n,)
                int kind, int order, double cutoff, int n_threads) -> int:
    """out[i] = δ(x[i]); returns the status."""
    cdef int status
    with nogil:
        status = _map(x, out, False, kind, order, cutoff, n_threads)
    return status


def theta_array(const double[::1] x not None,  # IN (n,)
                double[::1] out not None,      # OUT (n,)
                int kind, int order, double cutoff, int n_threads) -> int:
    """out[i] = θ(x[i]); returns the status."""
    cdef int status
    with nogil:
        status = _map(x, out, True, kind, order, cutoff, n_threads)
    return status


cdef inline Py_ssize_t _lower_bound(const double[::1] a, double value) noexcept nogil:
    """First index i with a[i] >= value (a sorted ascending); a.shape[0] if none."""
    cdef Py_ssize_t lo = 0, hi = a.shape[0], mid
    while lo < hi:
        mid = (lo + hi) // 2
        if a[mid] < value:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef int _dos_chunk(const double[:, ::1] eig, const double[::1] wk, const double[::1] energies,
                    double[:, ::1] work, Py_ssize_t c, Py_ssize_t row0, Py_ssize_t row1,
                    int kind, int order, double inv_sigma, double cutoff, double sigma) noexcept nogil:
    cdef Py_ssize_t r, n, j, j0, j1, n_e = energies.shape[0], n_b = eig.shape[1]
    cdef double eps, pref
    for j in range(n_e):
        work[c, j] = 0.0
    for r in range(row0, row1):
        pref = wk[r] * inv_sigma
        for n in range(n_b):
            eps = eig[r, n]
            if eps != eps:
                continue
            j0 = _lower_bound(energies, eps - cutoff * sigma)
            j1 = _lower_bound(energies, eps + cutoff * sigma)
            for j in range(j0, j1 + 1 if j1 < n_e else n_e):
                work[c, j] += pref * _delta((energies[j] - eps) * inv_sigma, kind, order, cutoff)
    return 0


cdef int _dos(const double[:, ::1] eig,    # IN (n_rows, n_bands) eV, rows = (spin, k) pairs, NaN = padding
              const double[::1] wk,        # IN (n_rows,) weight × spin degeneracy per row
              const double[::1] energies,  # IN (n_e,) eV, sorted ascending
              double[::1] out,             # OUT (n_e,) states/eV
              double[:, ::1] work,         # scratch (n_chunks, n_e)
              int kind, int order, double sigma, double cutoff, int n_threads) noexcept nogil:
    """out[j] = Σ_r wk[r] Σ_n δ((E_j − ε_rn)/σ)/σ; returns the status.

    Rows are split into work.shape[0] fixed chunks; chunk partials are summed in chunk order.
    """
    cdef Py_ssize_t c, j, n_rows = eig.shape[0], n_e = energies.shape[0]
    cdef Py_ssize_t n_chunks = work.shape[0]
    cdef double inv_sigma = 1.0 / sigma
    cdef double acc
    if wk.shape[0] != n_rows or out.shape[0] != n_e or work.shape[1] != n_e or n_chunks < 1:
        return 2
    if kind < 0 or kind > 3:
        return 1
    for c in prange(n_chunks, schedule="static", num_threads=n_threads):
        _dos_chunk(eig, wk, energies, work, c, (c * n_rows) // n_chunks, ((c + 1) * n_rows) // n_chunks,
                   kind, order, inv_sigma, cutoff, sigma)
    for j in range(n_e):
        acc = 0.0
        for c in range(n_chunks):
            acc = acc + work[c, j]
        out[j] = acc
    return 0


def dos(const double[:, ::1] eig not None,    # IN (n_rows, n_bands) eV, rows = (spin, k) pairs, NaN = padding
        const double[::1] wk not None,        # IN (n_rows,) weight × spin degeneracy per row
        const double[::1] energies not None,  # IN (n_e,) eV, sorted ascending
        double[::1] out not None,             # OUT (n_e,) states/eV
        double[:, ::1] work not None,         # scratch (n_chunks, n_e)
        int kind, int order, double sigma, double cutoff, int n_threads) -> int:
    """Python face of `_dos`; returns the status."""
    cdef int status
    with nogil:
        status = _dos(eig, wk, energies, out, work, kind, order, sigma, cutoff, n_threads)
    return status


cdef int _electron_count(const double[:, ::1] eig,  # IN (n_rows, n_bands) eV, NaN = padding
                         const double[::1] wk,      # IN (n_rows,) weight × spin degeneracy per row
                         double mu,                 # IN trial Fermi level, eV
                         double[:, ::1] work,       # scratch (n_chunks, 2)
                         double[::1] out,           # OUT (2,): N(μ), dN/dμ (1/eV)
                         int kind, int order, double sigma, double cutoff, int n_threads) noexcept nogil:
    """N(μ) = Σ_r wk[r] Σ_n θ((μ − ε_rn)/σ) and its derivative Σ wk δ/σ; returns the status."""
    cdef Py_ssize_t c, r, n, row0, row1, n_rows = eig.shape[0], n_b = eig.shape[1]
    cdef Py_ssize_t n_chunks = work.shape[0]
    cdef double inv_sigma = 1.0 / sigma
    cdef double x, eps, s0, s1, t0, t1
    if wk.shape[0] != n_rows or out.shape[0] != 2 or work.shape[1] != 2 or n_chunks < 1:
        return 2
    if kind < 0 or kind > 3:
        return 1
    for c in prange(n_chunks, schedule="static", num_threads=n_threads):
        row0 = (c * n_rows) // n_chunks
        row1 = ((c + 1) * n_rows) // n_chunks
        s0 = 0.0
        s1 = 0.0
        for r in range(row0, row1):
            t0 = 0.0
            t1 = 0.0
            for n in range(n_b):
                eps = eig[r, n]
                if eps != eps:
                    continue
                x = (mu - eps) * inv_sigma
                t0 = t0 + _theta(x, kind, order, cutoff)
                t1 = t1 + _delta(x, kind, order, cutoff)
            s0 = s0 + wk[r] * t0
            s1 = s1 + wk[r] * t1
        work[c, 0] = s0
        work[c, 1] = s1 * inv_sigma
    s0 = 0.0
    s1 = 0.0
    for c in range(n_chunks):
        s0 = s0 + work[c, 0]
        s1 = s1 + work[c, 1]
    out[0] = s0
    out[1] = s1
    return 0


def electron_count(const double[:, ::1] eig not None,  # IN (n_rows, n_bands) eV, NaN = padding
                   const double[::1] wk not None,      # IN (n_rows,) weight × spin degeneracy per row
                   double mu,                          # IN trial Fermi level, eV
                   double[:, ::1] work not None,       # scratch (n_chunks, 2)
                   double[::1] out not None,           # OUT (2,): N(μ), dN/dμ (1/eV)
                   int kind, int order, double sigma, double cutoff, int n_threads) -> int:
    """Python face of `_electron_count`; returns the status."""
    cdef int status
    with nogil:
        status = _electron_count(eig, wk, mu, work, out, kind, order, sigma, cutoff, n_threads)
    return status
