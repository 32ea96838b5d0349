"""The CLI without an MPI library (issue 16.1): PyPI's mpi4py wheel installs none, and importing
mpi4py.MPI then raises ImportError("libmpi.so.12: cannot open shared object file ...").

Each case runs `sporep-hpc` in a subprocess whose import system refuses mpi4py.MPI (or mpi4py) with the
exception a missing library gives, so the MPI already loaded by this test process plays no part.
The subcommands that need MPI must exit 2 with the commands that install one, never "internal error";
the others must work as usual.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

import h5py
import pytest
from pymatgen.core import Lattice, Structure

from sporep_hpc.cli import main

LIBMPI_MISSING = 'ImportError("libmpi.so.12: cannot open shared object file: No such file or directory")'

# What Python runs: a meta-path finder raising `error` for `module`, then the CLI with the given argv.
WRAPPER = """\
import importlib.abc, sys

class NoMPI(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == {module!r}:
            raise {error}
        return None

sys.meta_path.insert(0, NoMPI())
from sporep_hpc.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cli_without_mpi(
    argv: list[str], cwd, module: str = "mpi4py.MPI", error: str = LIBMPI_MISSING
) -> subprocess.CompletedProcess:
    code = WRAPPER.format(module=module, error=error)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI", "MPI", "OMPI", "HYDRA"))}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def assert_install_hint(res: subprocess.CompletedProcess, command: str, packages: str) -> None:
    python = shlex.quote(sys.executable)
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr  # one message, no log of a half-started run
    assert lines[0].startswith(f"sporep-hpc {command}: error: ")
    assert f"{python} -m pip install {packages} (MPICH from PyPI)" in lines[0]
    assert "conda install -c conda-forge mpi4py mpich" in lines[0]
    assert "--no-binary=mpi4py mpi4py" in lines[0]  # a system MPI: mpi4py built against it


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "examples:batio3", "-o", "x.h5"],
        ["run", "examples:batio3", "-o", "x.h5", "--dry-run"],
        ["similarity", "x.h5"],
        ["neighbours", "x.h5", "-k", "2"],
        ["merge", "a.h5", "b.h5", "-o", "x.h5"],
    ],
    ids=lambda argv: " ".join(argv[:1] + [a for a in argv if a.startswith("--")]),
)
def test_mpi_subcommands_exit_2_with_the_install_command(tmp_path, argv):
    res = cli_without_mpi(argv, tmp_path)
    assert_install_hint(res, argv[0], "mpich")
    assert "(libmpi.so.12: cannot open shared object file: No such file or directory)" in res.stderr
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "x.h5.journal").exists()


def test_mpi4py_missing_asks_for_mpi4py_too(tmp_path):
    res = cli_without_mpi(
        ["run", "examples:batio3", "-o", "x.h5"], tmp_path,
        module="mpi4py", error="""ModuleNotFoundError("No module named 'mpi4py'", name="mpi4py")""",
    )  # fmt: skip
    assert_install_hint(res, "run", "mpi4py mpich")
    assert "mpi4py is not installed" in res.stderr


def test_unloadable_library_named_by_mpi4py_libmpi(tmp_path):
    """MPI4PY_LIBMPI naming a library that cannot be loaded: mpi4py raises a RuntimeError with one line
    per attempt; the message keeps them on one line."""
    error = 'RuntimeError("cannot load MPI library\\n/opt/x/libmpi.so: cannot open shared object file")'
    res = cli_without_mpi(["run", "examples:batio3", "-o", "x.h5"], tmp_path, error=error)
    assert_install_hint(res, "run", "mpich")
    assert "(cannot load MPI library; /opt/x/libmpi.so: cannot open shared object file)" in res.stderr


def test_an_unrelated_import_error_in_the_run_is_not_called_a_missing_mpi(tmp_path):
    """Only the import of mpi4py.MPI is translated: a broken library module stays an internal error."""
    res = cli_without_mpi(
        ["run", "examples:batio3", "-o", "x.h5"], tmp_path,
        module="sporep_hpc.parallel.driver", error='ImportError("a bug")',
    )  # fmt: skip
    assert res.returncode == 1
    assert "internal error" in res.stderr and "pip install" not in res.stderr


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A small store written with MPI (this process), then read by subcommands without it."""
    monkeypatch.chdir(tmp_path)
    Structure(Lattice.cubic(3.0), ["C"], [[0, 0, 0]]).to(filename="c1.cif")
    Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename="nacl.cif")
    assert main(["run", "c1.cif", "nacl.cif", "-o", "s.h5", "--kdensity", "0.5", "--threads", "1"]) == 0
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["info", "s.h5"], "2 done"),
        (["report", "s.h5"], "2 done"),
        (["jobs", "list"], "single-node"),
        (["split", "list.txt", "--chunks", "2", "--kdensity", "0.5"], "list.chunks"),
        (["run", "--help"], "--dry-run"),
    ],
    ids=["info", "report", "jobs", "split", "run-help"],
)
def test_subcommands_without_mpi_still_work(store, argv, expected):
    (store / "list.txt").write_text("c1.cif\nnacl.cif\n")
    res = cli_without_mpi(argv, store, module="mpi4py", error="""ModuleNotFoundError("no", name="mpi4py")""")
    assert res.returncode == 0, res.stderr
    assert expected in res.stdout + res.stderr
    assert "pip install" not in res.stderr
    with h5py.File(store / "s.h5", "r") as f:  # read-only: still the store `run` wrote
        assert f["structures/id"].shape == (2,)
