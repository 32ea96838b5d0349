"""`sporep-hpc report` on a user's store (not a built-in set) and side by side for two operators."""

import pytest
from pymatgen.core import Lattice, Structure

from sporep_hpc.cli import main


def _fcc(a, symbols, frac):
    return Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), symbols, frac)


@pytest.fixture
def stores(tmp_path, monkeypatch):
    """Kinetic and huckel stores of three user files whose names look like nothing built in."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS"):
        monkeypatch.setenv(var, "1")  # `run` exports thread counts; restore them after the test
    monkeypatch.chdir(tmp_path)
    (tmp_path / "inputs").mkdir()
    _fcc(5.43, ["Si", "Si"], [[0, 0, 0], [0.25, 0.25, 0.25]]).to(filename="inputs/Si_mp-149.cif")
    _fcc(5.64, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename="inputs/qe_rocksalt.cif")
    _fcc(4.05, ["Al"], [[0, 0, 0]]).to(filename="inputs/al.cif")
    out = {}
    for op, fp in (("kinetic", "kinetic"), ("huckel", "fermi")):
        args = ["run", "inputs", "-o", f"{op}.h5", "--operator", op, "--fingerprints", fp,
                "--kdensity", "0.3", "--threads", "1"]
        assert main(args) == 0
        out[op] = tmp_path / f"{op}.h5"
    return out


def test_report_on_a_users_store_groups_by_formula(stores, capsys):
    capsys.readouterr()
    assert main(["report", str(stores["huckel"])]) == 0
    text = capsys.readouterr().out
    # issue 16.3: "Si: 1, inputs: 1, qe: 1" (id prefixes) was the bug; structures are counted by formula
    assert "3 structures by formula (" in text
    for formula in ("Si: 1", "NaCl: 1", "Al: 1"):
        assert formula in text
    assert "qe: 1" not in text and "inputs: 1" not in text
    assert "BaTiO3" not in text and "nanotubes" not in text  # no built-in structures, no such sections
    # huckel spectra have gaps: Al a metal (0), NaCl wider than Si (ionic > covalent)
    gaps = {line.split("(")[1].split(")")[0]: float(line.rsplit(":", 1)[1])
            for line in text.splitlines() if line.startswith("  ") and "): " in line}
    assert gaps["Al"] == 0.0 and gaps["NaCl"] > gaps["Si"] > 1.0


def test_report_side_by_side(stores, capsys):
    capsys.readouterr()
    assert main(["report", str(stores["kinetic"]), str(stores["huckel"])]) == 0
    text = capsys.readouterr().out
    table = text[text.index("side by side:"):].splitlines()
    assert "kinetic.h5" in table[1] and "huckel.h5" in table[1]
    assert table[2].split() == ["operator", "kinetic", "huckel"]
    # the kinetic store has no band-gap section (its "gaps" are not chemistry)
    assert text.count("band gaps (") == 1


def test_huckel_store_records_its_parameter_sources(stores):
    # issue 14.2: the store's root parameters cite the h_l table (each value with its source tag)
    from sporep_hpc.huckel import SOURCES, TABLE
    from sporep_hpc.store import open_store

    with open_store(stores["huckel"]) as s:
        table = s.parameters["huckel_parameters"]
    assert table["sources"] == dict(SOURCES) and table["unit"] == "eV"
    assert table["values"]["Si"]["s"] == [TABLE["Si"][0].energy, "yaehmop"]
    with open_store(stores["kinetic"]) as s:
        assert "huckel_parameters" not in s.parameters
