"""The same crystal gets the same fingerprint whatever cell it is given in (issue 13.6): structures are
computed in spglib's standardized primitive cell unless ``keep_cell``; band files' fingerprints are per
primitive cell; the low-level API with explicit k-points keeps the cell it is given."""

import numpy as np
import pytest
from _references import cell_choices, relative_distances
from mpi4py import MPI

from sporep_hpc import SorepFeaturizer
from sporep_hpc.analysis.similarity import window_offsets_from_attrs
from sporep_hpc.bandfiles import read_bands
from sporep_hpc.config import RunParameters, build_config
from sporep_hpc.fingerprints import fingerprint, get_spec
from sporep_hpc.inputs.records import InputRecord
from sporep_hpc.operators import operator_spectrum
from sporep_hpc.parallel.driver import run
from sporep_hpc.pipeline import FingerprintSet, compute_record
from sporep_hpc.store import open_store
from sporep_hpc.structures import symmetry_of

KDENSITY = 0.5  # 1/Å: coarse grids, well under a second per structure
FINGERPRINTS = ("kinetic", "vbm_cbm")  # absolute window, and two windows around the band edges
#: The issue's contract: one crystal's fingerprints agree to 1e-6, relative, under every metric
#: (`relative_distances`); measured at most 5.7e-10 (NaCl, vbm_cbm, euclidean: the standardized cells
#: differ by rounding only; with keep_cell 3.0-4.0 euclidean, up to 0.34 cosine, 0.84 tanimoto).
TOLERANCE = 1e-6


def _write(tmp_path):
    """Every cell of every crystal as a JSON file; {crystal: [ids]}."""
    d = tmp_path / "cells"
    d.mkdir()
    ids = {}
    for crystal, cells in cell_choices().items():
        for cell, s in cells.items():
            s.to(filename=str(d / f"{crystal}_{cell}.json"))
            ids.setdefault(crystal, []).append(f"{crystal}_{cell}")
    return d, ids


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """{keep_cell: store} of one-rank runs over every cell, and {crystal: [ids]}."""
    tmp = tmp_path_factory.mktemp("cell_choice")
    d, ids = _write(tmp)
    out = {}
    for keep in (False, True):
        out[keep] = tmp / f"keep_{keep}.h5"
        config = build_config(overrides={"kdensity": KDENSITY, "fingerprints": ",".join(FINGERPRINTS),
                                         "keep_cell": keep})
        report = run([str(d)], out[keep], config, MPI.COMM_SELF)
        assert report.n_failed == 0, report.failures
    return out, ids


def _by_crystal(store_path, name, ids):
    with open_store(store_path) as store:
        values, energies, attrs = store.fingerprints(name)
        rows = {crystal: values[[store.index_of(i) for i in members]] for crystal, members in ids.items()}
    return rows, energies, window_offsets_from_attrs(attrs, energies)


@pytest.mark.parametrize("name", FINGERPRINTS)
def test_every_cell_of_a_crystal_gives_one_fingerprint(stores, name):
    paths, ids = stores
    rows, energies, offsets = _by_crystal(paths[False], name, ids)
    for crystal, values in rows.items():
        assert np.all(np.isfinite(values)) and np.linalg.norm(values[0]) > 0
        worst = relative_distances(values, energies, offsets)
        assert max(worst.values()) <= TOLERANCE, (crystal, worst)


def test_keep_cell_keeps_the_old_behaviour(stores):
    # the DOS is per cell: a supercell of n primitive cells has n times the DOS (4× for the conventional
    # cubic cell of an fcc lattice), so euclidean distances are of the order of the fingerprint itself
    paths, ids = stores
    rows, energies, offsets = _by_crystal(paths[True], "kinetic", ids)
    for crystal, values in rows.items():
        order = ids[crystal]
        area = {cell: values[order.index(f"{crystal}_{cell}")].sum() for cell in ("primitive", "supercell",
                                                                                   "conventional")}
        # states per cell: 2 and 4 primitive cells (rtol: the DOS tails beyond the window, < 1e-6 here)
        np.testing.assert_allclose(area["supercell"] / area["primitive"], 2.0, rtol=1e-6)
        np.testing.assert_allclose(area["conventional"] / area["primitive"], 4.0, rtol=1e-6)
        assert relative_distances(values, energies, offsets)["euclidean"] > 1.0
    with open_store(paths[True]) as store:  # the given cells are computed and stored
        assert store.structures()["n_atoms"][store.index_of("si_conventional")] == 8


def test_the_store_holds_the_cell_computed(stores):
    # reference: spglib's standardized primitive cell, and operator_spectrum + fingerprint on it
    paths, ids = stores
    cells = cell_choices()
    with open_store(paths[False]) as store:
        kinetic, _, _ = store.fingerprints("kinetic")
        for crystal, members in ids.items():
            prim = symmetry_of(cells[crystal]["conventional"]).structure.to_structure()
            want = fingerprint(operator_spectrum(prim, kdensity=KDENSITY), "kinetic")
            for id in members:
                i = store.index_of(id)
                cell, numbers, _ = store.atoms(i)
                np.testing.assert_allclose(cell, prim.lattice.matrix, rtol=0, atol=1e-9)
                assert len(numbers) == len(prim)
                np.testing.assert_allclose(kinetic[i], want, rtol=0, atol=1e-9 * np.max(want))


def test_the_featurizer_reduces_too():
    cells = cell_choices()["si"]
    structures = [cells[c] for c in ("primitive", "conventional", "supercell")]
    x = SorepFeaturizer("vbm_cbm", kdensity=KDENSITY).fit_transform(structures)
    spec = get_spec("vbm_cbm")
    offsets = np.cumsum([0] + [w.n_energies for w in spec.windows])
    assert max(relative_distances(x, spec.energies, offsets).values()) <= TOLERANCE
    kept = SorepFeaturizer("vbm_cbm", kdensity=KDENSITY, keep_cell=True).fit_transform(structures)
    assert relative_distances(kept, spec.energies, offsets)["euclidean"] > 1.0


def test_explicit_kpoints_keep_the_cell_given():
    # operator_spectrum(structure, kpoints=...): fractional k-points of that very cell; 8 atoms, 8 times
    # the bands of the 2-atom primitive cell
    conventional = cell_choices()["si"]["conventional"]
    prim = symmetry_of(conventional).structure.to_structure()
    k = np.array([[0.0, 0.0, 0.0], [0.25, 0.0, 0.0]])
    big = operator_spectrum(conventional, kpoints=k, weights=np.full(2, 0.5))
    small = operator_spectrum(prim, kpoints=k, weights=np.full(2, 0.5))
    assert big.eigenvalues.shape[2] == 4 * small.eigenvalues.shape[2]


def test_band_files_are_per_primitive_cell(tmp_path):
    # a band file whose calculation cell holds n primitive cells: its fingerprints are the file's DOS / n
    # (n from pymatgen's primitive cell, not spglib), as computed spectra are per primitive cell
    eig = np.array([[-3.0, 1.0], [-2.5, 1.4], [-2.7, 1.2], [-2.2, 1.9]])
    path = tmp_path / "bands.npz"
    np.savez(path, bands=eig, weights=np.array([1.0, 3.0, 3.0, 1.0]), n_electrons=2.0)
    expected = fingerprint(read_bands(path), "fermi")
    fps = FingerprintSet.from_parameters(RunParameters(fingerprints=("fermi",)))
    for cell in ("primitive", "conventional", "supercell"):
        s = cell_choices()["nacl"][cell]
        n = len(s) // len(s.get_primitive_structure())
        record = InputRecord("x", str(path), "bands", structure=s)
        for keep, divisor in ((False, n), (True, 1)):
            row, _ = compute_record(0, record, RunParameters(fingerprints=("fermi",), keep_cell=keep), fps)
            assert row.source == "dft:npz:bands.npz"
            np.testing.assert_allclose(row.fingerprints["fermi"], expected / divisor, rtol=1e-14, atol=0)
            assert row.n_atoms == len(s)  # the calculation's cell is stored as it is


def test_primitive_cell_refuses_what_it_cannot_reduce():
    from sporep_hpc.errors import InputError

    s = cell_choices()["si"]["primitive"].copy()
    s.replace_species({"Si": {"Si": 0.5, "Ge": 0.5}})  # disordered: no single cell
    with pytest.raises(InputError, match="partial occupancy"):
        symmetry_of(s)
