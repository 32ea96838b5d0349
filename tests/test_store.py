"""The HDF5 store: schema (DESIGN §5), serial writer, reader, pandas export, driver selection.

References are the synthetic rows written, read back independently with plain h5py.
"""

import itertools
import json
from dataclasses import fields, replace

import h5py
import numpy as np
import pytest

import sporep_hpc.store.writer as writer_module
from sporep_hpc.errors import StoreError
from sporep_hpc.store import (
    DATASETS,
    SCHEMA_VERSION,
    STATUS_DONE,
    STATUS_FAILED,
    FingerprintMeta,
    StoreHeader,
    StructureResult,
    failed_result,
    mpio_available,
    open_h5,
    open_store,
    partial_path,
    read_band_structures,
    to_dataframe,
    to_fixed,
    write_rows,
    write_store,
    write_store_atomically,
)
from sporep_hpc.store.schema import GROUP_LAYOUT

N_FEAT = 7


def make_rows(rng, n=5, failed=(2,)):
    rows = []
    for i in range(n):
        if i in failed:
            rows.append(failed_result(i, f"s{i}", f"structure 's{i}': broken"))
            continue
        n_atoms, n_k, n_spin, n_b = 1 + i % 3, 2 + i, 1 + (i % 2), 3 + i
        w = rng.uniform(0.5, 1, n_k)
        eig = np.sort(rng.normal(0, 5, (n_spin, n_k, n_b)), axis=2)
        rows.append(
            StructureResult(
                index=i, id=f"s{i}", status=STATUS_DONE, formula=f"X{i}",
                cell=np.eye(3) * (3 + i), numbers=np.arange(1, n_atoms + 1, dtype=np.int64),
                positions=rng.uniform(0, 3, (n_atoms, 3)), kpoints=rng.uniform(-0.5, 0.5, (n_k, 3)),
                weights=w / w.sum(), eigenvalues=eig, n_electrons=2.0 * n_atoms, fermi_energy=0.1 * i,
                vbm=0.1 * i - 0.5, cbm=0.1 * i + 0.5, band_gap=1.0,
                fingerprints={"fp": rng.uniform(0, 1, N_FEAT), "zz": rng.uniform(0, 1, 3)},
            )
        )
    return rows


HEADER = StoreHeader('{"kdensity": 0.15}', "2026-01-01T00:00:00Z", 1, "0.1.0")
META = {
    "fp": FingerprintMeta(np.linspace(-1, 1, N_FEAT), {"reference": "vbm", "spec": "{}"}),
    "zz": FingerprintMeta(np.linspace(0, 1, 3), {"reference": "zero", "spec": "{}"}),
}


def write(path, rows):
    write_store(path, rows, 0, len(rows), HEADER, META)


def test_schema_matches_design(tmp_path, rng):
    rows = make_rows(rng)
    path = tmp_path / "s.h5"
    write(path, rows)
    with h5py.File(path, "r") as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION
        for key in ("sporep_hpc_version", "created", "parameters", "n_ranks"):
            assert key in f.attrs
        for key in ("id", "formula", "n_atoms", "cell", "status", "error", "atoms_offset", "numbers",
                    "positions"):
            assert key in f["structures"], key
        for key in ("kpoints_offset", "kpoints", "weights", "bands_offset", "n_bands", "eigenvalues",
                    "n_electrons", "fermi_energy", "vbm", "cbm", "band_gap"):
            assert key in f["spectra"], key
        assert f["structures/id"].dtype == np.dtype("S64")
        assert f["structures/error"].dtype == np.dtype("S256")
        assert f["spectra/eigenvalues"].attrs["units"] == "eV"
        assert f["structures/positions"].attrs["units"] == "angstrom"
        # ragged layout: offsets are the cumulative sizes of the rows written
        np.testing.assert_array_equal(
            f["spectra/bands_offset"][()], np.cumsum([0] + [r.eigenvalues.size for r in rows])
        )
        flat = np.concatenate([r.eigenvalues.ravel() for r in rows])
        np.testing.assert_array_equal(f["spectra/eigenvalues"][()], flat)
        atom_offsets = np.cumsum([0] + [r.n_atoms for r in rows])
        np.testing.assert_array_equal(f["structures/atoms_offset"][()], atom_offsets)
        np.testing.assert_array_equal(f["structures/status"][()], [1, 1, -1, 1, 1])
        values = f["fingerprints/fp/values"][()]
        assert values.shape == (5, N_FEAT) and np.isnan(values[2]).all()
        assert f["fingerprints/fp"].attrs["reference"] == "vbm"


def test_reader_round_trip(tmp_path, rng):
    rows = make_rows(rng)
    path = tmp_path / "s.h5"
    write(path, rows)
    with open_store(path) as store:
        assert store.ids == [r.id for r in rows]
        assert store.parameters == {"kdensity": 0.15}
        assert store.fingerprint_names == ["fp", "zz"]
        assert store.errors[2] == "structure 's2': broken"
        for r in rows:
            if r.status != STATUS_DONE:
                with pytest.raises(StoreError, match="no spectrum"):
                    store.band_structure(r.index)
                continue
            sp = store.spectrum(r.index)
            np.testing.assert_array_equal(sp["eigenvalues"], r.eigenvalues)
            np.testing.assert_array_equal(sp["kpoints"], r.kpoints)
            assert sp["vbm"] == r.vbm
            _cell, numbers, positions = store.atoms(r.index)
            np.testing.assert_array_equal(positions, r.positions)
            np.testing.assert_array_equal(numbers, r.numbers)
        values, energies, _attrs = store.fingerprints("fp")
        np.testing.assert_array_equal(values[0], rows[0].fingerprints["fp"])
        np.testing.assert_array_equal(energies, np.linspace(-1, 1, N_FEAT))
        with pytest.raises(StoreError, match="no fingerprint 'nope'; stored: fp, zz"):
            store.fingerprints("nope")
    df = to_dataframe(path)
    assert list(df.index) == [r.id for r in rows]
    assert df.loc["s3", "n_kpoints"] == 5 and df.loc["s2", "status"] == STATUS_FAILED
    bands = read_band_structures(path)
    assert sorted(bands) == ["s0", "s1", "s3", "s4"]
    np.testing.assert_allclose(bands["s1"].eigenvalues, rows[1].eigenvalues, rtol=0, atol=0)
    np.testing.assert_allclose(bands["s1"].weights, rows[1].weights, rtol=1e-15)


def test_empty_store_and_all_failed(tmp_path):
    rows = [failed_result(0, "a", "bad"), failed_result(1, "b", "worse")]
    write(tmp_path / "f.h5", rows)
    with open_store(tmp_path / "f.h5") as s:
        assert list(s.status) == [-1, -1]
        assert s.file["spectra/eigenvalues"].shape == (0,)
    write(tmp_path / "e.h5", [])
    with open_store(tmp_path / "e.h5") as s:
        assert len(s) == 0


def test_rows_must_be_contiguous(tmp_path, rng):
    rows = make_rows(rng, 3, failed=())
    with pytest.raises(StoreError, match="index 2, expected 1"):
        write(tmp_path / "x.h5", [rows[0], rows[2]])


def test_fixed_width_strings_truncate_with_note():
    assert to_fixed("abc", 64) == b"abc"
    long = to_fixed("é" * 200, 64)
    assert len(long) <= 64 and long.endswith(b"...[truncated]")
    long.decode("utf-8")  # never cuts a multi-byte character


def test_not_a_store(tmp_path):
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(StoreError, match="not a sporep-hpc store"):
        open_store(tmp_path / "other.h5")
    with pytest.raises(StoreError, match="no such store"):
        open_store(tmp_path / "missing.h5")


def test_driver_selection(monkeypatch, tmp_path):
    monkeypatch.setenv("SPOREP_FORCE_SERIAL_HDF5", "1")
    assert not mpio_available()

    class TwoRanks:
        size = 2

    with pytest.raises(StoreError, match="on 2 ranks: h5py was built without MPI"):
        open_h5(tmp_path / "x.h5", "w", TwoRanks())
    monkeypatch.delenv("SPOREP_FORCE_SERIAL_HDF5")
    assert mpio_available() == bool(h5py.get_config().mpi)
    with open_h5(tmp_path / "y.h5", "w") as f:
        assert f.driver != "mpio"
        d = f.create_dataset("d", (4, 2), dtype=np.float64)
        write_rows(d, 1, np.ones((2, 2)))
        write_rows(d, 3, np.zeros((0, 2)))  # empty selection: a no-op
        np.testing.assert_array_equal(d[()], [[0, 0], [1, 1], [1, 1], [0, 0]])


def test_properties_round_trip_and_old_stores(tmp_path, rng):
    rows = make_rows(rng)
    long = '{"x":"' + "y" * 5000 + '"}'
    texts = ['{"electronic":"metallic","n":5}', "", '{"label":"\u00e9t\u00e9"}', "", long]
    rows = [replace(r, properties=t) for r, t in zip(rows, texts, strict=True)]
    path = tmp_path / "p.h5"
    write(path, rows)
    with h5py.File(path, "r") as f:  # ragged UTF-8 bytes, read back without our reader
        off = f["structures/properties_offset"][()]
        raw = f["structures/properties"][()].tobytes()
        assert [raw[a:b].decode() for a, b in itertools.pairwise(off)] == texts
    with open_store(path) as store:
        assert store.has_properties
        assert store.properties(0) == {"electronic": "metallic", "n": 5}
        assert store.properties(1) == {} and store.properties(2) == {"label": "\u00e9t\u00e9"}
        assert store.properties(4)["x"] == "y" * 5000  # no truncation
        assert store.all_properties() == [json.loads(t) if t else {} for t in texts]
    assert list(to_dataframe(path)["properties"]) == texts
    # a store written before schema 1.2 (no properties datasets) reads as having none
    with h5py.File(path, "r+") as f:
        del f["structures/properties"], f["structures/properties_offset"]
        f.attrs["schema_version"] = "1.0"
    with open_store(path) as store:
        assert not store.has_properties
        assert store.properties(0) == {} and store.all_properties() == [{}] * 5
    assert list(to_dataframe(path)["properties"]) == [""] * 5


def _datasets(path):
    """{name: h5py dataset} of every dataset in the file at `path` (read with plain h5py)."""
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.update({name: (obj.dtype, dict(obj.attrs))})
                     if isinstance(obj, h5py.Dataset) else None)
    return found


def test_every_dataset_written_is_in_the_table_and_back(tmp_path, rng):
    path = tmp_path / "s.h5"
    write(path, make_rows(rng))
    written = _datasets(path)
    table = dict(DATASETS)
    for name in META:
        table.update({f"fingerprints/{name}/{ds}": lay for ds, lay in GROUP_LAYOUT["fingerprints"].items()})
    assert sorted(written) == sorted(table)
    for key, (dtype, attrs) in written.items():
        layout = table[key]
        assert dtype == np.dtype(layout.dtype), key
        assert dtype.kind in layout.kinds, key
        assert attrs.get("units", "") == layout.units, key
        assert {k: v for k, v in attrs.items() if k != "units"} == dict(layout.attrs), key
    # the units the design names (DESIGN §5), independent of the table
    assert written["spectra/eigenvalues"][1]["units"] == "eV"
    assert written["structures/cell"][1]["units"] == "angstrom"
    assert written["spectra/n_electrons"][1]["units"] == "electrons"
    assert written["fingerprints/fp/values"][1]["units"] == "states/eV/cell"


def _assert_same_row(got, want, names):
    for f in fields(StructureResult):
        a, b = getattr(got, f.name), getattr(want, f.name)
        if f.name == "fingerprints":
            assert sorted(a) == sorted(names), want.id
            for name in names:
                expected = b.get(name, np.full(len(META[name].energies), np.nan))
                np.testing.assert_array_equal(a[name], expected)  # NaN rows of failed structures equal
        elif isinstance(b, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=f"{want.id}: {f.name}")
            assert a.shape == b.shape, (want.id, f.name)
        elif isinstance(b, float) and np.isnan(b):
            assert np.isnan(a), (want.id, f.name)
        else:
            assert a == b, (want.id, f.name)


def test_read_rows_returns_what_was_written(tmp_path, rng):
    rows = make_rows(rng, n=6, failed=(2,))
    texts = ['{"a":1}', "", "", '{"label":"\u00e9t\u00e9"}', "", '{"z":[1,2]}']
    rows = [replace(r, properties=t) for r, t in zip(rows, texts, strict=True)]
    path = tmp_path / "s.h5"
    write(path, rows)
    with open_store(path) as store:
        for got, want in zip(store.read_rows(0, 6), rows, strict=True):
            _assert_same_row(got, want, ["fp", "zz"])
        span = store.read_rows(1, 4, fingerprints=["zz"])  # a span not starting at row 0
        assert [r.index for r in span] == [1, 2, 3]
        for got, want in zip(span, rows[1:4], strict=True):
            _assert_same_row(got, want, ["zz"])
        assert store.read_rows(3, 3) == []
        with pytest.raises(StoreError, match=r"rows \[4, 9\) are not rows of the store \[0, 6\)"):
            store.read_rows(4, 9)
        with pytest.raises(StoreError, match="no fingerprint 'nope'"):
            store.read_rows(0, 1, fingerprints=["nope"])
    # written again from what was read: the same file content
    with open_store(path) as store:
        again = store.read_rows(0, 6)
    write(tmp_path / "again.h5", again)
    with h5py.File(path, "r") as a, h5py.File(tmp_path / "again.h5", "r") as b:
        for key in _datasets(path):
            assert a[key][()].tobytes() == b[key][()].tobytes(), key


def test_write_store_atomically_renames_or_leaves_nothing(tmp_path, rng, monkeypatch):
    rows = make_rows(rng)
    path = tmp_path / "s.h5"
    partial = partial_path(path)
    partial.write_bytes(b"left by an earlier attempt")
    size = write_store_atomically(path, rows, 0, len(rows), HEADER, META)
    assert size == path.stat().st_size and not partial.exists()
    with open_store(path) as store:
        assert store.ids == [r.id for r in rows]
    before = path.read_bytes()

    def failing(dset, start, data):  # an I/O error in the middle of the write (after some datasets)
        if dset.name == "/spectra/eigenvalues":
            raise OSError(28, "No space left on device")
        write_rows(dset, start, data)

    monkeypatch.setattr(writer_module, "write_rows", failing)
    with pytest.raises(StoreError, match="No space left on device") as info:
        write_store_atomically(path, rows, 0, len(rows), HEADER, META)
    assert info.value.agreed
    assert not partial.exists()
    assert path.read_bytes() == before  # the store in place is untouched
    monkeypatch.undo()

    class Full:  # statvfs of a file system with 1 MiB free
        f_bavail, f_frsize = 256, 4096

    monkeypatch.setattr(writer_module.os, "statvfs", lambda _: Full())
    with pytest.raises(StoreError, match="not enough space for the store"):
        write_store_atomically(tmp_path / "t.h5", rows, 0, len(rows), HEADER, META)
    assert not (tmp_path / "t.h5").exists() and not partial_path(tmp_path / "t.h5").exists()
