"""SorepFeaturizer (issue 16.2): the CLI store's vectors, scikit-learn and matminer conventions, inputs.

The reference for the vectors is a store written by a real one-rank `sporep-hpc run`
(`parallel.driver.run`) from files, compared with the featurizer on the objects read back from the
same files. The README's Python API example is extracted from README.md and executed here, so the
documented code cannot rot.
"""

import inspect
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from mpi4py import MPI
from numpy.testing import assert_allclose, assert_array_equal
from pymatgen.core import Lattice, Molecule, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from sklearn.base import clone

import sporep_hpc
from sporep_hpc import BandStructure, InputError, ParameterError, SorepFeaturizer
from sporep_hpc.bandfiles import read_bands
from sporep_hpc.config import INPUT_PARAMETERS, RunParameters, build_config
from sporep_hpc.featurizer import CITATION, RUN_PARAMETERS, feature_labels
from sporep_hpc.fingerprints import PRESETS, FingerprintSpec, Window, spec_kinds
from sporep_hpc.parallel.driver import run
from sporep_hpc.store import STATUS_DONE, open_store

README = Path(__file__).resolve().parents[1] / "README.md"
KDENSITY = 0.5  # 1/Å: coarse, a few k-points per structure (the same in the store and the featurizer)
PRESET_NAMES = ("kinetic", "fermi")  # one absolute window and one around the Fermi level
STRUCTURES = {
    "cu": Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]]),
    "graphite": Structure(
        Lattice.hexagonal(2.46, 6.7), ["C"] * 4,
        [[0, 0, 0.25], [0, 0, 0.75], [1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]],
    ),
    "nacl": Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
    "si": Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]]),
    "close": Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]]),  # 0.25 Å apart
}


def _bands_npz(path: Path) -> Path:
    """A two-band, 4-k-point insulator (2 electrons) as an .npz band file."""
    eig = np.array([[-3.0, 1.0], [-2.5, 1.4], [-2.7, 1.2], [-2.2, 1.9]])
    np.savez(path, bands=eig, weights=np.array([1.0, 3.0, 3.0, 1.0]), n_electrons=2.0)
    return path


@pytest.fixture(scope="module")
def store_run(tmp_path_factory):
    """(store path, {id: input file}) of a one-rank run over STRUCTURES and one band file."""
    d = tmp_path_factory.mktemp("featurizer")
    inputs = d / "inputs"
    inputs.mkdir()
    files = {}
    for name, s in STRUCTURES.items():
        files[name] = inputs / f"{name}.json"
        s.to(filename=str(files[name]))
    files["bands"] = _bands_npz(inputs / "bands.npz")
    store = d / "store.h5"
    config = build_config(overrides={"kdensity": KDENSITY, "fingerprints": ",".join(PRESET_NAMES)})
    report = run([str(inputs)], store, config, MPI.COMM_SELF)
    assert report.n_done == len(files) - 1, report.failures  # all but "close"
    return store, files


def _inputs(files):
    """The objects the featurizer gets for the store's inputs, read back from the same files."""
    return {
        name: read_bands(path) if path.suffix == ".npz" else sporep_hpc.read_structures(path)[0]
        for name, path in files.items()
    }


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_rows_equal_the_cli_store(store_run, preset):
    store, files = store_run
    objects = _inputs(files)
    names = list(objects)
    f = SorepFeaturizer(preset, kdensity=KDENSITY, on_error="nan")
    X = f.fit_transform([objects[n] for n in names])
    with open_store(store) as s:
        values, energies, _ = s.fingerprints(preset)
        status, errors, rows = s.status, s.errors, {id: s.index_of(id) for id in names}
    assert_array_equal(f.energies_, energies)  # the same spec, hence the same sample energies
    for i, name in enumerate(names):
        stored = values[rows[name]]
        if name == "bands" and "dft" not in spec_kinds(f.spec_):
            # the store applies a preset only to the kind it suits (DESIGN.md §8.2): the band file's row is
            # NaN in "kinetic"; the featurizer computes what it is asked for on a band object
            assert np.all(np.isnan(stored)) and np.all(np.isfinite(X[i])), name
            continue
        if status[rows[name]] != STATUS_DONE:
            assert np.all(np.isnan(X[i])) and np.all(np.isnan(stored)), name
            continue
        # the same code (pipeline.compute_record / fingerprint) on the same input: equal to rounding at
        # worst; 1e-8 of the vector's largest value is the contract
        assert_allclose(X[i], stored, rtol=1e-8, atol=1e-8 * np.max(np.abs(stored)), err_msg=name)
    # the failure raised by default names the input's position and gives the store's reason
    close = names.index("close")
    reason = errors[rows["close"]].split(": ", 1)[1]
    with pytest.raises(InputError, match=re.escape(f"structure 'X[{close}]': {reason}")):
        SorepFeaturizer(preset, kdensity=KDENSITY).transform([objects[n] for n in names])


def test_nan_rows_are_logged(caplog):
    f = SorepFeaturizer(kdensity=KDENSITY, on_error="nan")
    with caplog.at_level(logging.WARNING, logger="sporep_hpc.featurizer"):
        X = f.transform([STRUCTURES["si"], STRUCTURES["close"]])
    assert np.all(np.isfinite(X[0])) and np.all(np.isnan(X[1]))
    assert "structure 'X[1]': atoms 0.250 Å apart" in caplog.text


def test_parameters_are_the_run_parameters():
    """Every RunParameters field but `fingerprints` and the input choices (which files are read: the
    featurizer reads none) is a featurizer argument, passed through unchanged."""
    fields = set(inspect.signature(RunParameters).parameters) - {"fingerprints", *INPUT_PARAMETERS}
    assert set(RUN_PARAMETERS) == fields
    assert set(SorepFeaturizer().get_params()) == {*RUN_PARAMETERS, "preset", "n_jobs", "on_error"}
    f = SorepFeaturizer("vbm_cbm", operator="huckel", kdensity=0.4, max_atoms=12).fit()
    expected = RunParameters(operator="huckel", kdensity=0.4, max_atoms=12, fingerprints=("vbm_cbm",))
    assert f.parameters_ == expected
    assert f.spec_ == PRESETS["vbm_cbm"]


def test_clone_get_params_set_params():
    f = SorepFeaturizer("fermi", kdensity=0.3, n_jobs=2, on_error="nan")
    g = clone(f)
    assert g is not f and g.get_params() == f.get_params()
    assert g.set_params(kdensity=0.6, preset="kinetic") is g
    assert (g.kdensity, g.preset, f.kdensity, f.preset) == (0.6, "kinetic", 0.3, "fermi")
    spec = FingerprintSpec("mine", (Window("zero", 0.0, 50.0, 11, width=1.0),))
    h = clone(SorepFeaturizer(spec))
    assert h.preset == spec and h.fit().energies_.shape == (11,)


def test_fit_records_the_energy_axis_and_labels():
    f = SorepFeaturizer("vbm_fermi_cbm")
    assert f.__sklearn_tags__().requires_fit is False
    X = f.transform([STRUCTURES["si"]])  # stateless: no fit needed
    assert X.dtype == np.float64 and X.shape == (1, PRESETS["vbm_fermi_cbm"].n_features)
    assert f.fit([STRUCTURES["si"]]) is f
    assert_array_equal(f.energies_, np.concatenate([np.linspace(-1, 1, 171)] * 3))
    assert list(f.references_) == ["vbm"] * 171 + ["fermi"] * 171 + ["cbm"] * 171
    labels = f.feature_labels()
    assert labels[0] == "vbm_fermi_cbm:vbm@-1.00eV" and labels[171] == "vbm_fermi_cbm:fermi@-1.00eV"
    assert len(set(labels)) == len(labels)
    assert list(f.get_feature_names_out()) == labels
    frame = SorepFeaturizer("vbm_fermi_cbm").set_output(transform="pandas").fit_transform([STRUCTURES["si"]])
    assert list(frame.columns) == labels
    assert_array_equal(frame.to_numpy(), X)


def test_sequence_kinds():
    """A list, a tuple, a pandas Series or a one-column DataFrame of inputs give the same rows."""
    pd = pytest.importorskip("pandas")
    items = [STRUCTURES["si"], STRUCTURES["cu"]]
    f = SorepFeaturizer("fermi", kdensity=KDENSITY)
    rows = f.transform(items)
    for X in (tuple(items), pd.Series(items), pd.DataFrame({"structure": items})):
        assert_array_equal(f.transform(X), rows)
    assert f.transform([]).shape == (0, PRESETS["fermi"].n_features)


def test_feature_label_rule():
    assert feature_labels(PRESETS["kinetic"])[:2] == ["kinetic:zero@+0.00eV", "kinetic:zero@+0.49eV"]
    # spacing 2e-3 eV needs 3 decimals; overlapping windows with one reference need the index prefix
    fine = FingerprintSpec("f", (Window("vbm", -0.01, 0.01, 11),))
    assert feature_labels(fine)[:2] == ["f:vbm@-0.010eV", "f:vbm@-0.008eV"]
    twice = FingerprintSpec("t", (Window("cbm", 0.0, 1.0, 3), Window("cbm", 0.0, 1.0, 3)))
    assert feature_labels(twice)[0] == "0:t:cbm@+0.000000eV"
    assert len(set(feature_labels(twice))) == 6


def test_ase_atoms_equal_pymatgen_structure():
    atoms = bulk("Si", "diamond", a=5.43)
    structure = Structure(Lattice(atoms.cell[:]), ["Si", "Si"], atoms.positions, coords_are_cartesian=True)
    f = SorepFeaturizer(kdensity=KDENSITY)
    X = f.transform([atoms, structure])
    assert_array_equal(X[0], X[1])  # the same cell and Cartesian positions: bitwise
    # pymatgen -> ASE -> pymatgen recomputes fractional coordinates (last-bit changes of the
    # positions move the DOS by ~1e-14 relative; 1e-9 leaves room and still catches any real change)
    back = AseAtomsAdaptor.get_atoms(STRUCTURES["nacl"])
    Y = f.transform([back, STRUCTURES["nacl"]])
    assert_allclose(Y[0], Y[1], rtol=1e-9, atol=1e-9 * np.max(Y[1]))


def test_band_objects():
    eig = np.array([[-3.0, 1.0], [-2.5, 1.4]])
    bands = BandStructure(eig, np.ones(2), n_electrons=2.0)
    row = SorepFeaturizer("vbm_cbm").transform([bands])[0]
    assert_array_equal(row, sporep_hpc.fingerprint(bands, "vbm_cbm"))
    # run parameters do not apply to a given spectrum
    other = SorepFeaturizer("vbm_cbm", kdensity=0.9, operator="overlap")
    assert_array_equal(other.transform([bands])[0], row)
    # a reference the bands cannot define is that input's failure, naming it
    with pytest.raises(InputError, match=r"structure 'X\[1\]': .*n_electrons"):
        SorepFeaturizer("vbm_cbm").transform([bands, BandStructure(eig, np.ones(2))])


def test_n_jobs_is_bitwise_identical():
    X = [STRUCTURES["si"], STRUCTURES["close"], bulk("Cu", "fcc", a=3.6),
         BandStructure(np.array([[-3.0, 1.0], [-2.5, 1.4]]), np.ones(2), n_electrons=2.0),
         STRUCTURES["graphite"]]
    f = SorepFeaturizer("fermi", kdensity=KDENSITY, on_error="nan")
    one = f.transform(X)
    two = clone(f).set_params(n_jobs=2).transform(X)
    assert_array_equal(one, two)  # NaN rows in the same places too
    assert [bool(np.isnan(r).all()) for r in one] == [False, True, False, False, False]


@pytest.mark.parametrize(
    ("X", "match"),
    [
        ("si.cif", r"X must be a sequence of structures or band objects; got one str"),
        (STRUCTURES["si"], r"got one Structure \(use \[obj\], or featurize\(obj\)\)"),
        (42, r"X must be a sequence of structures or band objects; got int"),
        ([STRUCTURES["si"], "si.cif"], r"structure 'X\[1\]' must be a pymatgen Structure, an ASE Atoms or a "
                                       r"sporep_hpc.BandStructure; got builtins.str .*read_structures"),
        ([Molecule(["H", "H"], [[0, 0, 0], [0, 0, 0.74]])], r"'X\[0\]' must be .*got pymatgen.core.struc"),
        ([Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])], r"structure 'X\[0\]': ASE Atoms cannot be"),
        ([Atoms("Cu", cell=[3.6] * 3, pbc=[True, True, False])], r"structure 'X\[0\]': cell is not periodic"),
    ],
)
def test_bad_inputs_name_the_input(X, match):
    with pytest.raises(InputError, match=match):
        SorepFeaturizer(kdensity=KDENSITY).transform(X)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kdensity": -1.0}, r"^kdensity must be"),
        ({"operator": "hamiltonian"}, r"^operator must be one of"),
        ({"preset": "nope"}, r"^fingerprint must be one of"),
        ({"n_jobs": 0}, r"^n_jobs must be a positive integer, -1 \(every core\) or None \(1\); got 0"),
        ({"on_error": "skip"}, r"^on_error must be one of 'nan', 'raise'; got 'skip'"),
    ],
)
def test_bad_parameters(kwargs, match):
    f = SorepFeaturizer(**kwargs)  # scikit-learn convention: the constructor only stores
    with pytest.raises(ParameterError, match=match):
        f.fit()
    with pytest.raises(ParameterError, match=match):
        f.transform([STRUCTURES["si"]])


def test_matminer_interface():
    f = SorepFeaturizer("fermi", kdensity=KDENSITY)
    row = f.featurize(STRUCTURES["si"])
    assert isinstance(row, list) and all(isinstance(x, float) for x in row)
    assert_array_equal(row, f.transform([STRUCTURES["si"]])[0])
    assert len(f.feature_labels()) == len(row)
    assert f.citations() == [CITATION] and "doi = {10.1038/s41524-024-01446-9}" in CITATION
    assert "Zadoks, Austin and Marrazzo, Antimo and Marzari, Nicola" in CITATION
    assert all(isinstance(x, str) and x for x in f.implementors())
    with pytest.raises(InputError, match=r"structure 'input': atoms 0.250 Å apart"):
        f.featurize(STRUCTURES["close"])
    rows = f.featurize_many([STRUCTURES["si"], STRUCTURES["close"]], ignore_errors=True, return_errors=True)
    assert rows[0][:-1] == row and np.isnan(rows[0][-1])
    assert np.all(np.isnan(rows[1][:-1])) and "closer than" in rows[1][-1]
    assert f.featurize_wrapper((STRUCTURES["si"],)) == row


def test_inside_matminer_multiple_featurizer():
    base = pytest.importorskip("matminer.featurizers.base")
    pd = pytest.importorskip("pandas")
    both = base.MultipleFeaturizer([SorepFeaturizer("fermi", kdensity=KDENSITY), SorepFeaturizer("vbm_cbm")])
    both.set_n_jobs(1)
    n = PRESETS["fermi"].n_features + PRESETS["vbm_cbm"].n_features
    assert len(both.featurize(STRUCTURES["si"])) == len(both.feature_labels()) == n
    assert both.citations() == [CITATION]
    frame = both.featurize_dataframe(pd.DataFrame({"structure": [STRUCTURES["si"]]}), "structure", pbar=False)
    assert frame.shape == (1, 1 + n)


def _readme_example() -> str:
    """The ```python block of README.md that uses SorepFeaturizer."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    found = [b for b in blocks if "SorepFeaturizer" in b and "Pipeline" in b]
    assert len(found) == 1, "README.md needs exactly one Python example with SorepFeaturizer in a Pipeline"
    return found[0]


def test_readme_pipeline_example_runs(capsys):
    namespace: dict = {}
    exec(compile(_readme_example(), str(README), "exec"), namespace)  # our own README's code
    scores = namespace["scores"]
    assert len(scores) == 3 and np.all((scores >= 0) & (scores <= 1))
    assert "balanced accuracy" in capsys.readouterr().out


def test_public_api():
    """`dir(sporep_hpc)` is the public API of DESIGN §5b; importing it loads no numerics, MPI or sklearn."""
    assert dir(sporep_hpc) == sorted(sporep_hpc.__all__)
    assert "import_module" not in dir(sporep_hpc)
    for name in ("read_structures", "operator_spectrum", "BandStructure", "fingerprint", "SorepFeaturizer"):
        assert name in sporep_hpc.__all__
    for name in sporep_hpc.__all__:
        assert getattr(sporep_hpc, name) is not None, name
    code = "import sys, sporep_hpc; print(sorted({'numpy', 'sklearn', 'mpi4py'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
