"""Damaged stores end with exit code 3 and a message naming the dataset, never a traceback (issue 12.7).

One small store is made by a real one-rank run (4 structures), with a similarity matrix and a model
added by the commands themselves. For every dataset of it (found by walking the file with h5py,
not from the schema table under test) a copy without that dataset is given to each read command
in-process; further copies have offsets that decrease, offsets of the wrong length, a ragged
dataset shorter than its offsets say, counts that disagree with offsets, wrong dtypes, no `parameters`
attribute, similarity rows that are not store rows, or are truncated. Each command must end with 0 (it
does not read what was damaged) or 3 naming the dataset (never 1); for what a command certainly reads,
it must be 3.
"""

import hashlib
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from _references import structures
from mpi4py import MPI

from sporep_hpc.cli import main
from sporep_hpc.config import build_config
from sporep_hpc.parallel.driver import run
from sporep_hpc.store import open_store

FP = "kinetic"  # the run's default fingerprint
SIM = f"{FP}_cosine"  # the similarity group `sporep-hpc similarity` makes by default
STRUCTURES = {k: v for k, v in sorted(structures().items()) if k != "close"}  # cu, graphite, nacl, si
LABELS = {"cu": "metal", "graphite": "metal", "nacl": "insulator", "si": "insulator"}


@pytest.fixture(scope="session")
def intact(tmp_path_factory):
    """(store, labels file): a complete store with /similarity and /models, made once per session."""
    d = tmp_path_factory.mktemp("damaged")
    inputs = d / "inputs"
    inputs.mkdir()
    for name, s in STRUCTURES.items():
        s.to(filename=str(inputs / f"{name}.json"))
    labels = d / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{k},{v}\n" for k, v in LABELS.items()))
    store = d / "intact.h5"
    report = run([str(inputs)], store, build_config(overrides={"kdensity": 0.5}), MPI.COMM_SELF)
    assert report.n_done == 4, report.failures
    assert main(["similarity", str(store), "--neighbours", "0"]) == 0
    assert main(["classify", str(store), *CLASSIFY_FAST, "--labels", str(labels)]) == 0
    with open_store(store) as s:
        assert s.problems() == []  # the intact store is valid, or nothing below means anything
    return store, labels


CLASSIFY_FAST = ["--trees", "3", "--folds", "2", "--repeats", "1", "--groups", "2"]


def commands(path: Path, labels: Path, out: Path) -> dict[str, list[str]]:
    """Every read command on `path`; `out` is a free path for outputs."""
    p = str(path)
    return {
        "info": ["info", p],
        "similarity": ["similarity", p, "--neighbours", "2"],
        "neighbours": ["neighbours", p, "-k", "2"],
        "classify": ["classify", p, *CLASSIFY_FAST, "--labels", str(labels), "--no-save"],
        "merge": ["merge", p, "-o", str(out / "merged.h5")],
        "predict": ["predict", p, "--model", p, "-o", str(out / "predictions.csv")],
        "report": ["report", p],
    }


#: Commands that only read (the store's bytes must not change).
READ_ONLY = ("info", "classify", "merge", "predict", "report")

#: Datasets each command certainly reads (prefixes): damage there must give exit code 3.
#: Elsewhere exit code 0 is right too, as long as it is never 1.
READS = {
    "info": ("/",),
    "similarity": ("/structures/id", "/structures/status", f"/fingerprints/{FP}/"),
    "neighbours": ("/structures/id", "/structures/status", f"/fingerprints/{FP}/"),
    "classify": ("/structures/id", "/structures/status", "/structures/properties", f"/fingerprints/{FP}/"),
    "merge": ("/structures/", "/spectra/", "/fingerprints/"),
    "predict": ("/structures/id", "/structures/status", f"/fingerprints/{FP}/", f"/models/{FP}/energies"),
    "report": ("/structures/id", "/structures/status", "/structures/n_atoms", f"/similarity/{SIM}/index",
               f"/similarity/{SIM}/distance"),
}

#: Datasets a valid store may lack (no clustering is stored above `--max-linkage` structures).
OPTIONAL = (f"/similarity/{SIM}/linkage",)


def dataset_names(path: Path) -> list[str]:
    out = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda k, obj: out.append("/" + k) if isinstance(obj, h5py.Dataset) else None)
    return sorted(out)


def _replace(f: h5py.File, key: str, data) -> None:
    del f[key]
    f.create_dataset(key, data=data)


def _swap_rows(key):
    def damage(f):
        off = f[key][()]
        off[[1, 2]] = off[[2, 1]]
        assert off[1] > off[2]  # now decreasing
        f[key][...] = off
    return damage


def _add_one(key):
    def damage(f):
        f[key][0] += 1
    return damage


def _set_index(f):
    index = f[f"/similarity/{SIM}/index"]
    index[0] = 99


def _truncate(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size * 2 // 3)


#: name -> (what is damaged: named by messages, damage applied to the open file (or path), commands
#: that must give 3)
OTHER_DAMAGES = {
    "atoms_offset decreasing": ("/structures/atoms_offset", _swap_rows("structures/atoms_offset"),
                                ("info", "merge")),
    "bands_offset decreasing": ("/spectra/bands_offset", _swap_rows("spectra/bands_offset"),
                                ("info", "merge")),
    "n_atoms disagree with atoms_offset": ("/structures/n_atoms", _add_one("structures/n_atoms"),
                                           ("info", "merge")),
    "eigenvalues not whole n_k x n_bands blocks": ("/spectra/eigenvalues", _add_one("spectra/n_bands"),
                                                   ("info", "merge")),
    "kpoints_offset one short": (
        "/spectra/kpoints_offset",
        lambda f: _replace(f, "spectra/kpoints_offset", f["spectra/kpoints_offset"][:-1]),
        ("info", "merge"),
    ),
    "eigenvalues shorter than their offsets": (
        "/spectra/eigenvalues",
        lambda f: _replace(f, "spectra/eigenvalues", f["spectra/eigenvalues"][:-1]),
        ("info", "merge"),
    ),
    "fingerprint rows one short": (
        f"/fingerprints/{FP}/values",
        lambda f: _replace(f, f"fingerprints/{FP}/values", f[f"fingerprints/{FP}/values"][:-1]),
        ("info", "similarity", "neighbours", "classify", "merge", "predict"),
    ),
    "ids as floats": (
        "/structures/id",
        lambda f: _replace(f, "structures/id", np.arange(len(f["structures/id"]), dtype=np.float64)),
        tuple(READS),
    ),
    "fingerprints as text": (
        f"/fingerprints/{FP}/values",
        lambda f: _replace(f, f"fingerprints/{FP}/values", f[f"fingerprints/{FP}/values"][()].astype("S8")),
        ("info", "similarity", "neighbours", "classify", "merge", "predict"),
    ),
    "no parameters attribute": ("parameters", lambda f: f.attrs.__delitem__("parameters"),
                                ("info", "classify", "merge", "predict", "report")),
    "similarity row not a store row": (f"/similarity/{SIM}/index", _set_index, ("info", "report")),
    "truncated file": ("truncated", _truncate, tuple(READS)),
}


def outcome(capsys, argv) -> tuple[int, str]:
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def check(command, code, text, named, must_fail) -> str | None:
    """A failure description, or None when the outcome is right."""
    if code not in (0, 3):
        return f"{command}: exit {code} (expected 3{'' if must_fail else ' or 0'})\n{text[-2000:]}"
    if code == 3 and named not in text:
        return f"{command}: exit 3 but the message does not name {named}:\n{text[-2000:]}"
    if code == 0 and must_fail:
        return f"{command}: exit 0 although {named} is damaged"
    return None


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("command", list(READS))
@pytest.mark.parametrize("group", ["structures", "spectra", "fingerprints", "similarity", "models"])
def test_deleted_dataset(intact, tmp_path, capsys, command, group):
    store, labels = intact
    names = [n for n in dataset_names(store) if n.startswith(f"/{group}/")]
    assert names
    failures = []
    for k, name in enumerate(names):
        case = tmp_path / f"{k}"
        case.mkdir()
        path = case / "store.h5"
        shutil.copy(store, path)
        with h5py.File(path, "r+") as f:
            del f[name]
        before = sha256(path)
        code, text = outcome(capsys, commands(path, labels, case)[command])
        must_fail = name not in OPTIONAL and any(name.startswith(p) for p in READS[command])
        failures.append(check(command, code, text, name, must_fail))
        if command in READ_ONLY:
            assert sha256(path) == before, f"{command} changed the store"
    failures = [f for f in failures if f]
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("command", list(READS))
def test_inconsistent_store(intact, tmp_path, capsys, command):
    store, labels = intact
    failures = []
    for k, (what, (named, damage, must)) in enumerate(OTHER_DAMAGES.items()):
        case = tmp_path / f"{k}"
        case.mkdir()
        path = case / "store.h5"
        shutil.copy(store, path)
        if what == "truncated file":
            damage(path)
        else:
            with h5py.File(path, "r+") as f:
                damage(f)
        code, text = outcome(capsys, commands(path, labels, case)[command])
        problem = check(command, code, text, named if named != "truncated" else str(path), command in must)
        if problem:
            failures.append(f"[{what}] {problem}")
    assert not failures, "\n\n".join(failures)


def test_info_lists_every_problem(intact, tmp_path, capsys):
    """`info` describes the valid parts and lists each missing dataset, then exits with 3."""
    store, _ = intact
    path = tmp_path / "store.h5"
    shutil.copy(store, path)
    with h5py.File(path, "r+") as f:
        del f["spectra/kpoints"]
        del f[f"models/{FP}/energies"]
    code, text = outcome(capsys, ["info", str(path)])
    assert code == 3
    assert "structures 4: 4 done, 0 failed, 0 pending" in text  # the intact part is still described
    assert f"fingerprint {FP}:" in text
    assert "/spectra/kpoints: missing" in text and f"/models/{FP}/energies: missing" in text
    assert "damaged: 2 " in text


def test_intact_store_is_valid(intact):
    """The intact store passes every check; an unknown part is a programming error, not exit 3."""
    store, _ = intact
    with open_store(store) as s:
        s.require()
        assert s.problems("structures", "spectra", f"fingerprints/{FP}", "models", "similarity") == []
        with pytest.raises(ValueError, match="unknown store part"):
            s.require("nonsense")
