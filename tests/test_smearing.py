"""Smearing functions (ext/smearing.pyx through sporep_hpc.smearing) against scipy/numpy references."""

import dataclasses
import math

import numpy as np
import pytest
from _references import ref_delta, ref_theta
from numpy.testing import assert_allclose, assert_array_equal
from scipy import integrate, special

from sporep_hpc.errors import ParameterError
from sporep_hpc.smearing import SMEARING_KINDS, Smearing, cutoff, delta, dtheta, theta

KINDS_ORDERS = [("gaussian", 1), ("fermi-dirac", 1), ("cold", 1)]
KINDS_ORDERS += [("methfessel-paxton", n) for n in range(6)]


@pytest.mark.parametrize(("kind", "order"), KINDS_ORDERS)
def test_matches_reference(kind, order, rng):
    x = np.concatenate([np.linspace(-9, 9, 2001), rng.normal(scale=3, size=500)])
    # absolute 1e-13: both sides are double-precision evaluations of the same closed forms; beyond the
    # cut-off the kernel returns exact 0/1 where the reference differs by < 1e-16 (tested below).
    assert_allclose(delta(x, kind, order), ref_delta(x, kind, order), rtol=0, atol=1e-13)
    assert_allclose(theta(x, kind, order), ref_theta(x, kind, order), rtol=0, atol=1e-13)


def test_closed_forms():
    # Methfessel-Paxton N = 1 written out: δ = e^{-x²}(3/2 − x²)/√π, θ = ½ erfc(−x) + x e^{-x²}/(2√π);
    # N = 0 is the Gaussian.
    x = np.linspace(-5, 5, 101)
    g = np.exp(-x * x) / math.sqrt(math.pi)
    assert_allclose(delta(x, "methfessel-paxton", 1), g * (1.5 - x * x), rtol=0, atol=1e-14)
    assert_allclose(theta(x, "methfessel-paxton", 1), 0.5 * special.erfc(-x) + x * g / 2, rtol=0, atol=1e-14)
    assert_array_equal(delta(x, "methfessel-paxton", 0), delta(x, "gaussian"))
    # Values at 0: gaussian θ = 1/2, δ = 1/√π; Fermi-Dirac δ = 1/4; cold θ(0) = ½ erfc(1/√2) + e^{-1/2}/√(2π)
    assert theta(0.0, "gaussian") == 0.5
    assert_allclose(delta(0.0, "gaussian"), 1 / math.sqrt(math.pi), rtol=1e-15)
    assert_allclose(delta(0.0, "fermi-dirac"), 0.25, rtol=1e-15)
    cold0 = 0.5 * math.erfc(1 / math.sqrt(2)) + math.exp(-0.5) / math.sqrt(2 * math.pi)
    assert_allclose(theta(0.0, "cold"), cold0, rtol=1e-14)


@pytest.mark.parametrize(("kind", "order"), KINDS_ORDERS)
def test_delta_integrates_to_one(kind, order):
    c = cutoff(kind, order)
    value, _ = integrate.quad(lambda t: float(delta(t, kind, order)), -c - 1, c + 1, limit=200, epsabs=1e-13)
    # ∫δ = θ(+∞) − θ(−∞) = 1; quad's own error estimate is ~1e-14, the cut tails are < 1e-15
    assert abs(value - 1.0) < 1e-10


@pytest.mark.parametrize(("kind", "order"), KINDS_ORDERS)
def test_dtheta_is_delta(kind, order):
    x = np.linspace(-6, 6, 241)
    h = 1e-5
    fd = (theta(x + h, kind, order) - theta(x - h, kind, order)) / (2 * h)
    # central difference: truncation h²θ'''/6 ~ 1e-10 × O(10), round-off 1e-16/h = 1e-11
    assert_allclose(fd, delta(x, kind, order), rtol=0, atol=1e-8)
    assert_array_equal(dtheta(x, kind, order), delta(x, kind, order))


@pytest.mark.parametrize(("kind", "order"), KINDS_ORDERS)
def test_limits_and_no_overflow(kind, order):
    big = np.array([1e6, 1e300, 50.0, 1e3, np.finfo(float).max])
    with np.errstate(all="raise"):
        assert_array_equal(theta(big, kind, order), 1.0)
        assert_array_equal(theta(-big, kind, order), 0.0)
        assert_array_equal(delta(big, kind, order), 0.0)
        assert_array_equal(delta(-big, kind, order), 0.0)


@pytest.mark.parametrize(("kind", "order"), KINDS_ORDERS)
def test_cutoff_is_harmless(kind, order):
    # Just beyond the cut-off the true δ is below 1e-16 and θ within 1e-15 of its limit, so skipping is exact
    # to double precision; just inside, the kernel still evaluates the formula.
    c = cutoff(kind, order)
    x = np.array([c + 1e-9, c + 0.5, c + 3.0])
    assert np.all(np.abs(ref_delta(x, kind, order)) < 1e-16)
    assert np.all(np.abs(ref_delta(-x, kind, order)) < 1e-16)
    assert np.all(np.abs(ref_theta(x, kind, order) - 1) < 1e-15)
    assert np.all(np.abs(ref_theta(-x, kind, order)) < 1e-15)
    inside = np.array([-c + 1e-6, c - 1e-6])
    assert_allclose(delta(inside, kind, order), ref_delta(inside, kind, order), rtol=1e-10, atol=0)
    assert {"gaussian": 7.0, "cold": 7.0, "fermi-dirac": 40.0}.get(kind, c) == c


def test_nan_shapes_threads(rng):
    x = rng.normal(scale=4, size=(7, 11, 3))
    for kind in SMEARING_KINDS:
        d1 = delta(x, kind, n_threads=1)
        assert d1.shape == x.shape
        assert_array_equal(delta(x, kind, n_threads=2), d1)
        assert_array_equal(theta(x, kind, n_threads=2), theta(x, kind, n_threads=1))
    out = theta([np.nan, 0.0])
    assert np.isnan(out[0]) and out[1] == 0.5
    assert delta(np.nan) == 0.0
    assert isinstance(delta(0.1), float)


def test_parameter_errors():
    with pytest.raises(ParameterError, match="kind must be one of"):
        delta(0.0, "lorentzian")
    with pytest.raises(ParameterError, match="order"):
        theta(0.0, "methfessel-paxton", -1)
    with pytest.raises(ParameterError, match="order"):
        theta(0.0, "methfessel-paxton", 1.5)
    with pytest.raises(ParameterError, match=r"width must be a number in \(0, inf\) eV; got -0.1"):
        Smearing("gaussian", -0.1)
    with pytest.raises(ParameterError, match="kind"):
        Smearing("gauss", 0.1)


def test_smearing_dataclass():
    s = Smearing("methfessel-paxton", 0.2, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.width = 0.3  # type: ignore[misc]
    assert Smearing.from_dict(s.to_dict()) == s
    assert s.kernel_order == 2 and Smearing("cold", 0.1, 3).kernel_order == 0
    assert s.cutoff == cutoff("methfessel-paxton", 2)
    assert Smearing() == Smearing("gaussian", 0.05, 1)
