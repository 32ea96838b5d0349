# cython: language_level=3
"""Obara–Saika overlap and kinetic integrals of contracted real spherical Gaussians (l <= 3),
real-space lattice blocks per translation, and Bloch phases for all k-points in one GEMM.

Kernels only: inputs are clean (validated by sporep_hpc.operators), units are Bohr and Hartree. The
`nogil` routines return an int status; the `def` faces take typed memoryviews and return that status,
and the Python caller (sporep_hpc.operators) raises, naming the structure.

Shell table columns (int32): atom, l, n_prim, first AO. Primitive-pair table (float64, per pair of
shell kinds): a, b, 1/p, μ = ab/p, c_a c_b (π/p)^{3/2}, r²_max (screening radius²).
Cartesian order per l (PySCF): lx from l down to 0, then ly from l - lx down to 0.
"""

from cython.parallel cimport parallel, prange
from libc.math cimport exp
from scipy.linalg.cython_blas cimport dgemm

# Interface version of the `def` faces, checked by sporep_hpc._ext.load (bump with any signature change).
ABI = 2

cdef enum:
    LMAX = 3
    NCART = 10      # cartesian functions for l = 3
    NSPH = 7        # spherical functions for l = 3
    JDIM = LMAX + 3  # 1-D overlap table: j up to l_b + 2 (kinetic)

# shell table columns
cdef enum:
    SH_ATOM = 0
    SH_L = 1
    SH_NP = 2
    SH_AO = 3

# primitive-pair table columns
cdef enum:
    PP_A = 0
    PP_B = 1
    PP_INVP = 2
    PP_MU = 3
    PP_PREF = 4
    PP_RMAX2 = 5


cdef inline int _ncart(int l) noexcept nogil:
    return (l + 1) * (l + 2) // 2


cdef inline int _cart_offset(int l) noexcept nogil:
    # number of cartesian functions of all lower l: 0, 1, 4, 10
    return l * (l + 1) * (l + 2) // 6


cdef void _table1d(double pa, double pb, double inv2p, int imax, int jmax,
                   double[JDIM][JDIM] s) noexcept nogil:
    """1-D Obara–Saika overlap table s[i][j] of x_A^i x_B^j, without the Gaussian prefactor."""
    cdef int i, j
    s[0][0] = 1.0
    for j in range(jmax):
        s[0][j + 1] = pb * s[0][j] + (j * s[0][j - 1] if j > 0 else 0.0) * inv2p
    for i in range(imax):
        for j in range(jmax + 1):
            s[i + 1][j] = pa * s[i][j] + (
                (i * s[i - 1][j] if i > 0 else 0.0) + (j * s[i][j - 1] if j > 0 else 0.0)) * inv2p


cdef void _kin1d(double b, int imax, int jmax, double[JDIM][JDIM] s,
                 double[JDIM][JDIM] k) noexcept nogil:
    """1-D kinetic table: <x_A^i| -1/2 d²/dx² |x_B^j exp(-b x_B²)> from the overlap table."""
    cdef int i, j
    for i in range(imax + 1):
        for j in range(jmax + 1):
            k[i][j] = b * (2 * j + 1) * s[i][j] - 2.0 * b * b * s[i][j + 2]
            if j >= 2:
                k[i][j] -= 0.5 * j * (j - 1) * s[i][j - 2]


cdef int _pair_blocks(int ish, int jsh, int pp0, int mirror,
                      const double[:, ::1] atom_xyz,
                      const int[:, ::1] shells,
                      const double[:, ::1] prim_pairs,
                      double rcut2,
                      const double[:, ::1] trans,
                      const int[::1] slot,
                      const int[::1] mslot,
                      const double[:, :, ::1] c2s,
                      const int[:, ::1] cart_pows,
                      int want_kinetic,
                      double[:, :, ::1] s_out,
                      double[:, :, ::1] t_out) noexcept nogil:
    """All stored translation blocks of one shell pair; mirror: also write the (jsh, ish) block at -T."""
    cdef double sx[JDIM][JDIM]
    cdef double sy[JDIM][JDIM]
    cdef double sz[JDIM][JDIM]
    cdef double kx[JDIM][JDIM]
    cdef double ky[JDIM][JDIM]
    cdef double kz[JDIM][JDIM]
    cdef double sc[NCART][NCART]
    cdef double tc[NCART][NCART]
    cdef double half_s[NSPH][NCART]
    cdef double half_t[NSPH][NCART]
    cdef int la = shells[ish, SH_L], lb = shells[jsh, SH_L]
    cdef int na = _ncart(la), nb = _ncart(lb), ma = 2 * la + 1, mb = 2 * lb + 1
    cdef int oa = _cart_offset(la), ob = _cart_offset(lb)
    cdef int n_pp = shells[ish, SH_NP] * shells[jsh, SH_NP]
    cdef int aoa = shells[ish, SH_AO], aob = shells[jsh, SH_AO]
    cdef int jmax = lb + 2 if want_kinetic else lb
    cdef double ax = atom_xyz[shells[ish, SH_ATOM], 0]
    cdef double ay = atom_xyz[shells[ish, SH_ATOM], 1]
    cdef double az = atom_xyz[shells[ish, SH_ATOM], 2]
    cdef double bx0 = atom_xyz[shells[jsh, SH_ATOM], 0]
    cdef double by0 = atom_xyz[shells[jsh, SH_ATOM], 1]
    cdef double bz0 = atom_xyz[shells[jsh, SH_ATOM], 2]
    cdef double abx, aby, abz, r2, a, b, inv_p, pref, half_inv_p
    cdef double sval, tval, acc_s, acc_t, sxy, kin
    cdef int t, row, c, d, m, n, ix, iy, iz, jx, jy, jz, any_prim
    cdef int n_t = trans.shape[0]

    for t in range(n_t):
        abx = ax - bx0 - trans[t, 0]
        aby = ay - by0 - trans[t, 1]
        abz = az - bz0 - trans[t, 2]
        r2 = abx * abx + aby * aby + abz * abz
        if r2 > rcut2 or (slot[t] < 0 and (not mirror or mslot[t] < 0)):
            continue
        for c in range(na):
            for d in range(nb):
                sc[c][d] = 0.0
                tc[c][d] = 0.0
        any_prim = 0
        # primitive pairs are sorted by decreasing screening radius: stop at the first one out of range
        for row in range(pp0, pp0 + n_pp):
            if r2 > prim_pairs[row, PP_RMAX2]:
                break
            any_prim = 1
            a = prim_pairs[row, PP_A]
            b = prim_pairs[row, PP_B]
            inv_p = prim_pairs[row, PP_INVP]
            half_inv_p = 0.5 * inv_p
            pref = prim_pairs[row, PP_PREF] * exp(-prim_pairs[row, PP_MU] * r2)
            _table1d(-b * abx * inv_p, a * abx * inv_p, half_inv_p, la, jmax, sx)
            _table1d(-b * aby * inv_p, a * aby * inv_p, half_inv_p, la, jmax, sy)
            _table1d(-b * abz * inv_p, a * abz * inv_p, half_inv_p, la, jmax, sz)
            if want_kinetic:
                _kin1d(b, la, lb, sx, kx)
                _kin1d(b, la, lb, sy, ky)
                _kin1d(b, la, lb, sz, kz)
            for c in range(na):
                ix = cart_pows[oa + c, 0]
                iy = cart_pows[oa + c, 1]
                iz = cart_pows[oa + c, 2]
                for d in range(nb):
                    jx = cart_pows[ob + d, 0]
                    jy = cart_pows[ob + d, 1]
                    jz = cart_pows[ob + d, 2]
                    sxy = sx[ix][jx] * sy[iy][jy]
                    sc[c][d] += pref * sxy * sz[iz][jz]
                    if want_kinetic:
                        kin = (kx[ix][jx] * sy[iy][jy] + sx[ix][jx] * ky[iy][jy]) * sz[iz][jz] + sxy * kz[iz][jz]
                        tc[c][d] += pref * kin
        if not any_prim:
            continue
        # cartesian -> spherical: C_a sc C_b^T
        for m in range(ma):
            for d in range(nb):
                acc_s = 0.0
                acc_t = 0.0
                for c in range(na):
                    acc_s += c2s[la, m, c] * sc[c][d]
                    acc_t += c2s[la, m, c] * tc[c][d]
                half_s[m][d] = acc_s
                half_t[m][d] = acc_t
        for m in range(ma):
            for n in range(mb):
                sval = 0.0
                tval = 0.0
                for d in range(nb):
                    sval += half_s[m][d] * c2s[lb, n, d]
                    tval += half_t[m][d] * c2s[lb, n, d]
                if slot[t] >= 0:
                    s_out[slot[t], aoa + m, aob + n] = sval
                    if want_kinetic:
                        t_out[slot[t], aoa + m, aob + n] = tval
                if mirror and mslot[t] >= 0:
                    s_out[mslot[t], aob + n, aoa + m] = sval
                    if want_kinetic:
                        t_out[mslot[t], aob + n, aoa + m] = tval
    return 0


cdef int _lattice_blocks(const double[:, ::1] atom_xyz,    # IN (n_atoms, 3) Bohr
                         const int[:, ::1] shells,         # IN (n_shells, 4) atom, l, n_prim, first AO
                         const int[:, ::1] pairs,          # IN (n_pairs, 3) shell I <= shell J, first pp row
                         const double[::1] pair_rcut2,     # IN (n_pairs,) squared screening radius, Bohr²
                         const double[:, ::1] prim_pairs,  # IN (n_pp, 6) a, b, 1/p, μ, c_a c_b (π/p)^1.5, r²_max
                         const double[:, ::1] trans,       # IN (n_T, 3) lattice translations, Bohr
                         const int[::1] slot,              # IN (n_T,) output slot of T, -1: not stored
                         const int[::1] mslot,             # IN (n_T,) output slot of -T, -1: not stored
                         const double[:, :, ::1] c2s,      # IN (4, 7, 10) cartesian -> spherical
                         const int[:, ::1] cart_pows,      # IN (20, 3) cartesian powers, l = 0..3
                         int want_kinetic,                 # IN 0: overlap only
                         double[:, :, ::1] s_out,          # OUT (n_slots, n_ao, n_ao) zero-initialised
                         double[:, :, ::1] t_out,          # OUT (n_slots, n_ao, n_ao) zero-initialised
                         int n_threads) noexcept nogil:
    """S_T[μ, ν] = <χ_μ(r - R_μ) | χ_ν(r - R_ν - T)> and the kinetic analogue for every T.

    The n_prim(I) * n_prim(J) primitive-pair rows of a shell pair start at pairs[q, 2], sorted by
    decreasing r²_max (beyond which the pair's contribution is below the screening threshold).
    Only the translations with a slot are stored (the caller keeps T = 0 and one of each ±T pair, as
    S_{-T} = S_T^T); block (J, I) at T is (I, J) at -T transposed. Each shell pair is computed by one
    thread and writes its own blocks (I, J, T) and (J, I, -T): results do not depend on the thread count.
    Pairs go to threads in round-robin chunks of 8 consecutive pairs (balance, without two threads
    writing into the same cache lines of neighbouring blocks at every step).
    """
    cdef Py_ssize_t q
    cdef int n_pairs = pairs.shape[0]
    for q in prange(n_pairs, schedule="static", chunksize=8, num_threads=n_threads):
        _pair_blocks(pairs[q, 0], pairs[q, 1], pairs[q, 2], pairs[q, 0] != pairs[q, 1], atom_xyz, shells,
                     prim_pairs, pair_rcut2[q], trans, slot, mslot, c2s, cart_pows, want_kinetic, s_out,
                     t_out)
    return 0


cdef int _bloch_phase(const double[:, :, ::1] blocks,  # IN (n_op, n_T, m) real-space blocks, flattened
                      const double[:, ::1] phases,     # IN (n_rows, n_T) rows cos(2πk·n), sin(2πk·n), ...
                      double[:, :, ::1] out,           # OUT (n_op, n_rows, m) = phases @ blocks[op]
                      int n_threads) noexcept nogil:
    """One real GEMM per operator for all k-points, its rows split in n_threads static chunks."""
    cdef int n_op = blocks.shape[0], n_t = blocks.shape[1], m = blocks.shape[2]
    cdef int n_rows = phases.shape[0]
    cdef int chunk = (n_rows + n_threads - 1) // n_threads
    cdef int c, r0, nr, op
    cdef double one = 1.0, zero = 0.0
    if n_rows == 0 or m == 0 or n_op == 0:
        return 0
    if n_t == 0:
        return -1
    for c in prange(n_threads, schedule="static", num_threads=n_threads):
        r0 = c * chunk
        nr = min(chunk, n_rows - r0)
        if nr > 0:
            for op in range(n_op):
                # column-major view: out^T (m x nr) = blocks^T (m x n_T) @ phases^T (n_T x nr)
                dgemm("N", "N", &m, &nr, &n_t, &one, <double*> &blocks[op, 0, 0], &m,
                      <double*> &phases[r0, 0], &n_t, &zero, &out[op, r0, 0], &m)
    return 0


def lattice_blocks(const double[:, ::1] atom_xyz not None,    # IN (n_atoms, 3) Bohr
                   const int[:, ::1] shells not None,         # IN (n_shells, 4) atom, l, n_prim, first AO
                   const int[:, ::1] pairs not None,          # IN (n_pairs, 3) shell I <= shell J, first pp row
                   const double[::1] pair_rcut2 not None,     # IN (n_pairs,) squared screening radius, Bohr²
                   const double[:, ::1] prim_pairs not None,  # IN (n_pp, 6) see `_lattice_blocks`
                   const double[:, ::1] trans not None,       # IN (n_T, 3) lattice translations, Bohr
                   const int[::1] slot not None,              # IN (n_T,) output slot of T, -1: not stored
                   const int[::1] mslot not None,             # IN (n_T,) output slot of -T, -1: not stored
                   const double[:, :, ::1] c2s not None,      # IN (4, 7, 10) cartesian -> spherical
                   const int[:, ::1] cart_pows not None,      # IN (20, 3) cartesian powers, l = 0..3
                   bint want_kinetic,                         # IN False: overlap only
                   double[:, :, ::1] s_out not None,          # OUT (n_slots, n_ao, n_ao) zero-initialised
                   double[:, :, ::1] t_out not None,          # OUT (n_slots, n_ao, n_ao) zero-initialised
                   int n_threads) -> int:
    """Python face of `_lattice_blocks` (t_out may be s_out when not want_kinetic); returns the status."""
    cdef int status
    with nogil:
        status = _lattice_blocks(atom_xyz, shells, pairs, pair_rcut2, prim_pairs, trans, slot, mslot, c2s,
                                 cart_pows, want_kinetic, s_out, t_out, n_threads)
    return status


def bloch_phase(const double[:, :, ::1] blocks not None,  # IN (n_op, n_T, m) real-space blocks, flattened
                const double[:, ::1] phases not None,     # IN (n_rows, n_T) rows cos(2πk·n), sin(2πk·n), ...
                double[:, :, ::1] out not None,           # OUT (n_op, n_rows, m) = phases @ blocks[op]
                int n_threads) -> int:
    """Python face of `_bloch_phase`; returns the status (-1: no translation)."""
    cdef int status
    with nogil:
        status = _bloch_phase(blocks, phases, out, n_threads)
    return status
