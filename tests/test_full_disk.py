"""A real full disk (issue 12.4): `sporep-hpc run` on a small tmpfs, at 1, 2 and 3 ranks.

The run must end with exit code 3 and a message that says what happened and that a rerun with room
resumes: no traceback, no hang (every launch has a timeout), no lost work. The tmpfs is then grown
(``mount -o remount,size=...``) and the same command finishes the store. Needs root (to mount) and
mpiexec; skipped otherwise.
"""

import os
import shutil
import subprocess
import sys

import pytest
from _references import structures
from pymatgen.core import Lattice, Structure

from sporep_hpc.parallel.journal import JOURNAL_HEADROOM, journal_dir
from sporep_hpc.store import STATUS_DONE, open_store

MPIEXEC = shutil.which("mpiexec")
TIMEOUT = 240  # s per launch: a hang fails the test instead of blocking the suite


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """20 small crystals."""
    d = tmp_path_factory.mktemp("inputs")
    for name, s in structures().items():
        if name != "close":
            s.to(filename=str(d / f"{name}.json"))
    for k in range(16):
        s = Structure(Lattice.cubic(5.0 + 0.05 * k), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        s.to(filename=str(d / f"nacl{k:02d}.json"))
    return d


@pytest.fixture(scope="module")
def sizes(inputs, tmp_path_factory):
    """(journal bytes, store bytes) of a run over `inputs` on a disk with room (the journal kept)."""
    if MPIEXEC is None:
        pytest.skip("needs mpiexec")
    out = tmp_path_factory.mktemp("room") / "store.h5"
    r = sporep_run(1, inputs, out, "--keep-journal")
    assert r.returncode == 0, r.stderr
    journal = sum(f.stat().st_size for f in journal_dir(out).iterdir())
    return journal, out.stat().st_size


def kib(n: float) -> str:
    return f"{int(n) // 1024 + 1}k"


@pytest.fixture
def small_disk(tmp_path):
    """A function mounting (or resizing) a tmpfs of the given size at tmp_path/disk; unmounted after."""
    if os.geteuid() != 0 or MPIEXEC is None:
        pytest.skip("needs root (to mount a tmpfs) and mpiexec")
    where = tmp_path / "disk"
    where.mkdir()
    mounted = []

    def mount(size: str):
        options = f"size={size}" if not mounted else f"remount,size={size}"
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
        mounted.append(size)
        return where

    yield mount
    if mounted:
        subprocess.run(["umount", str(where)], check=True)


def sporep_run(n_ranks, inputs, output, *more):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "HYDRA_", "MPIR_"))}
    env["OMP_NUM_THREADS"] = "1"
    command = [MPIEXEC, "-n", str(n_ranks), sys.executable, "-m", "sporep_hpc", "run", str(inputs),
               "-o", str(output), "--kdensity", "0.5", "--schedule", "static", *more]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.mark.parametrize("n_ranks", [1, 2, 3])
def test_journal_fills_the_disk_then_resumes(small_disk, inputs, sizes, n_ranks):
    disk = small_disk(kib(sizes[0] / 2 + JOURNAL_HEADROOM))  # room for part of the journal only
    out = disk / "store.h5"
    r = sporep_run(n_ranks, inputs, out)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert "No space left on device" in r.stderr and "rerun the same command to resume" in r.stderr
    assert not out.exists() and not (disk / "store.h5.lock").exists()
    small_disk(kib(4 * sum(sizes) + (4 << 20)))
    r = sporep_run(n_ranks, inputs, out)
    assert r.returncode == 0, r.stderr
    assert "from journal" in r.stdout  # the run's summary
    with open_store(out) as store:
        assert len(store) == 20 and (store.status == STATUS_DONE).all()
    assert not (disk / "store.h5.journal").exists()


def test_store_does_not_fit_then_resumes(small_disk, inputs, sizes):
    disk = small_disk(kib(1.2 * sizes[0] + 2 * JOURNAL_HEADROOM))  # the journal fits, the store does not
    out = disk / "store.h5"
    r = sporep_run(2, inputs, out)
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr and "not enough space for the store" in r.stderr
    assert "rerun the same command" in r.stderr
    assert not out.exists() and not (disk / "store.h5.partial").exists()
    assert (disk / "store.h5.journal").is_dir()
    small_disk(kib(4 * sum(sizes) + (4 << 20)))
    r = sporep_run(2, inputs, out)
    assert r.returncode == 0, r.stderr
    with open_store(out) as store:
        assert (store.status == STATUS_DONE).all()
