"""`sporep-hpc run` and `sporep-hpc info` as a user runs them (subprocess, one rank, from rank 0).

Exit codes are the documented ones (cli/__init__.py): 0 ok, 2 bad parameters, 4 some structures
failed, 5 stopped by SIGTERM with the journal consistent.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

pytestmark = pytest.mark.mpi


def env():
    out = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "PMIX_", "HYDRA_", "MPIR_"))}
    out["OMP_NUM_THREADS"] = "1"
    return out


def sporep(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "sporep_hpc", *map(str, args)], env=env(), capture_output=True, text=True,
        timeout=300, **kw,
    )


@pytest.fixture
def rank0(comm):
    """Run the body on rank 0 only (the subprocesses are one-rank jobs); the others wait."""
    yield comm.rank == 0
    comm.Barrier()


def test_run_info_and_exit_codes(rank0, tmp_path):
    if not rank0:
        return
    si = Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    si.to(filename=str(tmp_path / "si.json"))
    (tmp_path / "broken.json").write_text("[")
    out = tmp_path / "s.h5"
    r = sporep("run", tmp_path / "si.json", tmp_path / "broken.json", "-o", out, "--kdensity", "0.5")
    assert r.returncode == 4, r.stderr
    assert "broken: " in r.stderr and "run summary" in r.stderr and out.is_file()
    r = sporep("info", out)
    assert r.returncode == 0, r.stderr
    assert "structures 2: 1 done, 1 failed, 0 pending" in r.stdout
    assert "fingerprint kinetic: 2048 features" in r.stdout
    # the same command again: nothing computed, the store untouched, the same exit code
    stamp = out.stat().st_mtime_ns
    r = sporep("run", tmp_path / "si.json", tmp_path / "broken.json", "-o", out, "--kdensity", "0.5")
    assert r.returncode == 4, r.stderr
    assert "up to date" in r.stderr and "nothing to compute" in r.stderr
    assert out.stat().st_mtime_ns == stamp
    # another parameter: refused (exit code 2 of ParameterError), store untouched
    r = sporep("run", tmp_path / "si.json", tmp_path / "broken.json", "-o", out, "--kdensity", "0.4")
    assert r.returncode == 2 and "other parameters" in r.stderr and "kdensity: 0.5 -> 0.4" in r.stderr
    assert out.stat().st_mtime_ns == stamp
    r = sporep("run", tmp_path / "si.json", "-o", tmp_path / "d.h5", "--dry-run")
    assert r.returncode == 0 and "estimated cost per rank" in r.stderr
    assert not (tmp_path / "d.h5").exists()
    r = sporep("run", tmp_path / "si.json", "-o", tmp_path / "x.h5", "--kdensity", "-1")
    assert r.returncode == 2 and "kdensity must be a number in [0.0127385, inf) 1/Å; got -1.0" in r.stderr
    r = sporep("info", tmp_path / "none.h5")
    assert r.returncode == 3 and "no such store" in r.stderr


def test_sigterm_stops_cleanly_with_exit_code_5(rank0, tmp_path, rng):
    if not rank0:
        return
    d = tmp_path / "many"
    d.mkdir()
    diamond = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5],
                        [0.25, 0.25, 0.25], [0.75, 0.75, 0.25], [0.75, 0.25, 0.75], [0.25, 0.75, 0.75]])
    for i in range(40):  # 8-atom cells without symmetry, ~0.25 s each here: the run takes ~10 s
        s = Structure(Lattice.cubic(5.43), ["Si"] * 8, diamond + rng.uniform(-0.01, 0.01, (8, 3)))
        s.to(filename=str(d / f"si{i:03d}.json"))
    out = tmp_path / "big.h5"
    journal = tmp_path / "big.h5.journal"
    cmd = [sys.executable, "-m", "sporep_hpc", "run", str(d), "-o", str(out), "--kdensity", "0.08"]
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(journal.glob("rank-0.h5")) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)  # a few tasks in: the whole run takes seconds
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 5, err
    assert "STOPPED by a signal" in err and not out.exists() and journal.is_dir()
    r = sporep("info", out)
    assert r.returncode == 0 and "not assembled yet" in r.stdout
