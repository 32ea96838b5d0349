"""Basis sets: the valence-minimal ANO rule, primitive discarding, normalisation, errors.

References: the rule table of DESIGN.md §3 (hand-written expectations below), basis_set_exchange's raw
data, numerical radial quadrature (scipy.integrate.quad) for norms, and PySCF's own basis parser for
function counts of other bases.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.integrate import quad

from sporep_hpc.basis import BasisSet, Shell, load_basis, n_ao, valence_electrons
from sporep_hpc.errors import InputError, ParameterError

# DESIGN.md §3 valence-minimal rule: kept angular momenta and valence electrons (by hand)
RULE = {
    "H": ((0,), 1), "He": ((0,), 2), "Li": ((0,), 1), "C": ((0, 1), 4), "O": ((0, 1), 6),
    "Na": ((0,), 1), "Si": ((0, 1), 4), "K": ((0,), 1), "Ti": ((0, 2), 4), "Zn": ((0, 2), 12),
    "Ga": ((0, 1, 2), 13), "Sr": ((0,), 2), "Y": ((0, 2), 3), "Sn": ((0, 1, 2), 14), "Ba": ((0,), 2),
    "La": ((0, 2), 3), "Ce": ((0, 2, 3), 4), "Lu": ((0, 2, 3), 17), "Hf": ((0, 2), 4), "Pb": ((0, 1, 2), 14),
}


@pytest.fixture(scope="module")
def ano():
    return load_basis()


@pytest.mark.parametrize("symbol", list(RULE))
def test_valence_rule(ano, symbol):
    ls, electrons = RULE[symbol]
    assert tuple(sh.l for sh in ano.element(symbol)) == ls
    assert valence_electrons([symbol], ano) == electrons
    assert n_ao([symbol], ano) == sum(2 * ang + 1 for ang in ls)


def test_outermost_contraction_from_raw_bse_data(ano):
    # "outermost" = last coefficient column of the last block with that l (DESIGN.md §3), read here
    # directly from basis_set_exchange for Ti (s: 4s, d: 3d) with exponents >= 0.1 kept
    import basis_set_exchange as bse

    raw = bse.get_basis("ANO-RCC-MB", elements=[22])["elements"]["22"]["electron_shells"]
    for shell in ano.element("Ti"):
        block = [b for b in raw if b["angular_momentum"] == [shell.l]][-1]
        exps = np.array(block["exponents"], dtype=float)
        col = np.array(block["coefficients"][-1], dtype=float)
        keep = (exps >= 0.1) & (col != 0)
        assert_allclose(shell.exponents, exps[keep], rtol=0, atol=0)
        # same direction as the raw column (renormalised): the ratio is one constant
        ratio = shell.coefficients / col[keep]
        assert_allclose(ratio, ratio[0], rtol=1e-12)


@pytest.mark.parametrize("symbol", ["H", "O", "Ti", "Ce", "Ba"])
def test_contracted_functions_have_unit_norm(ano, symbol):
    # ∫ R(r)² r² dr = 1 with R = Σ_p d_p r^l e^{-a_p r²}: the radial part of a unit-norm function
    # (the real spherical harmonics have unit norm on the sphere), integrated numerically
    for shell in ano.element(symbol):
        d, a = shell.kernel_coefficients, shell.exponents

        def f(r, d=d, a=a, ang=shell.l):
            return (np.sum(d * r**ang * np.exp(-a * r * r))) ** 2 * r * r

        norm = quad(f, 0, 60, limit=400, epsabs=1e-13, epsrel=1e-12)[0]
        assert norm == pytest.approx(1.0, abs=1e-9)


def test_exp_to_discard(ano):
    assert all(e >= 0.1 for sh in ano.element("Ba") for e in sh.exponents)
    full = load_basis("ano-valence", 0.0)
    n_full = sum(len(sh.exponents) for sh in full.element("Ba"))
    assert n_full > sum(len(sh.exponents) for sh in ano.element("Ba"))
    assert min(sh.exponents.min() for sh in full.element("Ba")) < 0.1
    tight = load_basis("ano-valence", 1.0)
    assert all(e >= 1.0 for sh in tight.element("Si") for e in sh.exponents)


def test_cached_and_case_insensitive(ano):
    assert load_basis() is ano
    assert load_basis("ANO-Valence", 0.1) is ano
    assert load_basis("ano-valence", 0.2) is not ano


def test_unknown_element_message(ano):
    with pytest.raises(InputError, match=r"element Og not in basis 'ano-valence'"):
        n_ao(["Si", "Og"], ano)
    with pytest.raises(InputError, match="element Og not in basis"):
        valence_electrons(["Og"])


def test_unsupported_angular_momentum_is_explained():
    # cc-pVQZ carbon has g functions (l = 4): the element is refused with the reason
    b = load_basis("cc-pVQZ", 0.0)
    with pytest.raises(InputError, match=r"element C not in basis 'cc-pVQZ' \(it has l = 4 functions"):
        n_ao(["C"], b)


def test_bad_parameters():
    with pytest.raises(ParameterError, match="exp_to_discard"):
        load_basis("ano-valence", -1.0)
    with pytest.raises(ParameterError, match="not found"):
        load_basis("no-such-basis-xyz")
    with pytest.raises(ParameterError):
        Shell(4, [1.0], [1.0])


@pytest.mark.parametrize("name,symbol", [("def2-SVP", "Si"), ("cc-pVDZ", "O"), ("6-31G", "Na")])
def test_other_bse_basis_counts_match_pyscf_parser(name, symbol):
    # PySCF's own basis library parses the same basis independently
    pyscf_gto = pytest.importorskip("pyscf.gto")
    mol = pyscf_gto.M(atom=f"{symbol} 0 0 0", basis=name, spin=None, verbose=0)
    b = load_basis(name, 0.0)
    assert n_ao([symbol], b) == mol.nao_nr()
    assert valence_electrons([symbol], b) == mol.nelectron


def test_ecp_basis_valence_electrons():
    # def2 bases put 46 core electrons of Ba into an ECP (Weigend & Ahlrichs 2005): 56 - 46 = 10
    assert valence_electrons(["Ba"], load_basis("def2-SVP", 0.0)) == 10


def test_shell_is_frozen_and_pyscf_format():
    sh = Shell(1, [2.0, 0.5], [0.3, 0.8])
    with pytest.raises(ValueError, match="read-only"):
        sh.exponents[0] = 1.0
    fmt = sh.to_pyscf()
    assert fmt[0] == 1 and len(fmt) == 3
    # renormalisation is not done by Shell itself: coefficients are stored as given
    assert fmt[1] == [2.0, 0.3]
    assert isinstance(BasisSet("x", 0.0, {"H": (sh,)}, {"H": 1}).n_ao("H"), int)
    assert sh.n_functions == 3
