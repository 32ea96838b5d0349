"""Run parameters: defaults, validation messages, TOML loading, CLI overrides, JSON round trip."""

import pytest

from sporep_hpc.config import (
    ExecutionOptions,
    RunParameters,
    build_config,
    diff_parameters,
    load_toml,
)
from sporep_hpc.errors import ParameterError


def test_defaults_follow_design():
    # DESIGN §3: kdensity 0.15 1/Å, exp_to_discard 0.1, precision 1e-12, lindep 1e-8, ano-valence basis
    p = RunParameters()
    assert (p.operator, p.basis, p.kdensity, p.exp_to_discard, p.precision, p.lindep) == (
        "kinetic", "ano-valence", 0.15, 0.1, 1e-12, 1e-8,
    )
    assert ExecutionOptions().schedule == "dynamic"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("kdensity", 0.0, r"kdensity must be a number in \(0, inf\) 1/Å; got 0.0"),
        ("kdensity", "x", "kdensity must be a number"),
        ("operator", "potential", "operator must be one of 'huckel', 'kinetic', 'overlap'; got 'potential'"),
        ("max_atoms", 0, r"max_atoms must be an integer in \[1, inf\)"),
        ("max_atoms", 2.5, "max_atoms must be an integer"),
        ("lindep", 1.0, r"lindep must be a number in \(0, 1\)"),
        ("fingerprints", (), "fingerprints must be a non-empty list"),
        ("fingerprints", ("a", "a"), "must not repeat"),
        ("schedule", "roundrobin", "schedule must be one of 'dynamic', 'static'"),
        ("restart", "never", "restart must be one of 'auto', 'fresh'"),
        ("threads", 0, r"threads must be an integer in \[1, inf\)"),
    ],
)
def test_invalid_values_name_range_and_value(key, value, message):
    with pytest.raises(ParameterError, match=message):
        build_config(overrides={key: value})


def test_toml_flat_and_tables_and_overrides(tmp_path):
    flat = tmp_path / "flat.toml"
    flat.write_text('kdensity = 0.2\nfingerprints = ["kinetic", "other"]\nschedule = "static"\n')
    tables = tmp_path / "tables.toml"
    tables.write_text(
        '[parameters]\nkdensity = 0.2\nfingerprints = "kinetic,other"\n[execution]\nschedule = "static"\n'
    )
    a = build_config(load_toml(flat))
    b = build_config(load_toml(tables))
    assert a == b
    assert a.parameters.fingerprints == ("kinetic", "other")
    c = build_config(load_toml(flat), {"kdensity": 0.3, "basis": None})
    assert c.parameters.kdensity == 0.3 and c.parameters.basis == "ano-valence"


def test_unknown_keys_and_bad_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("kdensty = 0.2\n")
    with pytest.raises(ParameterError, match=r"unknown run setting.*kdensty; valid: .*kdensity"):
        build_config(load_toml(bad))
    broken = tmp_path / "broken.toml"
    broken.write_text("kdensity = = 1\n")
    with pytest.raises(ParameterError, match="not valid TOML"):
        load_toml(broken)
    with pytest.raises(ParameterError, match="does not exist"):
        load_toml(tmp_path / "none.toml")


def test_json_round_trip_and_diff():
    p = RunParameters(kdensity=0.2, fingerprints=("kinetic", "x"))
    assert RunParameters.from_json(p.to_json()) == p
    q = RunParameters(kdensity=0.3, fingerprints=("kinetic", "x"))
    assert diff_parameters(p, q) == ["kdensity: 0.2 -> 0.3"]
    assert diff_parameters(p, p) == []
