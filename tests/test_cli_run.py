"""`sporep-hpc run` as a user runs it on two ranks: ``mpiexec -n 2 python -m sporep_hpc run ...``.

A serial test that launches MPI jobs, so that the whole path runs at 2 ranks: argument parsing on every
rank, the exit code agreed by all ranks (a structure failing on either rank must give 4 on both, else
mpiexec reports a mixture), and SIGTERM forwarded by mpiexec to both ranks (exit code 5, journal kept).
The driver run in-process on a test communicator could not show this: the exit code and the signal
handler belong to the process, and a SIGTERM would stop pytest itself.

Exit codes are the documented ones (cli/__init__.py): 0 ok, 2 bad parameters, 3 store problem, 4 some
structures failed, 5 stopped by SIGTERM with the journal consistent. `sporep-hpc info` is a one-process
command and runs without mpiexec.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _references import si_conventional, structures, write_mixed_corpus
from pymatgen.core import Structure

MPIEXEC = shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="mpiexec not found")
TIMEOUT = 300  # s, per command; each takes a few seconds here


def sporep_mpi(*args) -> list[str]:
    """The command line of `sporep-hpc` on two ranks."""
    return [MPIEXEC, "-n", "2", sys.executable, "-m", "sporep_hpc", *map(str, args)]


def run(env: dict, command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=TIMEOUT)


def info(env: dict, store) -> subprocess.CompletedProcess:
    return run(env, [sys.executable, "-m", "sporep_hpc", "info", str(store)])


def test_run_exit_codes_at_two_ranks(subprocess_env, tmp_path):
    env = subprocess_env
    for name in ("si", "si2"):
        structures()["si"].to(filename=str(tmp_path / f"{name}.json"))
    (tmp_path / "broken.json").write_text("[")
    inputs = [tmp_path / "si.json", tmp_path / "si2.json", tmp_path / "broken.json"]

    ok = tmp_path / "ok.h5"
    r = run(env, sporep_mpi("run", *inputs[:2], "-o", ok, "--kdensity", "0.5"))
    assert r.returncode == 0, r.stderr
    r = info(env, ok)
    assert r.returncode == 0, r.stderr
    assert "ranks 2" in r.stdout and "structures 2: 2 done, 0 failed, 0 pending" in r.stdout

    out = tmp_path / "s.h5"
    r = run(env, sporep_mpi("run", *inputs, "-o", out, "--kdensity", "0.5"))
    assert r.returncode == 4, r.stderr  # both ranks exit 4: mpiexec would report another code otherwise
    assert "broken: " in r.stdout and "run summary" in r.stdout and out.is_file()  # the summary: stdout
    r = info(env, out)
    assert r.returncode == 0, r.stderr
    assert "ranks 2" in r.stdout and "structures 3: 2 done, 1 failed, 0 pending" in r.stdout
    assert "fingerprint kinetic: 2048 features" in r.stdout
    # the same command again: nothing computed, the store untouched, the same exit code
    stamp = out.stat().st_mtime_ns
    r = run(env, sporep_mpi("run", *inputs, "-o", out, "--kdensity", "0.5"))
    assert r.returncode == 4, r.stderr
    assert "up to date" in r.stderr and "nothing to compute" in r.stderr
    assert out.stat().st_mtime_ns == stamp
    # another parameter: refused (exit code 2 of ParameterError) on both ranks, store untouched
    r = run(env, sporep_mpi("run", *inputs, "-o", out, "--kdensity", "0.4"))
    assert r.returncode == 2 and "other parameters" in r.stderr and "kdensity: 0.5 -> 0.4" in r.stderr
    assert out.stat().st_mtime_ns == stamp
    r = run(env, sporep_mpi("run", inputs[0], "-o", tmp_path / "d.h5", "--dry-run"))
    assert r.returncode == 0 and "estimated cost per rank" in r.stdout and "core-s" in r.stdout
    assert not (tmp_path / "d.h5").exists()
    r = run(env, sporep_mpi("run", inputs[0], "-o", tmp_path / "x.h5", "--kdensity", "-1"))
    assert r.returncode == 2 and "kdensity must be a number in [0.0127385, inf) 1/Å; got -1.0" in r.stderr
    assert "Traceback" not in r.stderr
    r = info(env, tmp_path / "none.h5")
    assert r.returncode == 3 and "no such store" in r.stderr


def test_malformed_corpus_exit_code_4_without_traceback_at_two_ranks(subprocess_env, tmp_path):
    # issue 12.5: every hostile file a failed row, the good ones done, exit code 4, no traceback
    d = tmp_path / "corpus"
    bad, good = write_mixed_corpus(d, max_atoms=40)
    r = run(subprocess_env, sporep_mpi("run", d, "-o", tmp_path / "cli.h5", "--kdensity", "0.5",
                                       "--max-atoms", "40"))
    assert r.returncode == 4, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert re.search(rf"failed\s+{len(bad)}\n", r.stdout), r.stdout[-3000:]
    r = info(subprocess_env, tmp_path / "cli.h5")
    assert f"structures {len(bad) + len(good)}: {len(good)} done, {len(bad)} failed" in r.stdout, r.stdout
    # absurd sizes: refused at parse time, exit 2, naming the parameter
    for flag, value, name in (("--kdensity", "1e-300", "kdensity"), ("--kdensity", "0.001", "kdensity"),
                              ("--max-memory", "1MiB", "max_memory")):
        r = run(subprocess_env, sporep_mpi("run", d / "si.json", "-o", tmp_path / "x.h5", flag, value))
        assert r.returncode == 2 and name in r.stderr and "Traceback" not in r.stderr, r.stderr[-3000:]


def rank_processes(marker: str) -> list[int]:
    """PIDs of the MPI ranks (this Python, not mpiexec or its proxies) whose command line holds `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # not a process, or gone
            continue
        if argv and argv[0].decode() == sys.executable and any(marker.encode() in a for a in argv):
            found.append(int(proc.name))
    return found


def test_sigterm_to_the_ranks_stops_both_with_exit_code_5(subprocess_env, tmp_path, rng):
    """SIGTERM to every rank (as a scheduler's signal to the job step does): both stop after their
    current task, the journal stays, exit code 5. (A signal to mpiexec itself is forwarded, but the exit
    status Hydra's mpiexec then reports does not always carry the ranks' code.)"""
    d = tmp_path / "many"
    d.mkdir()
    si8 = si_conventional()
    for i in range(40):  # 8-atom cells without symmetry, ~0.25 s each here: the run takes ~5 s on 2 ranks
        s = Structure(si8.lattice, si8.species, si8.frac_coords + rng.uniform(-0.01, 0.01, (8, 3)))
        s.to(filename=str(d / f"si{i:03d}.json"))
    out = tmp_path / "big.h5"
    journal = tmp_path / "big.h5.journal"
    proc = subprocess.Popen(sporep_mpi("run", d, "-o", out, "--kdensity", "0.08", "--journal-interval", "0"),
                            env=subprocess_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120  # each rank writes its journal after every task (interval 0)
    while not all((journal / f"rank-{r}.h5").exists() for r in (0, 1)) and time.monotonic() < deadline:
        if proc.poll() is not None:  # ended before it started: its stderr says why
            pytest.fail(proc.communicate()[1])
        time.sleep(0.01)
    ranks = rank_processes(str(out))
    assert len(ranks) == 2, ranks
    for pid in ranks:
        os.kill(pid, signal.SIGTERM)
    summary, err = proc.communicate(timeout=120)
    assert proc.returncode == 5, err
    assert "STOPPED by a signal" in summary and not out.exists() and journal.is_dir()
    r = info(subprocess_env, out)
    assert r.returncode == 0 and "not assembled yet" in r.stdout
