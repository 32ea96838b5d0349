"""Kinds never mix silently (issue 13.5, DESIGN.md §8.2): each row records its source; operator spectra and
DFT bands get their own fingerprints; a run mixing them says so; similarity, neighbours and classify refuse
to compare them unless asked (--mix-kinds)."""

import h5py
import numpy as np
import pytest
from mpi4py import MPI
from pymatgen.core import Lattice, Structure

from sporep_hpc.analysis.classify import classify_store
from sporep_hpc.analysis.neighbours import compute_neighbours
from sporep_hpc.analysis.similarity import compute_similarity
from sporep_hpc.bandfiles import read_bands
from sporep_hpc.cli import main
from sporep_hpc.config import build_config
from sporep_hpc.errors import InputError, StoreError
from sporep_hpc.fingerprints import PRESETS, fingerprint, source_kind, spec_kinds
from sporep_hpc.parallel.driver import run
from sporep_hpc.parallel.progress import summary_table
from sporep_hpc.store import open_store, to_dataframe

KDENSITY = 0.5  # 1/Å: coarse grids, a fraction of a second per structure


def _write_inputs(d):
    """Two structures (JSON) and one .npz band file (a 2-band insulator with 2 electrons, as in
    tests/test_bandfiles.py); returns the paths in store order."""
    d.mkdir()
    si = Structure(Lattice.cubic(5.43), ["Si"] * 2, [[0, 0, 0], [0.25, 0.25, 0.25]])
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    si.to(filename=str(d / "a_si.json"))
    nacl.to(filename=str(d / "b_nacl.json"))
    eig = np.array([[-3.0, 1.0], [-2.5, 1.4], [-2.7, 1.2], [-2.2, 1.9]])
    np.savez(d / "c_metal.npz", bands=eig, weights=np.array([1.0, 3.0, 3.0, 1.0]), n_electrons=2.0)
    return [d / "a_si.json", d / "b_nacl.json", d / "c_metal.npz"]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """(store, report, inputs) of a one-rank run over 2 structures and a band file, default fingerprints."""
    d = tmp_path_factory.mktemp("kinds")
    paths = _write_inputs(d / "in")
    report = run([str(p) for p in paths], d / "mixed.h5", build_config(overrides={"kdensity": KDENSITY}),
                 MPI.COMM_SELF)
    return d / "mixed.h5", report, paths


@pytest.fixture(scope="module")
def shared_group(tmp_path_factory):
    """A store whose ``fermi`` group holds both kinds (``--fingerprints kinetic,fermi``)."""
    d = tmp_path_factory.mktemp("kinds_shared")
    paths = _write_inputs(d / "in")
    config = build_config(overrides={"kdensity": KDENSITY, "fingerprints": "kinetic,fermi"})
    report = run([str(p) for p in paths], d / "shared.h5", config, MPI.COMM_SELF)
    assert report.n_done == 3, report.failures
    return d / "shared.h5"


def test_presets_apply_to_the_kinds_they_suit():
    # absolute energies (reference "zero") only for operator spectra; windows around E_F or edges for both
    assert spec_kinds(PRESETS["kinetic"]) == ("operator",)
    for name in ("fermi", "vbm", "cbm", "vbm_cbm", "vbm_fermi_cbm"):
        assert spec_kinds(PRESETS[name]) == ("operator", "dft")
    assert source_kind("operator:huckel") == "operator"
    assert source_kind("dft:qe:data-file-schema.xml") == "dft"
    assert source_kind("") == "" and source_kind("store:x") == ""


def test_rows_record_their_source_and_kinds_get_separate_groups(mixed):
    store_path, report, paths = mixed
    assert report.n_done == 3, report.failures
    with open_store(store_path) as store:
        assert store.schema_version == "1.3"
        assert store.sources == ["operator:kinetic", "operator:kinetic", "dft:npz:c_metal.npz"]
        assert store.fingerprint_names == ["dft_fermi", "kinetic"]
        kinetic, _, attrs = store.fingerprints("kinetic")
        dft, _, dft_attrs = store.fingerprints("dft_fermi")
    assert attrs["kinds"] == "operator" and dft_attrs["kinds"] == "dft"
    assert list(to_dataframe(store_path)["source"]) == ["operator:kinetic"] * 2 + ["dft:npz:c_metal.npz"]
    # the band file: NaN in kinetic (absolute energies), its Fermi-window DOS in dft_fermi (reference:
    # fingerprint of the file's bands, no pipeline; the .npz has no structure, so no per-cell division)
    assert np.all(np.isnan(kinetic[2])) and np.all(np.isfinite(kinetic[:2]))
    assert np.all(np.isnan(dft[:2]))
    np.testing.assert_allclose(dft[2], fingerprint(read_bands(paths[2]), "fermi"), rtol=0, atol=1e-12)


def test_the_summary_says_once_that_kinds_are_mixed(mixed):
    _, report, _ = mixed
    assert report.kinds == {"operator": 2, "dft": 1}
    text = summary_table(report)
    assert text.count("mixed:") == 1
    line = next(line for line in text.splitlines() if "mixed:" in line)
    assert "1 dft, 2 operator inputs" in line and "kinetic (operator)" in line and "dft_fermi (dft)" in line


def test_one_kind_runs_say_nothing(tmp_path):
    paths = _write_inputs(tmp_path / "in")
    report = run([str(paths[0])], tmp_path / "one.h5", build_config(overrides={"kdensity": KDENSITY}),
                 MPI.COMM_SELF)
    assert report.kinds == {"operator": 1} and "mixed:" not in summary_table(report)
    with open_store(tmp_path / "one.h5") as store:  # no DFT group without band files
        assert store.fingerprint_names == ["kinetic"]


def test_similarity_refuses_mixed_kinds_unless_asked(shared_group, tmp_path):
    with open_store(shared_group) as store:
        fermi, _, attrs = store.fingerprints("fermi")
    assert attrs["kinds"] == "operator+dft" and np.all(np.isfinite(fermi))
    with pytest.raises(InputError, match=r"different kinds: 1 dft \(e.g. dft:npz:c_metal.npz\), 2 operator"):
        compute_similarity(shared_group, "fermi", "euclidean")
    result = compute_similarity(shared_group, "fermi", "euclidean", mix_kinds=True)
    assert result.ids == ["a_si", "b_nacl", "c_metal"]
    # a group of one kind is compared as before, whatever else the store holds
    assert compute_similarity(shared_group, "kinetic", "cosine").ids == ["a_si", "b_nacl"]
    # the command line: exit 2 with the reason, then --mix-kinds
    argv = ["similarity", str(shared_group), "--fingerprint", "fermi", "--name", "cli"]
    assert main(argv) == 2
    assert main([*argv, "--mix-kinds"]) == 0


def test_neighbours_and_classify_refuse_mixed_kinds_unless_asked(shared_group, tmp_path, capsys):
    with pytest.raises(InputError, match="different kinds"):
        compute_neighbours(shared_group, "fermi", 1, "euclidean")
    assert compute_neighbours(shared_group, "fermi", 1, "euclidean", mix_kinds=True).index.shape == (3, 1)
    assert main(["neighbours", str(shared_group), "--fingerprint", "fermi", "-k", "1"]) == 2
    labels = {"a_si": "x", "b_nacl": "y", "c_metal": "x"}
    with pytest.raises(InputError, match="different kinds"):
        classify_store(shared_group, "fermi", labels, save=False)
    csv = tmp_path / "labels.csv"
    csv.write_text("id,label\n" + "".join(f"{k},{v}\n" for k, v in labels.items()))
    capsys.readouterr()
    assert main(["classify", str(shared_group), "--fingerprint", "fermi", "--labels", str(csv)]) == 2
    assert "different kinds" in capsys.readouterr().err


def test_stores_before_schema_1_3_read_as_source_unknown(shared_group, tmp_path):
    old = tmp_path / "old.h5"
    old.write_bytes(shared_group.read_bytes())
    with h5py.File(old, "r+") as f:
        del f["structures/source"]
        f.attrs["schema_version"] = "1.2"
    with open_store(old) as store:
        assert store.sources == [""] * 3
        assert store.problems() == []
    # unknown kinds are not counted: such a store is compared as before
    assert compute_similarity(old, "fermi", "euclidean").ids == ["a_si", "b_nacl", "c_metal"]
    # a 1.3 store without the dataset is damaged
    with h5py.File(old, "r+") as f:
        f.attrs["schema_version"] = "1.3"
    with open_store(old) as store, pytest.raises(StoreError, match="structures/source"):
        _ = store.sources
