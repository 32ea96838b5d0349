"""The MPI driver end to end, on whatever rank count the suite runs (1, 2, 3).

Each test drives `sporep_hpc.parallel.driver.run` with the test's `comm` and compares
the store with a one-rank run (COMM_SELF, on rank 0): results must not depend on the
rank count or the schedule (1e-12, DESIGN §4/§7). The spectra themselves are checked
against direct `operator_spectrum` / `fingerprint` calls that involve no driver.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from _references import assert_same_store, structures
from mpi4py import MPI

from sporep_hpc.config import build_config
from sporep_hpc.errors import InputError, ParameterError, StoreError
from sporep_hpc.parallel.driver import StopFlag, handle_signals, run
from sporep_hpc.parallel.journal import journal_dir, scan_journal, scan_shard
from sporep_hpc.pipeline import CHUNK_MARK
from sporep_hpc.store import open_store

pytestmark = pytest.mark.mpi

KDENSITY = 0.5  # 1/Å: coarse grids keep every structure well under a second
# ids of the inputs written by `inputs`, in store order (directory sorted by path)
GOOD = ["cu", "graphite", "nacl", "si"]


@pytest.fixture
def inputs(comm, shared_tmp_path):
    """A directory with 4 good structures, one with atoms too close and one unreadable file."""
    d = shared_tmp_path / "inputs"
    if comm.rank == 0:
        d.mkdir()
        for name, s in structures().items():
            s.to(filename=str(d / f"{name}.json"))
        (d / "bad.json").write_text("{not json")
    comm.Barrier()
    return d


def config(**overrides):
    values = {"kdensity": KDENSITY, "progress_interval": 0.5}
    values.update(overrides)
    return build_config(overrides=values)


def serial_reference(comm, inputs, path, **overrides):
    """The one-rank store (rank 0, COMM_SELF); every rank waits for it."""
    if comm.rank == 0 and not path.exists():
        run([str(inputs)], path, config(**overrides), MPI.COMM_SELF)
    comm.Barrier()
    return path


def run_stopped_after_first_task(comm, inputs, out, cfg):
    """`run` over `inputs`, stopped (as by a signal) once rank 0 has finished its first task."""
    stop = StopFlag()

    def stop_early(n):
        if comm.rank == 0 and n == 1:
            stop.set()

    return run([str(inputs)], out, cfg, comm, stop=stop, on_task_done=stop_early)


@pytest.mark.parametrize("schedule", ["dynamic", "static"])
def test_store_independent_of_rank_count_and_schedule(comm, inputs, shared_tmp_path, schedule):
    out = shared_tmp_path / f"{schedule}.h5"
    report = run([str(inputs)], out, config(schedule=schedule), comm)
    assert report.n_total == 6 and report.n_done == 4 and report.n_failed == 2, report.failures
    assert report.exit_code == 4
    assert not journal_dir(out).exists()  # removed after a successful assembly
    ref = serial_reference(comm, inputs, shared_tmp_path / "serial.h5")
    assert_same_store(out, ref)


def test_spectra_match_direct_calls(comm, inputs, shared_tmp_path):
    # reference: operator_spectrum + fingerprint on the structure's primitive cell (the cell a run computes
    # by default, sporep_hpc.structures.symmetry_of: the standardized primitive cell), no driver, no store
    from sporep_hpc.fingerprints import fingerprint
    from sporep_hpc.operators import operator_spectrum
    from sporep_hpc.structures import symmetry_of

    out = shared_tmp_path / "direct.h5"
    run([str(inputs)], out, config(), comm)
    with open_store(out) as store:
        for id in GOOD:
            i = store.index_of(id)
            primitive = symmetry_of(structures()[id]).structure.to_structure()
            bands = operator_spectrum(primitive, kdensity=KDENSITY)
            sp = store.spectrum(i)
            np.testing.assert_allclose(sp["eigenvalues"], bands.eigenvalues, rtol=0, atol=1e-12)
            np.testing.assert_allclose(sp["weights"], bands.weights, rtol=0, atol=1e-15)
            values, _, _ = store.fingerprints("kinetic")
            np.testing.assert_allclose(values[i], fingerprint(bands, "kinetic"), rtol=0, atol=1e-12)
            assert sp["n_electrons"] == bands.n_electrons
            assert sp["vbm"] == pytest.approx(bands.vbm, abs=1e-12)
        from sporep_hpc.fingerprints import FingerprintSpec, get_spec

        _, energies, attrs = store.fingerprints("kinetic")
        spec = get_spec("kinetic")
        np.testing.assert_array_equal(energies, spec.energies)
        assert FingerprintSpec.from_json(attrs["spec"]) == spec
        assert attrs["reference"] == "zero" and json.loads(attrs["window"]) == [[0.0, 1000.0, 2048]]
        assert store.parameters["kdensity"] == KDENSITY
        _, numbers, positions = store.atoms(store.index_of("si"))
        primitive = symmetry_of(structures()["si"]).structure.to_structure()
        np.testing.assert_allclose(positions, primitive.cart_coords, atol=1e-12)
        assert list(numbers) == [14, 14]
    comm.Barrier()


def test_bad_structures_reported_and_others_complete(comm, inputs, shared_tmp_path):
    out = shared_tmp_path / "bad.h5"
    report = run([str(inputs)], out, config(), comm)
    reasons = dict(report.failures)
    assert sorted(reasons) == ["bad", "close"]
    assert "close" in reasons["close"] and "apart" in reasons["close"] and "\n" not in reasons["close"]
    assert "bad.json" in reasons["bad"] and "unreadable" in reasons["bad"]
    with open_store(out) as store:
        status = dict(zip(store.ids, store.status, strict=True))
        assert all(status[id] == 1 for id in GOOD)
        assert status["bad"] == -1 and status["close"] == -1
        values, _, _ = store.fingerprints("kinetic")
        for id in GOOD:
            assert np.isfinite(values[store.index_of(id)]).all()
        assert np.isnan(values[store.index_of("close")]).all()
    comm.Barrier()


def test_more_ranks_than_tasks(comm, inputs, shared_tmp_path):
    out = shared_tmp_path / "one.h5"
    report = run([str(inputs / "si.json")], out, config(), comm)
    assert (report.n_total, report.n_done) == (1, 1)
    with open_store(out) as store:
        assert store.ids == ["si"]
        ref = serial_reference(comm, inputs, shared_tmp_path / "serial.h5")
        with open_store(ref) as r:
            expected = r.spectrum(r.index_of("si"))["eigenvalues"]
            np.testing.assert_allclose(store.spectrum(0)["eigenvalues"], expected, rtol=0, atol=1e-12)
    comm.Barrier()


def test_serial_hdf5_fallback_gives_the_same_store(comm, inputs, shared_tmp_path, monkeypatch):
    mpio = shared_tmp_path / "mpio.h5"
    run([str(inputs)], mpio, config(), comm)
    monkeypatch.setenv("SPOREP_FORCE_SERIAL_HDF5", "1")
    fallback = shared_tmp_path / "fallback.h5"
    run([str(inputs)], fallback, config(), comm)
    assert_same_store(fallback, mpio)
    comm.Barrier()


def test_signal_stops_cleanly_then_rerun_resumes(comm, inputs, shared_tmp_path):
    out = shared_tmp_path / "stopped.h5"
    stop = StopFlag()

    def send_signal(n):  # rank 0 signals itself after its first task
        if comm.rank == 0 and n == 1:
            os.kill(os.getpid(), signal.SIGUSR1)

    with handle_signals(stop):
        report = run([str(inputs)], out, config(schedule="static"), comm, stop=stop, on_task_done=send_signal)
    assert report.stopped and report.exit_code == 5
    assert not out.exists()
    comm.Barrier()
    finished = scan_journal(journal_dir(out)) if comm.rank == 0 else None
    finished = comm.bcast(finished)
    whole = [id for id in finished if CHUNK_MARK not in id]  # not k-point chunks of a split structure
    # rank 0 stops after its first task, the others after their current one (which may be their last)
    assert 1 <= len(finished) and len(whole) <= 4
    # a changed parameter set is refused on every rank ...
    with pytest.raises(ParameterError, match=r"other parameters.*kdensity"):
        run([str(inputs)], out, config(kdensity=0.4), comm)
    # ... the same command resumes without recomputing
    report = run([str(inputs)], out, config(), comm)
    assert report.n_skipped == len(whole) and report.n_done == 4
    assert_same_store(out, serial_reference(comm, inputs, shared_tmp_path / "serial.h5"))
    comm.Barrier()


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from mpi4py import MPI
    from sporep_hpc.config import build_config
    from sporep_hpc.parallel.driver import run

    def kill(n):
        if n == 2:
            os.kill(os.getpid(), signal.SIGKILL)

    cfg = build_config(overrides={{"kdensity": {kdensity}, "journal_interval": 0}})  # a batch per task
    run([sys.argv[1]], sys.argv[2], cfg, MPI.COMM_SELF, on_task_done=kill)
    """
)


def test_sigkill_mid_run_then_resume_gives_identical_store(comm, inputs, shared_tmp_path, subprocess_env):
    out = shared_tmp_path / "killed.h5"
    if comm.rank == 0:
        # a separate one-rank job (singleton MPI: launcher variables removed), killed after 2 structures
        code = KILLER.format(kdensity=KDENSITY)
        proc = subprocess.run([sys.executable, "-c", code, str(inputs), str(out)], env=subprocess_env,
                              timeout=240)
        assert proc.returncode == -signal.SIGKILL
        assert not out.exists()
        assert len(scan_journal(journal_dir(out))) == 2
    comm.Barrier()
    report = run([str(inputs)], out, config(), comm)
    assert report.n_skipped == 2 and report.n_done == 4, report.failures
    assert_same_store(out, serial_reference(comm, inputs, shared_tmp_path / "serial.h5"))
    comm.Barrier()


def test_dry_run_writes_nothing(comm, inputs, shared_tmp_path):
    out = shared_tmp_path / "dry.h5"
    report = run([str(inputs)], out, config(), comm, dry_run=True)
    assert report.n_total == 6 and report.n_failed == 2
    assert not out.exists() and not journal_dir(out).exists()
    comm.Barrier()


def test_duplicate_ids_fail_before_anything_runs(comm, inputs, shared_tmp_path):
    out = shared_tmp_path / "dup.h5"
    with pytest.raises(InputError, match="duplicate id 'si'"):
        run([str(inputs / "si.json"), str(inputs / "si.json")], out, config(), comm)
    assert not journal_dir(out).exists()
    comm.Barrier()


def test_all_structures_failed_gives_an_empty_spectra_store(comm, inputs, shared_tmp_path):
    # every ragged dataset has zero length: the collective writes must skip them on all ranks alike
    out = shared_tmp_path / "allbad.h5"
    report = run([str(inputs / "close.json"), str(inputs / "bad.json")], out, config(), comm)
    assert (report.n_done, report.n_failed, report.exit_code) == (0, 2, 4)
    with open_store(out) as store:
        assert list(store.status) == [-1, -1]
        assert store.file["spectra/eigenvalues"].shape == (0,)
        assert store.file["structures/numbers"].shape == (2,)  # 'close' was read: its atoms are stored
    comm.Barrier()


def test_kpoint_chunks_of_big_structures_give_the_same_store(comm, inputs, shared_tmp_path, eigen_cost_only):
    # with the eigen term n_ao^3 n_k alone as cost (fixed parts zeroed), graphite costs more than one
    # rank's share from 2 ranks on: it is split into k-point chunks, computed on several ranks and
    # joined in k order; the store must equal the one-rank run
    out = shared_tmp_path / "split.h5"
    report = run([str(inputs)], out, config(keep_journal=True), comm)
    assert report.n_done == 4
    journaled = scan_journal(journal_dir(out)) if comm.rank == 0 else None
    chunks = sorted(k for k in comm.bcast(journaled) if CHUNK_MARK in k)
    if comm.size > 1:
        assert chunks and all(c.startswith(f"graphite{CHUNK_MARK}k") for c in chunks)
    else:
        assert chunks == []
    assert_same_store(out, serial_reference(comm, inputs, shared_tmp_path / "serial.h5"))
    unsplit = shared_tmp_path / "unsplit.h5"
    run([str(inputs)], unsplit, config(split_kpoints=False), comm)
    assert_same_store(unsplit, out)
    comm.Barrier()


def test_imported_band_files_and_stores_enter_at_eigenvalues(comm, inputs, shared_tmp_path):
    # references: sporep_hpc.bandfiles.read_bands + fingerprint on the file (no driver), and the
    # spectra of the store given as input
    from sporep_hpc.bandfiles import read_bands
    from sporep_hpc.fingerprints import fingerprint

    bands_dir = shared_tmp_path / "bands"
    if comm.rank == 0:
        bands_dir.mkdir()
        rng = np.random.default_rng(7)
        eig = np.sort(rng.uniform(0, 60, (1, 5, 6)), axis=2)
        np.savez(bands_dir / "model.npz", bands=eig, weights=np.full(5, 0.4), n_electrons=4.0)
    comm.Barrier()
    ref_store = serial_reference(comm, inputs, shared_tmp_path / "serial.h5")
    out = shared_tmp_path / "imported.h5"
    report = run([str(bands_dir / "model.npz"), str(ref_store)], out, config(), comm)
    assert report.n_failed == 0 and report.n_done == 5
    expected = read_bands(bands_dir / "model.npz")
    with open_store(out) as store, open_store(ref_store) as ref:
        assert store.ids == ["model", *GOOD]
        values, _, _ = store.fingerprints("kinetic")
        np.testing.assert_allclose(store.spectrum(0)["eigenvalues"], expected.eigenvalues, rtol=0, atol=0)
        # kinds are kept apart (DESIGN.md §8.2): the band file is NaN in "kinetic" (absolute energies, for
        # operator spectra only) and gets "dft_fermi"; the store's rows are operator spectra
        assert np.all(np.isnan(values[0]))
        dft, _, _ = store.fingerprints("dft_fermi")
        np.testing.assert_allclose(dft[0], fingerprint(expected, "fermi"), rtol=0, atol=1e-12)
        assert np.all(np.isnan(dft[1:]))
        assert store.sources == ["dft:npz:model.npz"] + ["operator:kinetic"] * len(GOOD)
        ref_values, _, _ = ref.fingerprints("kinetic")
        for k, id in enumerate(GOOD, start=1):
            j = ref.index_of(id)
            got, want = store.spectrum(k)["eigenvalues"], ref.spectrum(j)["eigenvalues"]
            np.testing.assert_array_equal(got, want)
            np.testing.assert_allclose(values[k], ref_values[j], rtol=0, atol=1e-12)
            np.testing.assert_array_equal(store.atoms(k)[1], ref.atoms(j)[1])
    comm.Barrier()


def test_resume_on_another_rank_count(comm, inputs, shared_tmp_path):
    # a run stopped on `comm` (one shard per rank) is finished by a one-rank job: more shards than ranks
    out = shared_tmp_path / "rerank.h5"
    report = run_stopped_after_first_task(comm, inputs, out, config(schedule="static"))
    assert report.stopped
    if comm.rank == 0:
        shards = sorted(p.name for p in journal_dir(out).glob("rank-*.h5"))
        assert shards == [f"rank-{r}.h5" for r in range(comm.size)]
        report = run([str(inputs)], out, config(), MPI.COMM_SELF)
        assert report.n_done == 4 and report.n_skipped >= 1
    comm.Barrier()
    assert_same_store(out, serial_reference(comm, inputs, shared_tmp_path / "serial.h5"))
    comm.Barrier()


def test_rerun_of_a_complete_store_does_nothing(comm, inputs, shared_tmp_path):
    out = shared_tmp_path / "idem.h5"
    first = run([str(inputs)], out, config(), comm)
    assert first.exit_code == 4 and not first.up_to_date
    stamp = comm.bcast(out.stat().st_mtime_ns if comm.rank == 0 else None)
    calls = []
    # same parameters (execution options may differ), same inputs: no task runs, the store is untouched
    again = run([str(inputs)], out, config(schedule="static"), comm, on_task_done=calls.append)
    assert again.up_to_date and again.exit_code == first.exit_code == 4
    assert (again.n_total, again.n_done, again.n_failed) == (first.n_total, first.n_done, first.n_failed)
    assert sorted(again.failures) == sorted(first.failures)
    assert comm.allreduce(len(calls)) == 0
    assert not journal_dir(out).exists()
    comm.Barrier()
    assert out.stat().st_mtime_ns == stamp
    # other parameters: ParameterError naming them, on every rank, nothing written
    with pytest.raises(ParameterError, match=r"store .* other parameters \(.*kdensity: 0\.5 -> 0\.4"):
        run([str(inputs)], out, config(kdensity=0.4), comm)
    # other inputs (a structure left out): StoreError on every rank
    with pytest.raises(StoreError, match=r"other inputs.*--restart fresh"):
        run([str(inputs / "si.json")], out, config(), comm)
    # a changed structure under the same id is another input too
    comm.Barrier()
    changed = shared_tmp_path / "changed"
    if comm.rank == 0:
        changed.mkdir()
        for name in ("si", "nacl"):
            s = structures()[name]
            if name == "si":
                s.perturb(0.01, min_distance=0.01)
            s.to(filename=str(changed / f"{name}.json"))
    comm.Barrier()
    with pytest.raises(StoreError, match=r"other inputs"):
        run([str(changed / "si.json")], out, config(), comm)
    assert not journal_dir(out).exists()
    comm.Barrier()
    assert out.stat().st_mtime_ns == stamp
    # --restart fresh recomputes and replaces it, with the same content
    fresh = run([str(changed / "si.json"), str(changed / "nacl.json")], out, config(restart="fresh"), comm)
    assert fresh.n_total == 2 and fresh.exit_code == 0 and not fresh.up_to_date
    comm.Barrier()
    with open_store(out) as store:
        assert store.ids == ["si", "nacl"]
    comm.Barrier()


def test_existing_file_that_is_not_a_store_is_never_overwritten(comm, inputs, shared_tmp_path):
    out = shared_tmp_path / "notes.h5"
    if comm.rank == 0:
        out.write_text("precious")
    comm.Barrier()
    with pytest.raises(StoreError, match=r"not a readable sporep-hpc store"):
        run([str(inputs / "si.json")], out, config(), comm)
    comm.Barrier()
    assert out.read_text() == "precious"
    comm.Barrier()


def test_interrupted_fresh_run_over_an_old_store_resumes(comm, inputs, shared_tmp_path):
    # old store from other inputs; a --restart fresh run is stopped; rerunning without "fresh" resumes it
    out = shared_tmp_path / "replace.h5"
    run([str(inputs / "si.json")], out, config(), comm)
    report = run_stopped_after_first_task(comm, inputs, out, config(restart="fresh", schedule="static"))
    assert report.stopped
    report = run([str(inputs)], out, config(), comm)
    assert not report.stopped and not report.up_to_date and report.n_done == 4 and report.n_skipped >= 1
    assert_same_store(out, serial_reference(comm, inputs, shared_tmp_path / "serial.h5"))
    comm.Barrier()


def test_structure_properties_stored_by_row(comm, inputs, shared_tmp_path):
    """Built-in set properties and extended XYZ info land in their own rows, whatever the rank count."""
    from sporep_hpc.examples import load_set

    d = shared_tmp_path / "props"
    info = [{"label": "a b", "n": 1}, {"flag": True}, {}]
    if comm.rank == 0:
        d.mkdir()
        lines = []
        for s, extra in zip([structures()[k] for k in ("si", "cu", "nacl")], info, strict=True):
            lat = " ".join(f"{x:.12f}" for x in s.lattice.matrix.ravel())
            keys = {"label": '"a b"', "n": "1", "flag": "T"}
            tags = " ".join(f"{k}={keys[k]}" for k in extra)
            lines += [str(len(s)), f'Lattice="{lat}" Properties=species:S:1:pos:R:3 {tags}']
            lines += [f"{site.specie.symbol} {x:.12f} {y:.12f} {z:.12f}" for site, (x, y, z) in
                      zip(s, s.cart_coords, strict=True)]
        (d / "three.xyz").write_text("\n".join(lines) + "\n")
    comm.Barrier()
    out = shared_tmp_path / "props.h5"
    report = run([str(d / "three.xyz"), "examples:batio3", str(inputs / "close.json")], out, config(), comm)
    assert report.n_failed == 1  # close.json: its row still exists, without properties
    expected = {f"three-{k}": p for k, p in enumerate(info)}
    expected.update({id: json.loads(json.dumps(p)) for id, _, p in load_set("batio3")})  # JSON: tuples->lists
    expected["close"] = {}
    comm.Barrier()
    with open_store(out) as store:
        assert store.has_properties and len(store) == len(expected)
        for i, id in enumerate(store.ids):
            assert store.properties(i) == expected[id], id
        assert store.all_properties() == [expected[id] for id in store.ids]
    from sporep_hpc.cli.info import describe_store

    keys = sorted({k for p in expected.values() for k in p})
    assert f"properties: 6 of 8 structures; keys {', '.join(keys)}" in describe_store(out)
    comm.Barrier()


def test_vasprun_inputs_keep_their_structure(comm, shared_tmp_path):
    """A vasprun.xml enters at the eigenvalues and brings its final structure into /structures."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the vasprun.xml generator
    from test_bandfiles import insulator_arrays, write_vasprun

    from sporep_hpc.bandfiles import read_bands

    d = shared_tmp_path / "vasp"
    if comm.rank == 0:
        rng = np.random.default_rng(3)
        for name in ("a", "b"):
            (d / name).mkdir(parents=True)
            eig, occ = insulator_arrays(rng)
            k = np.round(rng.uniform(-0.5, 0.5, (4, 3)), 8)
            path = write_vasprun(d / name / "vasprun.xml", eig, occ / 2.0, k, np.full(4, 0.25), 4.0, -3.0)
            head, _, tail = path.read_text().rpartition("<v> 0.0 0.0 0.0 </v>")  # final != initial position
            path.write_text(head + "<v> 0.1 0.2 0.3 </v>" + tail)
        (d / "c").mkdir()
        (d / "c" / "vasprun.xml").write_text("<modeling><generator>")
    comm.Barrier()
    out = shared_tmp_path / "vasp.h5"
    report = run([str(d)], out, config(), comm)
    assert report.n_done == 2 and report.n_failed == 1
    assert "cannot parse vasprun.xml" in dict(report.failures)["c"]
    comm.Barrier()
    with open_store(out) as store:
        table = store.structures()
        assert store.ids == ["a", "b", "c"]
        assert table["formula"][:2] == ["Si", "Si"] and list(table["n_atoms"]) == [1, 1, 0]
        for i, name in enumerate(("a", "b")):
            s = store.structure(i)
            # the generator's cell (5.43 Å cubic) and the final fractional position written above
            np.testing.assert_allclose(s.lattice.matrix, 5.43 * np.eye(3), rtol=0, atol=1e-12)
            np.testing.assert_allclose(s.frac_coords, [[0.1, 0.2, 0.3]], rtol=0, atol=1e-12)
            ref = read_bands(d / name / "vasprun.xml")
            np.testing.assert_array_equal(store.spectrum(i)["eigenvalues"], ref.eigenvalues)
        assert store.atoms(2)[1].size == 0 and table["formula"][2] == ""
    comm.Barrier()


def test_resume_recomputes_only_structures_edited_since(comm, inputs, shared_tmp_path, caplog):
    # a stopped run journals some structures; one of them is edited under the same id; the resume must
    # recompute it (and the unfinished ones) and give the store of an uninterrupted run over the edit
    out = shared_tmp_path / "edited.h5"
    jdir = journal_dir(out)
    report = run_stopped_after_first_task(comm, inputs, out, config(schedule="static", split_kpoints=False))
    assert report.stopped
    comm.Barrier()
    before = comm.bcast(sorted(scan_journal(jdir)) if comm.rank == 0 else None)
    old_shards = comm.bcast({p.name for p in jdir.glob("rank-*.h5")} if comm.rank == 0 else None)
    assert before and set(before) <= set(GOOD)
    edited = before[0]
    if comm.rank == 0:  # same file name and id, 3% longer cell edges: another input
        s = structures()[edited]
        s.scale_lattice(s.volume * 1.03**3)
        s.to(filename=str(inputs / f"{edited}.json"))
    comm.Barrier()
    with caplog.at_level("INFO", logger="sporep_hpc.run"):
        report = run([str(inputs)], out, config(keep_journal=True), comm)
    assert not report.stopped and report.n_done == 4 and report.n_failed == 2
    assert report.n_skipped == len(before) - 1
    if comm.rank == 0:  # rank 0 logs it
        assert "1 journal entries are stale" in caplog.text and edited in caplog.text
    recomputed = sorted(id for p in jdir.glob("rank-*.h5") if p.name not in old_shards
                        for id, _ in scan_shard(p))
    assert recomputed == sorted({edited} | (set(GOOD) - set(before)))
    comm.Barrier()
    # reference: an uninterrupted one-rank run over the edited inputs (1e-12, as everywhere here)
    assert_same_store(out, serial_reference(comm, inputs, shared_tmp_path / "serial-edited.h5"))
    with open_store(out) as store:  # and the edit did reach the store
        cell = store.structure(store.index_of(edited)).lattice.matrix
        np.testing.assert_allclose(cell, structures()[edited].lattice.matrix * 1.03, rtol=1e-12, atol=1e-12)
    comm.Barrier()


def test_resume_after_editing_a_structure_split_by_kpoints(comm, inputs, shared_tmp_path, eigen_cost_only):
    # as the k-point chunk test: graphite is split from 2 ranks on; the run stops before the chunks are
    # joined, graphite is edited, and the resume must recompute and join the new chunks, not the old ones
    out = shared_tmp_path / "edited-split.h5"
    report = run_stopped_after_first_task(comm, inputs, out, config(schedule="static"))
    assert report.stopped
    comm.Barrier()
    before = comm.bcast(sorted(scan_journal(journal_dir(out))) if comm.rank == 0 else None)
    assert any(id.startswith("graphite") for id in before)  # rank 0's first task: graphite or a chunk
    if comm.size > 1:
        assert any(id.startswith(f"graphite{CHUNK_MARK}k") for id in before)
    if comm.rank == 0:
        s = structures()["graphite"]
        s.scale_lattice(s.volume * 1.03**3)
        s.to(filename=str(inputs / "graphite.json"))
    comm.Barrier()
    report = run([str(inputs)], out, config(), comm)
    assert report.n_done == 4
    assert_same_store(out, serial_reference(comm, inputs, shared_tmp_path / "serial-edited-split.h5"))
    comm.Barrier()
