"""`sporep-hpc split`: cost-balanced chunk lists that keep the ids of one run over the whole list.

References: a brute-force optimal partition (every assignment of units to chunks) for the balance,
Graham's bound for greedy LPT (makespan <= (4/3 - 1/(3m)) OPT), spglib's irreducible mesh and the
basis functions counted by hand for the cost of one structure, and `resolve_inputs` (what `run` uses)
for the ids each chunk list yields.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _references import brute_force_makespan, si_conventional
from pymatgen.core import Lattice, Structure

from sporep_hpc import jobs
from sporep_hpc.cli import main
from sporep_hpc.config import RunParameters
from sporep_hpc.errors import InputError, ParameterError
from sporep_hpc.inputs.resolve import resolve_inputs
from sporep_hpc.parallel.plan import cost_model
from sporep_hpc.parallel.split import MANIFEST, Unit, expected_ids, plan_units, split_list, split_units


def _structures() -> dict[str, Structure]:
    """Small crystals of different cost (elements the default basis covers)."""
    si_prim = Structure(Lattice([[0, 2.715, 2.715], [2.715, 0, 2.715], [2.715, 2.715, 0]]), ["Si", "Si"],
                        [[0, 0, 0], [0.25, 0.25, 0.25]])  # fmt: skip
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    c_sc = Structure(Lattice.cubic(3.0), ["C"], [[0, 0, 0]])
    return {"si8": si_conventional(), "si2": si_prim, "nacl": nacl, "c1": c_sc}


@pytest.fixture
def database(tmp_path, monkeypatch):
    """Files, a flat directory, a nested directory and a built-in set, listed in list.txt."""
    monkeypatch.chdir(tmp_path)
    s = _structures()
    s["si8"].to(filename="si8.cif")
    s["nacl"].to(filename="nacl.cif")
    (tmp_path / "flat").mkdir()
    s["si2"].to(filename="flat/si2.cif")
    s["c1"].to(filename="flat/c1.cif")
    (tmp_path / "nested" / "sub").mkdir(parents=True)
    s["c1"].to(filename="nested/sub/c1b.cif")
    s["si2"].to(filename="nested/si2b.cif")
    (tmp_path / "list.txt").write_text("# database\nsi8.cif\nflat\n\nnacl.cif\nnested\nexamples:batio3\n")
    return tmp_path


# --- the balance --------------------------------------------------------------------------------------




@pytest.mark.parametrize("m", [2, 3])
def test_split_units_within_grahams_bound_of_the_optimum(rng, m):
    for _ in range(5):
        costs = [float(c) for c in rng.lognormal(0.0, 1.0, size=8)]
        units = [Unit(f"u{i}", (f"id{i}",), c) for i, c in enumerate(costs)]
        split = split_units(units, m)
        assert sorted(i for chunk in split.chunks for i in chunk) == list(range(len(units)))
        assert all(list(chunk) == sorted(chunk) for chunk in split.chunks)
        makespan = max(split.costs)
        optimum = brute_force_makespan(costs, m)  # brute force over all m^8 assignments
        assert makespan <= (4 / 3 - 1 / (3 * m)) * optimum + 1e-12  # Graham (1969) bound for LPT
        assert split.imbalance == pytest.approx(makespan / (sum(costs) / m), rel=1e-12)


def test_split_units_rejects_bad_chunk_counts():
    units = [Unit("a", ("a",), 1.0), Unit("b", ("b",), 2.0)]
    with pytest.raises(ParameterError, match=r"chunks must be an integer in \[1, 2\]; got 3"):
        split_units(units, 3)
    with pytest.raises(ParameterError, match=r"chunks must be an integer in \[1, 2\]; got 0"):
        split_units(units, 0)


def test_cost_of_a_unit_uses_the_run_cost_model(database):
    """Si, 8 atoms: ano-valence keeps one s and one p shell of Si -> 8 x (1 + 3) = 32 functions (by hand)."""
    import spglib

    params = RunParameters(keep_cell=True)  # the 8-atom cell as given, not its primitive cell (issue 13.6)
    (unit,) = plan_units(["si8.cif"], params)
    s = si_conventional()
    recip = np.linalg.norm(s.lattice.reciprocal_lattice.matrix, axis=1)  # includes 2π
    mesh = [max(1, math.ceil(b / params.kdensity)) for b in recip]  # DESIGN §3 default rule
    cell = (s.lattice.matrix, s.frac_coords, s.atomic_numbers)
    mapping, _ = spglib.get_ir_reciprocal_mesh(mesh, cell, is_shift=[0, 0, 0], is_time_reversal=True)
    n_k = len(np.unique(mapping))
    assert unit.ids == ("si8",)
    assert unit.cost == pytest.approx(cost_model(32, n_k, s.volume), rel=1e-12)


# --- the chunk lists ----------------------------------------------------------------------------------


def test_split_keeps_the_ids_of_one_run(database):
    params = RunParameters()
    split, paths = split_list("list.txt", 3, params)
    assert [p.name for p in paths] == ["chunk-0000.txt", "chunk-0001.txt", "chunk-0002.txt"]
    assert paths[0].parent.name == "list.chunks"  # where `jobs render array` looks by default
    lines = [line for p in paths for line in jobs.read_list(p)]
    # the flat directory became its files; the nested one stays whole (its ids hold the sub-path)
    assert sorted(lines) == sorted(["si8.cif", "flat/c1.cif", "flat/si2.cif", "nacl.cif", "nested",
                                    "examples:batio3"])  # fmt: skip
    whole = [r.id for r in resolve_inputs(jobs.read_list("list.txt"))]
    manifest = json.loads((database / "list.chunks" / MANIFEST).read_text())
    for k, path in enumerate(paths):
        chunk_ids = [r.id for r in resolve_inputs(jobs.read_list(path))]  # what `run` will call them
        assert chunk_ids == manifest["chunks"][k]["ids"] == split.ids(k)
        assert chunk_ids, "no chunk may be empty"
    assert expected_ids(database / "list.chunks" / MANIFEST) == whole  # one run's order
    assert "sub/c1b" in whole and "si2b" in whole


def test_split_refuses_to_overwrite_unless_forced(database):
    params = RunParameters()
    split_list("list.txt", 3, params)
    with pytest.raises(ParameterError, match=r"list.chunks has 3 \(use --force"):
        split_list("list.txt", 2, params)
    split_list("list.txt", 2, params, force=True)
    assert [p.name for p in jobs.chunk_files("list.chunks")] == ["chunk-0000.txt", "chunk-0001.txt"]


def test_split_rejects_duplicate_ids_and_too_many_chunks(database):
    (database / "other").mkdir()
    _structures()["nacl"].to(filename="other/nacl.cif")
    (database / "dup.txt").write_text("nacl.cif\nother/nacl.cif\n")
    with pytest.raises(InputError, match=r"duplicate id 'nacl'"):
        split_list("dup.txt", 1, RunParameters())
    (database / "two.txt").write_text("nacl.cif\nsi8.cif\n")
    with pytest.raises(ParameterError, match=r"chunks must be an integer in \[1, 2\]; got 5"):
        split_list("two.txt", 5, RunParameters())


def test_cli_split_then_render_array(database, capsys):
    assert main(["split", "list.txt", "--chunks", "2", "--kdensity", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "2 chunks, 6 units, 10 structures; imbalance (largest / mean cost)" in out
    manifest = json.loads((database / "list.chunks" / MANIFEST).read_text())
    assert manifest["parameters"]["kdensity"] == 0.3
    assert main(["jobs", "render", "array", "--structures", "list.txt", "--ranks", "2", "--dry-run"]) == 0
    assert "2 lists in list.chunks" in capsys.readouterr().out
    assert main(["split", "list.txt", "--chunks", "99", "--force"]) == 2
    assert main(["split", "missing.txt", "--chunks", "2"]) == 2


def test_array_job_end_to_end(database, tmp_path):
    """split -> the rendered array script run by bash for each task (a fake srun that just executes the
    command: one rank) -> merge: the merged store holds every structure of the list, in the list's order."""
    import os
    import subprocess
    import sys

    import h5py

    (database / "small.txt").write_text("si8.cif\nflat\nnacl.cif\n")
    split_list("small.txt", 2, RunParameters())
    bindir = tmp_path / "bin"
    bindir.mkdir()
    srun = bindir / "srun"
    srun.write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')  # drop srun options
    srun.chmod(0o755)
    spec = jobs.JobSpec("array", structures="small.txt", output="stores", python=sys.executable)
    script = database / "array.sbatch"
    script.write_text(jobs.render(spec))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PMI", "MPI"))}
    env.update(PATH=f"{bindir}:{env['PATH']}", OMP_NUM_THREADS="1")
    for task in (0, 1):
        res = subprocess.run(["/bin/bash", str(script)], env={**env, "SLURM_ARRAY_TASK_ID": str(task)},
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert res.returncode == 0, res.stderr[-2000:]
    stores = sorted(str(p) for p in (database / "stores").glob("chunk-*.h5"))
    assert len(stores) == 2
    manifest = str(database / "small.chunks" / MANIFEST)
    assert main(["merge", *stores, "-o", "all.h5", "--manifest", manifest]) == 0
    with h5py.File(database / "all.h5", "r") as f:
        ids = [x.decode() for x in f["structures/id"][()]]
        status = f["structures/status"][()]
    assert (
        ids == [r.id for r in resolve_inputs(["si8.cif", "flat", "nacl.cif"])] == ["si8", "c1", "si2", "nacl"]
    )
    assert (status == 1).all()
