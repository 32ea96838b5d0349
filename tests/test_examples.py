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


# ---- BaTiO3 -------------------------------------------------------------------------------------------

from sporep_hpc.examples import batio3, load_set  # noqa: E402


@pytest.mark.parametrize(
    "phase, symbol, number, short_ti_o",
    # shortest Ti–O bond of each cell as the module's numbers give it (a consistency check of the module,
    # not a literature value: tetragonal ~1.83, orthorhombic ~1.86, rhombohedral ~1.88 Å; cubic a/2 = 2.003 Å)
    [("cubic", "Pm-3m", 221, 2.003), ("tetragonal", "P4mm", 99, 1.83), ("orthorhombic", "Amm2", 38, 1.86),
     ("rhombohedral", "R3m", 160, 1.88)],
)
def test_batio3_symmetry_and_bonds(phase, symbol, number, short_ti_o):
    import spglib

    s = batio3.polymorph(phase)
    assert s.composition.reduced_formula == "BaTiO3" and len(s) == 5
    # spglib on the expanded cell (independent of the code that expanded the asymmetric unit)
    cell = (s.lattice.matrix, s.frac_coords, [site.specie.Z for site in s])
    assert spglib.get_spacegroup(cell, symprec=1e-3) == f"{symbol} ({number})"
    ti = next(site for site in s if site.specie.symbol == "Ti")
    bonds = sorted(nb.nn_distance for nb in s.get_neighbors(ti, 2.5))
    assert len(bonds) == 6  # TiO6 octahedron
    assert bonds[0] == pytest.approx(short_ti_o, abs=0.03)
    # formula volume: a³ = 64.29 Å^3 for the cubic cell of ICSD 67518; the other phases within ~1 % of it
    assert 63.5 < s.volume < 65.0


def test_batio3_set():
    got = load_set("examples:batio3")
    assert [i for i, _, _ in got] == [
        "batio3_cubic", "batio3_tetragonal", "batio3_orthorhombic", "batio3_rhombohedral",
    ]
    assert got[3][2]["spacegroup"] == "R3m"
    assert got[0][2]["verified"] is True and got[0][2]["temperature"] is None


def test_batio3_cubic_is_icsd_67518():
    # Buttner & Maslen, Acta Cryst. B48, 764 (1992), ICSD 67518: Pm-3m, a = 4.006(2) Å, Ba 1a, Ti 1b, O 3c
    p = next(p for p in batio3.POLYMORPHS if p.phase == "cubic")
    assert p.verified and "ICSD 67518" in p.reference
    assert p.lattice == (4.006, 4.006, 4.006, 90.0, 90.0, 90.0)
    assert dict(p.sites) == {"Ba": (0, 0, 0), "Ti": (0.5, 0.5, 0.5), "O": (0.5, 0.5, 0)}
    s = batio3.polymorph("cubic")
    assert s.lattice.abc == pytest.approx((4.006,) * 3) and s.volume == pytest.approx(4.006**3)


def test_batio3_orthorhombic_cell_close_to_kwei_270k_record():
    # the one Kwei et al. (1993) record found: COD 9016638 (orthorhombic, 270 K) as copied (FINDSYM) in
    # httk/httk Tutorial/tutorial_data/all_spacegroups/cifs/38.cif; only its cell is used here, as a
    # plausibility check of the (unverified, 190 K) cell -- its O1 z is implausible, see the module docstring
    kwei_270k = (3.98740, 5.67510, 5.69010)
    p = next(p for p in batio3.POLYMORPHS if p.phase == "orthorhombic")
    assert p.lattice[3:] == (90.0, 90.0, 90.0)
    for ours, ref in zip(p.lattice[:3], kwei_270k, strict=True):
        assert abs(ours / ref - 1) < 1e-3


def test_batio3_unverified_phases_say_so():
    for p in batio3.POLYMORPHS:
        assert p.reference
        if not p.verified:
            assert "UNVERIFIED" in p.reference
    assert {p.phase for p in batio3.POLYMORPHS if p.verified} == {"cubic"}


# ---- AFLOW prototypes and the set registry ------------------------------------------------------------


def test_aflow_set():
    from sporep_hpc.examples import aflow, catalogue

    entries = catalogue("aflow")
    assert len(entries) == 288  # the prototypes of Mehl et al. (2017) as shipped with pymatgen
    assert len({e.id for e in entries}) == 288
    copper = load_set("aflow?strukturbericht=A1")
    assert len(copper) == 1
    _, s, tags = copper[0]
    assert tags["mineral"] == "Copper" and tags["spacegroup"] == "225" and len(s) == 1
    rocksalt = [e for e in entries if e.properties["strukturbericht"] == "B1"]
    assert rocksalt and rocksalt[0].properties["pearson"] == "cF8"
    assert aflow.entries()[0].build() is not aflow.entries()[0].build()  # copies, never the cached object


def test_cnt_filters_build_only_selected():
    got = load_set("cnt?max_atoms=40")
    # 4(n²+nm+m²)/d_R <= 40 for 4<=n<=12: zigzag (n,0) has 4n atoms, armchair (n,n) 4n, plus (4,1) with 28
    expected = {f"cnt_{n}_0" for n in range(4, 11)} | {f"cnt_{n}_{n}" for n in range(4, 11)} | {"cnt_4_1"}
    assert {i for i, _, _ in got} == expected
    assert all(len(s) <= 40 for _, s, _ in got)
    semis = load_set("cnt?max_atoms=40&electronic=semiconducting")
    assert semis and all(p["metallic"] == 0 and (p["n"] - p["m"]) % 3 != 0 for _, _, p in semis)
    assert len(load_set("cnt?kind=armchair&limit=2")) == 2


@pytest.mark.parametrize(
    "spec, message",
    [("nanotubes", "example set must be one of aflow, batio3, cnt"),
     ("cnt?maxatoms=3", "must be one of max_atoms"),
     ("cnt?max_atoms=-1", "non-negative integer"),
     ("cnt?max_atoms=1&max_atoms=2", "given twice"),
     ("", "non-empty")],
)
def test_bad_specs(spec, message):
    with pytest.raises(ParameterError, match=message):
        load_set(spec)
