"""Built-in structure sets: nanotube geometry from closed formulas, BaTiO3 symmetry, AFLOW prototypes."""

import math

import numpy as np
import pytest

from sporep_hpc.errors import ParameterError

pytest.importorskip("pymatgen")

from sporep_hpc.examples import cnt

A_CC = 1.42  # Å, graphene C–C bond (the default of the generator)


def _expected_atoms(n, m):
    # N = 4 (n² + nm + m²) / d_R, d_R = gcd(2n + m, 2m + n) (Dresselhaus et al., eq. 3.9)
    return 4 * (n * n + n * m + m * m) // math.gcd(2 * n + m, 2 * m + n)


def _expected_diameter(n, m, bond=A_CC):
    # d = a sqrt(n² + nm + m²) / π with a = √3 a_CC
    return math.sqrt(3) * bond * math.sqrt(n * n + n * m + m * m) / math.pi


@pytest.mark.parametrize("n, m", [(4, 0), (5, 5), (6, 2), (7, 4), (8, 0), (10, 10), (9, 3)])
def test_nanotube_geometry(n, m):
    s = cnt.nanotube(n, m)
    assert len(s) == _expected_atoms(n, m)
    assert {str(e) for e in s.composition.elements} == {"C"}
    xyz = s.cart_coords
    centre = np.array([s.lattice.a / 2, s.lattice.b / 2])
    radius = np.linalg.norm(xyz[:, :2] - centre, axis=1)
    d = _expected_diameter(n, m)
    # every atom lies on the cylinder of the closed-form diameter (float64 trig: 1e-10 Å)
    np.testing.assert_allclose(radius, d / 2, rtol=0, atol=1e-10)
    # lateral vacuum: wall-to-wall gap to the periodic image >= 10 Å
    assert s.lattice.a - d >= 10.0 - 1e-12 and s.lattice.b - d >= 10.0 - 1e-12
    # axis period |T| = √3 |C| / d_R (Dresselhaus et al., eq. 3.8)
    c_len = math.pi * d
    assert s.lattice.c == pytest.approx(math.sqrt(3) * c_len / math.gcd(2 * n + m, 2 * m + n), abs=1e-10)


@pytest.mark.parametrize("n, m", [(4, 0), (5, 5), (6, 2), (7, 4), (12, 3)])
def test_nanotube_bonds_and_periodicity(n, m):
    s = cnt.nanotube(n, m)
    dist = s.distance_matrix  # pymatgen: minimum-image distances, periodic along all three axes
    np.fill_diagonal(dist, np.inf)
    # no overlapping / duplicated atoms across the axial boundary: closest pair is a bond, never ~0
    assert dist.min() > 1.3
    # every carbon has exactly three neighbours within 1.6 Å, periodic images included (sp2 network;
    # second neighbours are >= 2.1 Å even for the most curved (4,0) tube); pymatgen's neighbour search
    neighbours = s.get_all_neighbors(1.6)
    assert all(len(nb) == 3 for nb in neighbours)
    # the geodesic length of each bond on the cylinder is the sheet bond 1.42 Å exactly (rolling is an
    # isometry of the sheet); the straight chord can only be shorter
    centre = np.array([s.lattice.a / 2, s.lattice.b / 2])
    r = _expected_diameter(n, m) / 2
    for site, nb in zip(s, neighbours, strict=True):
        for other in nb:
            p, q = site.coords, other.coords
            dtheta = np.angle(
                np.exp(1j * (np.arctan2(*(p[1::-1] - centre[::-1])) - np.arctan2(*(q[1::-1] - centre[::-1]))))
            )
            geodesic = np.hypot(r * dtheta, p[2] - q[2])
            assert geodesic == pytest.approx(A_CC, abs=1e-9)
            assert other.nn_distance <= A_CC + 1e-9


def test_nanotube_large_tube_bonds_are_graphene_bonds():
    # (10,10): diameter 13.6 Å; chord vs arc for the bond differs by < 0.2 %
    s = cnt.nanotube(10, 10)
    dist = s.distance_matrix
    np.fill_diagonal(dist, np.inf)
    np.testing.assert_allclose(dist.min(axis=1), A_CC, rtol=2e-3)


def test_nanotube_labels():
    # zone folding: metallic iff (n - m) divisible by 3
    assert cnt.nanotube_info(5, 5).metallic and cnt.nanotube_info(5, 5).kind == "armchair"
    assert cnt.nanotube_info(9, 0).metallic and cnt.nanotube_info(9, 0).kind == "zigzag"
    assert not cnt.nanotube_info(10, 0).metallic
    assert cnt.nanotube_info(10, 0).family == "semi-1"
    assert cnt.nanotube_info(8, 0).family == "semi-2"
    assert cnt.nanotube_info(7, 4).metallic and cnt.nanotube_info(7, 4).kind == "chiral"
    assert cnt.nanotube_info(12, 11).n_atoms == 1588  # quoted in the issue
    assert cnt.nanotube_info(6, 0).chiral_angle == pytest.approx(0.0)
    assert cnt.nanotube_info(6, 6).chiral_angle == pytest.approx(30.0)
    props = cnt.nanotube(6, 3).properties
    assert props["metallic"] == 1 and props["n"] == 6 and props["m"] == 3


def test_nanotube_bad_input():
    with pytest.raises(ParameterError, match="n must be"):
        cnt.nanotube(0, 0)
    with pytest.raises(ParameterError, match="bond must be"):
        cnt.nanotube(5, 5, bond=-1.0)
    with pytest.raises(ParameterError, match="vacuum must be"):
        cnt.nanotube(5, 5, vacuum=float("nan"))


def test_chiralities_cover_the_set():
    pairs = cnt.chiralities()
    assert len(pairs) == sum(n + 1 for n in range(4, 13))
    assert (4, 0) in pairs and (12, 12) in pairs and (3, 0) not in pairs
