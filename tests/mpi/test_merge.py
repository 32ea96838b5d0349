"""`sporep-hpc merge` under MPI (1, 2 and 3 ranks): split -> run the chunks -> merge equals one run.

The reference for the merged store is a store written by one `run` over the whole list (the journal
and assembly path of sporep_hpc.parallel, which shares no code with the merge's reader), compared
dataset by dataset with raw h5py. Runs are deterministic (DESIGN §4), so the comparison is exact up
to 1e-12 (the tolerance the driver's own rank-count tests use).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI
from pymatgen.core import Lattice, Structure

import sporep_hpc.store.writer as writer_module
from sporep_hpc.config import build_config
from sporep_hpc.errors import StoreError
from sporep_hpc.jobs import read_list
from sporep_hpc.parallel.driver import run
from sporep_hpc.parallel.merge import merge_stores
from sporep_hpc.parallel.split import expected_ids, split_list
from sporep_hpc.store import partial_path, write_rows
from sporep_hpc.store.schema import MERGED_FROM

pytestmark = pytest.mark.mpi

# Root attributes that legitimately differ between a merged store and one run.
VOLATILE_ATTRS = {"created", "n_ranks", MERGED_FROM}


def _config(**overrides):
    return build_config(None, {"kdensity": 0.3, "progress_interval": 1e6, **overrides})


def _on_root(comm, fn):
    """Run `fn` on rank 0 only (file set-up), then synchronise."""
    if comm.rank == 0:
        fn()
    comm.Barrier()


def _write_inputs(directory: Path) -> None:
    si = Structure(Lattice([[0, 2.715, 2.715], [2.715, 0, 2.715], [2.715, 2.715, 0]]), ["Si", "Si"],
                   [[0, 0, 0], [0.25, 0.25, 0.25]])  # fmt: skip
    nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    c1 = Structure(Lattice.cubic(3.0), ["C"], [[0, 0, 0]])
    close = Structure(Lattice.cubic(4.0), ["C", "C"], [[0, 0, 0], [0.05, 0, 0]])  # 0.2 Å apart: fails
    (directory / "db").mkdir()
    si.to(filename=str(directory / "db" / "si.cif"))
    nacl.to(filename=str(directory / "db" / "nacl.cif"))
    c1.to(filename=str(directory / "db" / "c1.cif"))
    close.to(filename=str(directory / "db" / "close.cif"))
    (directory / "db" / "broken.cif").write_text("data_broken\n_cell_length_a oops\n")
    entries = ["db/si.cif", "examples:batio3", "db/close.cif", "db/nacl.cif", "db/broken.cif", "db/c1.cif"]
    lines = [e if e.startswith("examples:") else str(directory / e) for e in entries]
    (directory / "list.txt").write_text("".join(line + "\n" for line in lines))


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
        out["@attrs"] = {k: v for k, v in f.attrs.items() if k not in VOLATILE_ATTRS}
    return out


def _assert_same_store(path: Path, reference: Path) -> None:
    got, ref = _datasets(path), _datasets(reference)
    assert got.pop("@attrs") == ref.pop("@attrs")
    assert sorted(got) == sorted(ref)
    for name, value in ref.items():
        if value.dtype.kind == "f":
            np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-12, equal_nan=True, err_msg=name)
        else:
            np.testing.assert_array_equal(got[name], value, err_msg=name)


@pytest.fixture
def database(comm, shared_tmp_path):
    _on_root(comm, lambda: _write_inputs(shared_tmp_path))
    return shared_tmp_path


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One-structure stores si.h5, c1.h5, nacl.h5, nacl-k025.h5 (other kdensity) and ref.h5 (si + c1).

    Built once per module on a private duplicate of COMM_WORLD (runs are the slow part of these tests).
    """
    comm = MPI.COMM_WORLD.Dup()
    directory = Path(comm.bcast(str(tmp_path_factory.mktemp("stores")) if comm.rank == 0 else None, root=0))
    _on_root(comm, lambda: _write_inputs(directory))
    db = directory / "db"
    for name in ("si", "c1", "nacl"):
        run([str(db / f"{name}.cif")], directory / f"{name}.h5", _config(), comm)
    run([str(db / "nacl.cif")], directory / "nacl-k025.h5", _config(kdensity=0.25), comm)
    assert run([str(db / "si.cif"), str(db / "c1.cif")], directory / "ref.h5", _config(), comm).n_done == 2
    yield directory
    comm.Free()


def test_split_run_chunks_merge_equals_one_run(comm, database):
    config = _config()
    listing = database / "list.txt"
    _on_root(comm, lambda: split_list(listing, 2, config.parameters))
    chunks = sorted((database / "list.chunks").glob("chunk-*.txt"))
    assert len(chunks) == 2
    stores = []
    for k, chunk in enumerate(chunks):
        store = database / f"chunk-{k:04d}.h5"
        run(read_list(chunk), store, config, comm)
        stores.append(store)
    reference = database / "one-run.h5"
    report = run(read_list(listing), reference, config, comm)
    assert (report.n_done, report.n_failed) == (7, 2)  # close.cif (atoms too close), broken.cif (unreadable)
    order = expected_ids(database / "list.chunks" / "split.json")
    merged = database / "merged.h5"
    result = merge_stores(stores, merged, comm, order=order)
    assert (result.n_rows, result.n_done, result.n_failed) == (report.n_total, report.n_done, report.n_failed)
    if comm.rank == 0:
        _assert_same_store(merged, reference)
    comm.Barrier()


def test_collective_and_serial_paths_with_more_ranks_than_rows(comm, single, shared_tmp_path, monkeypatch):
    """Two one-row stores on up to 3 ranks (a rank owns no row); rank 0 alone (h5py without MPI) agrees."""
    a, b, reference = single / "si.h5", single / "c1.h5", single / "ref.h5"
    report = merge_stores([a, b], shared_tmp_path / "parallel.h5", comm)
    assert report.parallel == (comm.size > 1 and writer_module.mpio_available())
    assert (report.n_rows, report.n_done, report.n_failed) == (2, 2, 0)
    monkeypatch.setattr(writer_module, "mpio_available", lambda: False)
    assert not merge_stores([a, b], shared_tmp_path / "serial.h5", comm).parallel
    if comm.rank == 0:
        _assert_same_store(shared_tmp_path / "parallel.h5", reference)
        _assert_same_store(shared_tmp_path / "serial.h5", reference)
    comm.Barrier()


def _expect_error_on_every_rank(comm, match, fn):
    with pytest.raises(StoreError, match=match) as info:
        fn()
    messages = comm.allgather(str(info.value))
    assert len(set(messages)) == 1, messages


def test_failed_write_leaves_no_partial_file(comm, single, shared_tmp_path, monkeypatch):
    """An I/O error reported by one rank after a write (the last rank when the ranks write together,
    else rank 0, which writes alone): every rank raises the same StoreError, no ``<output>.partial`` is
    left and the output in place is untouched."""
    a, b = single / "si.h5", single / "c1.h5"
    out = shared_tmp_path / "failed.h5"
    merge_stores([a], out, comm)
    before = comm.bcast(out.read_bytes() if comm.rank == 0 else None, root=0)
    failing_rank = comm.size - 1 if writer_module.writes_collectively(comm) else 0  # a rank that writes

    def failing(dset, start, data):  # after the (collective) write: no rank is left inside it
        write_rows(dset, start, data)
        if dset.name == "/spectra/eigenvalues" and comm.rank == failing_rank:
            raise OSError(5, "Input/output error")

    monkeypatch.setattr(writer_module, "write_rows", failing)
    where = f"rank {failing_rank}: " if comm.size > 1 and writer_module.writes_collectively(comm) else ""
    _expect_error_on_every_rank(
        comm, f"cannot write .*failed.h5.partial: {where}.*Input/output error",
        lambda: merge_stores([a, b], out, comm, force=True),
    )
    comm.Barrier()
    assert not partial_path(out).exists()
    assert out.read_bytes() == before
    comm.Barrier()


def test_refusals_name_the_problem(comm, single, shared_tmp_path):
    database = shared_tmp_path
    a, b, c = single / "si.h5", single / "nacl.h5", single / "nacl-k025.h5"
    _expect_error_on_every_rank(
        comm,
        r"different parameters: kdensity: 0.3 -> 0.25 \(from .*si.h5 to .*nacl-k025.h5\)",
        lambda: merge_stores([a, c], database / "x.h5", comm),
    )
    _on_root(comm, lambda: shutil.copy(a, database / "a2.h5"))
    _expect_error_on_every_rank(
        comm,
        r"duplicate id 'si': row 0 of .*si.h5 and row 0 of .*a2.h5",
        lambda: merge_stores([a, database / "a2.h5"], database / "x.h5", comm),
    )
    _expect_error_on_every_rank(
        comm,
        r"1 expected id\(s\) missing \(e.g. \['c1'\]",
        lambda: merge_stores([a, b], database / "x.h5", comm, order=["si", "nacl", "c1"]),
    )
    merge_stores([a, b], database / "ab.h5", comm)
    _expect_error_on_every_rank(
        comm, r"ab.h5 exists \(use --force", lambda: merge_stores([a, b], database / "ab.h5", comm)
    )
    merge_stores([b, a], database / "ab.h5", comm, force=True)  # replaced, in the new order
    if comm.rank == 0:
        with h5py.File(database / "ab.h5", "r") as f:
            assert [x.decode() for x in f["structures/id"][()]] == ["nacl", "si"]

    def _mark_pending():
        shutil.copy(b, database / "pending.h5")
        with h5py.File(database / "pending.h5", "r+") as f:
            f["structures/status"][0] = 0

    _on_root(comm, _mark_pending)
    _expect_error_on_every_rank(
        comm,
        r"1 row\(s\) pending",
        lambda: merge_stores([a, database / "pending.h5"], database / "x.h5", comm),
    )
    assert not (database / "x.h5").exists()
    comm.Barrier()


def test_cli_merge_with_manifest_and_exit_codes(comm, single, shared_tmp_path, capsys):
    """`sporep-hpc merge` (on COMM_WORLD, as launched by mpiexec): 0 when merged, 3 for a store problem."""
    from sporep_hpc.cli import main

    database = shared_tmp_path
    si, nacl = str(single / "db/si.cif"), str(single / "db/nacl.cif")
    a, b = single / "si.h5", single / "nacl.h5"

    def _manifest():
        (database / "two.txt").write_text(f"{nacl}\n{si}\n")
        split_list(database / "two.txt", 2, _config().parameters)

    _on_root(comm, _manifest)
    manifest = str(database / "two.chunks" / "split.json")
    assert main(["merge", str(a), str(b), "-o", str(database / "m.h5"), "--manifest", manifest]) == 0
    if comm.rank == 0:
        with h5py.File(database / "m.h5", "r") as f:
            assert [x.decode() for x in f["structures/id"][()]] == ["nacl", "si"]  # the list's order
    assert main(["merge", str(a), "-o", str(database / "m.h5")]) == 3
    assert "exists (use --force" in capsys.readouterr().err or comm.rank > 0
    comm.Barrier()
