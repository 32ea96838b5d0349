"""Pure pieces of the MPI driver: block ranges, LPT, cost model, journal, progress, one-rank RMA counter."""

import dataclasses
import json
import math

import h5py
import numpy as np
import pytest
from _references import brute_force_makespan
from mpi4py import MPI

from sporep_hpc.config import RunParameters
from sporep_hpc.errors import ParameterError
from sporep_hpc.parallel.journal import (
    JournalShard,
    journal_dir,
    load_entries,
    merge_refs,
    prepare_journal,
    scan_journal,
    scan_shard,
    stale_ids,
)
from sporep_hpc.parallel.plan import (
    COST_CONSTANT,
    COST_INTEGRAL_WEIGHT,
    COST_LATTICE_RADIUS,
    PlanEntry,
    Task,
    cost_model,
    make_tasks,
)
from sporep_hpc.parallel.progress import Progress, RunReport, format_duration, progress_line, summary_table
from sporep_hpc.parallel.schedule import TaskCounter, block_range, largest_first, lpt_assign, lpt_makespan
from sporep_hpc.pipeline import TaskTimes, chunk_id, structure_id
from sporep_hpc.store import STATUS_DONE, StructureResult, failed_result


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10, 11])
@pytest.mark.parametrize("size", [1, 2, 3, 4, 16])
def test_block_range_matches_array_split(n, size):
    # reference: numpy.array_split gives the same first-ranks-get-one-more distribution
    parts = np.array_split(np.arange(n), size)
    for rank in range(size):
        lo, hi = block_range(n, size, rank)
        np.testing.assert_array_equal(np.arange(lo, hi), parts[rank])


def test_block_range_rejects_bad_arguments():
    with pytest.raises(ParameterError, match="rank must be an integer in"):
        block_range(5, 2, 2)
    with pytest.raises(ParameterError, match="size must be"):
        block_range(5, 0, 0)




@pytest.mark.parametrize("size", [1, 2, 3])
def test_lpt_within_graham_bound_of_optimum(rng, size):
    # reference: exhaustive optimum; Graham (1969): LPT <= (4/3 - 1/(3m)) OPT
    for _ in range(10):
        costs = list(rng.uniform(0.1, 10, rng.integers(1, 8)))
        assignment = lpt_assign(costs, size)
        assert sorted(i for tasks in assignment for i in tasks) == list(range(len(costs)))
        opt = brute_force_makespan(costs, size)
        assert lpt_makespan(costs, assignment) <= (4 / 3 - 1 / (3 * size)) * opt + 1e-12


def test_lpt_is_deterministic_with_ties():
    assert lpt_assign([1, 1, 1, 1], 2) == [[0, 2], [1, 3]]
    assert largest_first([1, 3, 3, 2]) == [1, 2, 3, 0]
    assert lpt_assign([], 3) == [[], [], []]


def test_cost_model_terms():
    # hand-computed: n_ao^3 n_k + w n_ao^2 (4/3 pi R^3 / V) + c
    n_t = 4 / 3 * math.pi * COST_LATTICE_RADIUS**3 / 100.0
    expected = 1000 * 4 + COST_INTEGRAL_WEIGHT * 100 * n_t + COST_CONSTANT
    assert cost_model(10, 4, 100.0) == pytest.approx(expected)
    assert cost_model(200, 4, 100.0) > cost_model(100, 8, 100.0)  # cubic in n_ao, linear in n_k
    # at least one translation
    assert cost_model(1, 1, 1e9) == pytest.approx(1 + COST_INTEGRAL_WEIGHT + COST_CONSTANT)


def result(i, rng):
    eig = np.sort(rng.normal(size=(1, 3, 4)), axis=2)
    return StructureResult(
        index=i, id=f"id/{i}", status=STATUS_DONE, formula="Si", cell=np.eye(3), numbers=np.array([14]),
        positions=np.zeros((1, 3)), kpoints=rng.uniform(size=(3, 3)), weights=np.full(3, 1 / 3),
        eigenvalues=eig, n_electrons=4.0, fermi_energy=0.5, vbm=0.1, cbm=0.9, band_gap=0.8,
        fingerprints={"kinetic": rng.uniform(size=6)},
    )


def test_journal_round_trip_and_incomplete_entries(tmp_path, rng):
    jdir = journal_dir(tmp_path / "store.h5")
    assert jdir.name == "store.h5.journal"
    params = RunParameters()
    assert prepare_journal(jdir, params, "auto").startswith("new journal")
    written = {i: result(i, rng) for i in range(3)}
    with JournalShard(jdir, 0, params.to_json()) as shard:
        shard.append(written[0], TaskTimes(1.0, 2.0, 3.0, 0.0, 0.5))
        shard.append(failed_result(7, "bad", "structure 'bad': no"), TaskTimes())
    with JournalShard(jdir, 1, params.to_json()) as shard:
        shard.append(written[1], TaskTimes())
        shard.append(written[2], TaskTimes())
    # a batch cut by a kill: only its temporary file exists (never read), and the entries a killed
    # rank had buffered are simply not in the journal
    (jdir / "rank-1.1.h5.tmp").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    JournalShard(jdir, 1, params.to_json(), batch_seconds=60).append(result(9, rng), TaskTimes())
    refs = scan_journal(jdir)
    assert sorted(refs) == ["bad", "id/0", "id/1", "id/2"]
    loaded = load_entries({10 + i: refs[f"id/{i}"] for i in range(3)})
    for i in range(3):
        got, _ = loaded[10 + i]
        assert got.index == 10 + i and got.id == f"id/{i}"
        for key in ("eigenvalues", "kpoints", "weights", "positions", "cell", "numbers"):
            np.testing.assert_array_equal(getattr(got, key), getattr(written[i], key))
        np.testing.assert_array_equal(got.fingerprints["kinetic"], written[i].fingerprints["kinetic"])
        assert (got.vbm, got.cbm, got.band_gap, got.n_electrons) == (0.1, 0.9, 0.8, 4.0)
    assert loaded[10][1] == TaskTimes(1.0, 2.0, 3.0, 0.0, 0.5)
    bad, _ = load_entries({0: refs["bad"]})[0]
    assert bad.status == -1 and bad.error == "structure 'bad': no"
    # a restart writes a new segment: a file of an earlier (killed) run is never written again
    before = {str(p) for p in jdir.glob("rank-1*")}
    with JournalShard(jdir, 1, params.to_json()) as shard:
        shard.append(result(5, rng), TaskTimes())
    refs = scan_journal(jdir)
    assert refs["id/5"].shard not in before and "id/1" in refs


def test_journal_batches_are_segments(tmp_path, rng):
    jdir = tmp_path / "j"
    jdir.mkdir()
    with JournalShard(jdir, 3, "{}", batch_entries=2, batch_seconds=60) as shard:
        for i in range(5):
            shard.append(result(i, rng), TaskTimes())
    names = sorted(p.name for p in jdir.glob("rank-*.h5"))
    assert names == ["rank-3.1.h5", "rank-3.2.h5", "rank-3.h5"]
    assert sorted(scan_journal(jdir)) == [f"id/{i}" for i in range(5)]
    with JournalShard(jdir, 3, "{}") as shard:
        assert shard.path.name == "rank-3.3.h5"


def test_journal_parameters_checked_and_fresh_restart(tmp_path):
    jdir = tmp_path / "s.h5.journal"
    prepare_journal(jdir, RunParameters(kdensity=0.2), "auto")
    assert prepare_journal(jdir, RunParameters(kdensity=0.2), "auto").startswith("resuming")
    with pytest.raises(ParameterError, match=r"other parameters \(kdensity: 0.2 -> 0.3\).*--restart fresh"):
        prepare_journal(jdir, RunParameters(kdensity=0.3), "auto")
    (jdir / "rank-0.h5").write_bytes(b"junk")
    assert prepare_journal(jdir, RunParameters(kdensity=0.3), "fresh").startswith("new journal")
    assert not (jdir / "rank-0.h5").exists()


def test_corrupt_shard_is_moved_aside_by_the_writer_only(tmp_path):
    jdir = tmp_path / "j"
    jdir.mkdir()
    (jdir / "rank-0.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 40)
    assert scan_journal(jdir) == {}  # a reader: nothing counted, nothing moved
    assert (jdir / "rank-0.h5").exists() and not list(jdir.glob("*.corrupt-*"))
    assert scan_shard(jdir / "rank-0.h5", set_aside=True) == []  # the run holding the store's lock
    assert (jdir / "rank-0.h5.corrupt-0").exists() and not (jdir / "rank-0.h5").exists()
    with h5py.File(jdir / "rank-0.h5", "w"):
        pass  # the rank can start a new shard
    assert scan_journal(jdir) == {}


def test_a_shard_being_written_is_readable_and_never_moved(tmp_path):
    """The writer's open file (HDF5 file lock held) does not stop a reader, which never moves it."""
    jdir = tmp_path / "j"
    jdir.mkdir()
    with h5py.File(jdir / "rank-0.h5", "w") as f:
        f.create_group("entries")
        f.flush()
        assert scan_journal(jdir) == {}
        assert (jdir / "rank-0.h5").exists() and not list(jdir.glob("*.corrupt-*"))


def test_progress_and_summary_text():
    assert format_duration(4.24) == "4.2s" and format_duration(123) == "2m03s"
    assert format_duration(3723) == "1h02m03s"
    assert progress_line(8, 2, 20, 5.0) == "10/20 structures (2 failed) 2.00/s ETA 5.0s"
    report = RunReport(5, 4, 1, 0, [("x", "structure 'x': bad")], 2.0, {"eigen": 1.0}, [1.0, 3.0])
    text = summary_table(report)
    assert "x: structure 'x': bad" in text and "load imbalance (max/mean busy time) 1.500" in text
    assert report.exit_code == 4
    assert RunReport(1, 1, 0, 0).exit_code == 0 and RunReport(1, 0, 0, 0, stopped=True).exit_code == 5


def test_progress_waits_one_interval_and_names_its_phase(monkeypatch, caplog):
    clock = [100.0]
    monkeypatch.setattr("sporep_hpc.parallel.progress.time.perf_counter", lambda: clock[0])
    progress = Progress(1000, interval=10.0, label="planning")
    with caplog.at_level("INFO", logger="sporep_hpc.progress"):
        clock[0] = 100.1
        progress.update(1, 0)  # one structure after 0.1 s: no line (its rate says nothing yet)
        assert caplog.messages == []
        clock[0] = 110.5
        progress.update(400, 0)
        progress.update(401, 0)  # within the interval of the last line
        clock[0] = 111.0
        progress.update(500, 0, force=True)
    assert caplog.messages == ["planning: 400/1000 structures 38.10/s ETA 15.8s",
                               "planning: 500/1000 structures 45.45/s ETA 11.0s"]


def test_the_run_reports_planning_progress(tmp_path, caplog):
    from sporep_hpc.config import build_config
    from sporep_hpc.examples import load_set
    from sporep_hpc.parallel.driver import run

    for id, structure, _ in load_set("aflow?max_atoms=2&limit=6"):
        structure.to(filename=str(tmp_path / f"{id}.json"))
    config = build_config(overrides={"progress_interval": 1e-9, "fingerprints": "fermi"})
    with caplog.at_level("INFO", logger="sporep_hpc.progress"):
        run([str(tmp_path)], tmp_path / "store.h5", config, MPI.COMM_SELF)
    planning = [m for m in caplog.messages if m.startswith("planning: ")]
    assert planning and planning[-1].startswith("planning: 6/6 structures")
    assert caplog.messages.index(planning[-1]) < caplog.messages.index(
        next(m for m in caplog.messages if m.startswith("progress: ")))


def test_task_counter_on_one_rank():
    with TaskCounter(MPI.COMM_SELF, start=3) as counter:
        assert [counter.next_task() for _ in range(3)] == [3, 4, 5]
        counter.task_finished(True)
        counter.task_finished(False)
        counter.rank_finished()
        assert not counter.stop_requested()
        counter.request_stop()
        assert counter.snapshot() == (6, 1, 1, 1, 1)


def test_make_tasks_splits_only_what_exceeds_a_share():
    plan = [
        PlanEntry(0, "big", "structure", 4, 2, 10, cost=8 * 10 + 5.0),  # eigen 2^3 * 10 k, fixed 5
        PlanEntry(1, "small", "structure", 1, 2, 3, cost=40.0),
        PlanEntry(2, "tiny", "structure", 1, 2, 1, cost=35.0),
        PlanEntry(3, "bad", "failed", error="x"),
        PlanEntry(4, "done", "structure", 1, 2, 2, cost=99.0),
    ]
    tasks, combine = make_tasks(plan, {"done"}, size=2)
    # share = (85 + 40 + 35) / 2 = 80 < 85; room = 80/2 - 5 = 35: ceil(80 / 35) = 3 chunks of 4, 3, 3 k
    assert combine == [(0, 3)]
    assert tasks[:3] == [Task(0, 0, 3, 5 + 32.0), Task(0, 1, 3, 5 + 24.0), Task(0, 2, 3, 5 + 24.0)]
    assert tasks[3:] == [Task(1, 0, 1, 40.0), Task(2, 0, 1, 35.0)]
    assert make_tasks(plan, {"done"}, size=1)[1] == []  # one rank: never split
    assert make_tasks(plan, {"done"}, size=2, split=False)[1] == []
    # chunks already in the journal are not rerun, but the structure is still to be combined
    tasks, combine = make_tasks(plan, {"done", chunk_id("big", 1, 3)}, size=2)
    assert [t.chunk for t in tasks if t.index == 0] == [0, 2] and combine == [(0, 3)]


def test_make_tasks_does_not_split_when_the_fixed_part_dominates():
    # fixed part 50 > half a share (70 / 2): chunks would each cost more than the share
    plan = [
        PlanEntry(0, "a", "structure", 1, 2, 4, cost=82.0),
        PlanEntry(1, "b", "structure", 1, 2, 1, cost=58.0),
    ]
    tasks, combine = make_tasks(plan, set(), size=2)
    assert combine == [] and [t.n_chunks for t in tasks] == [1, 1]


def test_internal_failures_are_retried_and_done_entries_win(tmp_path, rng):
    jdir = tmp_path / "j"
    params = RunParameters()
    prepare_journal(jdir, params, "auto")
    with JournalShard(jdir, 0, params.to_json()) as shard:
        shard.append(failed_result(0, "id/0", "structure 'id/0': internal error MemoryError: x"), TaskTimes())
        shard.append(failed_result(1, "bad", "structure 'bad': atoms 0.1 Å apart"), TaskTimes())
    refs = scan_journal(jdir)
    assert refs["id/0"].retry and not refs["bad"].retry
    with JournalShard(jdir, 1, params.to_json()) as shard:  # the retry, on another rank
        shard.append(result(0, rng), TaskTimes())
    refs = scan_journal(jdir)
    assert refs["id/0"].status == STATUS_DONE and refs["id/0"].shard.endswith("rank-1.h5")


def test_inputs_digest_tracks_content_not_location(tmp_path):
    from dataclasses import replace

    from pymatgen.core import Lattice, Structure

    from sporep_hpc.inputs.digests import inputs_digest
    from sporep_hpc.inputs.records import InputRecord, compact_record

    si = Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    band = tmp_path / "a" / "model.npz"
    band.parent.mkdir()
    band.write_bytes(b"one")
    records = [
        compact_record(InputRecord("si", "/x/si.json", "structure", si, properties={"label": "semi"})),
        InputRecord("model", str(band), "bands"),
    ]
    d = inputs_digest(records)
    assert len(d) == 64 and inputs_digest(records) == d
    moved = tmp_path / "b" / "model.npz"  # same content elsewhere, structure from another path
    moved.parent.mkdir()
    moved.write_bytes(b"one")
    same = [replace(records[0], source="/y/si.json"), replace(records[1], source=str(moved))]
    assert inputs_digest(same) == d
    nudged = si.copy()
    nudged.translate_sites([1], [1e-9, 0, 0])  # a sub-femtometre change is another input
    assert inputs_digest([compact_record(replace(records[0], structure=nudged)), records[1]]) != d
    assert inputs_digest([replace(records[0], properties={"label": "metal"}), records[1]]) != d
    assert inputs_digest([replace(records[0], id="si2"), records[1]]) != d
    assert inputs_digest(records[::-1]) != d  # row order is part of the store
    band.write_bytes(b"two")
    assert inputs_digest(records) != d


def test_stale_journal_entries_are_not_reused(tmp_path, rng):
    # digests are arbitrary labels here: the filter compares strings, whatever produced them
    jdir = tmp_path / "j"
    params = RunParameters()
    prepare_journal(jdir, params, "auto")
    g0, g1 = chunk_id("g", 0, 2), chunk_id("g", 1, 2)
    names = ("a", "b", "c", "d", "gone", g0, g1)
    done = {name: dataclasses.replace(result(0, rng), id=name) for name in names}
    with JournalShard(jdir, 0, params.to_json()) as shard:  # the interrupted run
        shard.append(done["a"], TaskTimes(), "A-old")  # its file was edited since
        shard.append(done["b"], TaskTimes(), "B")  # unchanged
        shard.append(done["c"], TaskTimes())  # no digest (as older versions wrote): never current
        shard.append(done["d"], TaskTimes(), "D-old")  # edited, not recomputed yet
        shard.append(done["gone"], TaskTimes(), "X")  # no longer among the inputs
        shard.append(done[g0], TaskTimes(), "G")  # a k-point chunk of unchanged "g"
        shard.append(done[g1], TaskTimes(), "G-old")  # a chunk computed before an edit
    with JournalShard(jdir, 1, params.to_json()) as shard:  # the resume: "a" recomputed, now failing
        shard.append(failed_result(0, "a", "structure 'a': atoms 0.1 Å apart"), TaskTimes(), "A-new")
    digests = {"a": "A-new", "b": "B", "c": "C", "d": "D-new", "g": "G"}
    refs = scan_journal(jdir, digests)
    # the current failed entry of "a" wins over its stale done entry (without digests, done would win)
    assert sorted(refs) == ["a", "b", g0]
    assert refs["a"].status == -1 and refs["a"].digest == "A-new" and refs["b"].digest == "B"
    assert scan_journal(jdir)["a"].status == STATUS_DONE
    per_shard = [scan_shard(p) for p in sorted(jdir.glob("rank-*.h5"))]
    assert merge_refs(per_shard, digests) == refs
    # "a" has a current entry; "gone" is not an input any more: neither is stale
    assert stale_ids(per_shard, digests) == {"c", "d", g1}
    # old journals: entries without a digest are never current
    assert stale_ids(per_shard, {"c": ""}) == {"c"} and merge_refs(per_shard, {"c": ""}) == {}
    tasks, _ = make_tasks([PlanEntry(i, id, "structure", cost=1.0) for i, id in enumerate("abcd")],
                          {id for id, ref in refs.items() if not ref.retry}, 1)
    assert [t.index for t in tasks] == [2, 3]  # "c" and "d" recomputed, "a" (a kept failure) and "b" not


def test_structure_id_of_chunks():
    assert structure_id(chunk_id("g", 1, 3)) == "g" and structure_id("g") == "g"
    assert structure_id(chunk_id("a#k0of2", 0, 2)) == "a#k0of2"  # only the last suffix is the chunk's
    assert structure_id("x#k") == "x#k"
    assert structure_id("x#k0of12") == "x#k0of12" != structure_id(chunk_id("x", 0, 12))  # a file name


def test_record_digests_track_what_an_entry_is_computed_from(tmp_path):
    from dataclasses import replace

    from pymatgen.core import Lattice, Structure

    from sporep_hpc.inputs.digests import input_digests, inputs_digest
    from sporep_hpc.inputs.records import InputRecord, compact_record

    si = Structure(Lattice.cubic(5.43), ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    band = tmp_path / "model.npz"
    band.write_bytes(b"one")
    records = [
        compact_record(InputRecord("si", "/x/si.json", "structure", si, properties={"label": "semi"})),
        InputRecord("model", str(band), "bands"),
    ]
    whole, each = input_digests(records)
    assert whole == inputs_digest(records) and len(each) == 2 and len(set(each)) == 2
    assert all(len(d) == 64 for d in each)
    nudged = si.copy()
    nudged.translate_sites([1], [1e-9, 0, 0])
    _, moved = input_digests([compact_record(replace(records[0], structure=nudged)), records[1]])
    assert moved[0] != each[0] and moved[1] == each[1]  # only the edited structure's digest changes
    # properties are not journaled (the store takes them from the inputs): not in the record's digest
    whole2, relabelled = input_digests([replace(records[0], properties={"label": "metal"}), records[1]])
    assert relabelled == each and whole2 != whole
    assert input_digests(records[::-1])[1] == each[::-1]  # per record, independent of the order
    band.write_bytes(b"two")
    after = input_digests(records)[1]
    assert after[0] == each[0] and after[1] != each[1]


def test_batches_are_written_by_count_and_by_work(tmp_path, rng):
    jdir = tmp_path / "j"
    jdir.mkdir()
    with JournalShard(jdir, 0, "{}", batch_entries=100, batch_seconds=1.0) as shard:
        shard.append(result(0, rng), TaskTimes(eigen=0.6))
        assert not list(jdir.glob("rank-0*.h5"))  # buffered: 0.6 s of work
        shard.append(result(1, rng), TaskTimes(eigen=0.6))  # 1.2 s: the batch is written
        assert sorted(p.name for p in jdir.glob("rank-0*")) == ["rank-0.h5"]
        shard.append(result(2, rng), TaskTimes())
    assert sorted(scan_journal(jdir)) == ["id/0", "id/1", "id/2"]  # the last batch, at close
    assert not list(jdir.glob("*.tmp"))


def test_segments_of_an_older_layout_are_skipped_not_moved(tmp_path):
    jdir = tmp_path / "j"
    jdir.mkdir()
    with h5py.File(jdir / "rank-0.h5", "w") as f:  # per-entry groups, as older versions wrote
        f.create_group("entries/00000000").attrs["id"] = "old"
    assert scan_shard(jdir / "rank-0.h5", set_aside=True) == []
    assert (jdir / "rank-0.h5").exists() and not list(jdir.glob("*.corrupt-*"))


def test_a_journal_without_a_newer_parameter_is_not_resumed(tmp_path):
    """A journal written before a parameter existed was computed without it: it is refused, not resumed
    with that parameter's default."""
    jdir = tmp_path / "j"
    params = RunParameters()
    prepare_journal(jdir, params, "auto")
    old = json.loads((jdir / "parameters.json").read_text())
    del old["vacuum_kpoints"]  # as an older version wrote it
    (jdir / "parameters.json").write_text(json.dumps(old))
    with pytest.raises(ParameterError, match=r'vacuum_kpoints: \(absent\) -> "gamma"'):
        prepare_journal(jdir, params, "auto")
