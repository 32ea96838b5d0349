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
    assert ExecutionOptions().schedule == "static"  # issue 15: 1.88x at 2 ranks against 1.77x dynamic


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        # KDENSITY_MIN = 2π / (120 Å³ · 10⁶)^(1/3) = 0.0127385 (a 1-atom cell of 120 Å³ with 10⁶ k-points)
        ("kdensity", 0.0, r"kdensity must be a number in \[0.0127385, inf\) 1/Å; got 0.0"),
        ("kdensity", 1e-300, r"kdensity must be a number in \[0.0127385, inf\) 1/Å; got 1e-300"),
        ("kdensity", 0.001, r"kdensity must be a number in \[0.0127385, inf\) 1/Å; got 0.001"),
        ("max_memory", "4 parsecs", "max_memory must be a size in bytes"),
        ("max_memory", -1, r"max_memory must be a size in \[0, 2\^62\] bytes; got -1"),
        ("max_memory", "nan", "max_memory must be a size in bytes"),
        ("max_memory", True, "max_memory must be a size in bytes"),
        ("max_memory", "1MiB", "max_memory must be at least 16 MiB; got '1MiB'"),
        ("kdensity", "x", "kdensity must be a number"),
        # the operators refuse precision > 1e-3 for every structure: refused once, at parse time
        ("precision", 0.5, r"precision must be a number in \[1e-30, 0.001\]; got 0.5"),
        ("precision", 1e-300, r"precision must be a number in \[1e-30, 0.001\]; got 1e-300"),
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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4GiB", 4 * 2**30), ("4 gib", 4 * 2**30), ("500MB", 500 * 10**6), ("800M", 800 * 2**20),
        ("1.5GB", 1_500_000_000), ("1e9", 10**9), (2**34, 2**34), (1e9, 10**9), ("  2 TiB ", 2 * 2**40),
    ],
)
def test_max_memory_sizes(text, expected, tmp_path):
    # SI units are powers of 1000, the binary and SLURM-style ones (K, M, G, T) powers of 1024
    assert ExecutionOptions(max_memory=text).max_memory == expected
    toml = tmp_path / "run.toml"
    value = repr(text) if isinstance(text, str) else str(text)  # a TOML literal string or a number
    toml.write_text(f"[execution]\nmax_memory = {value}\n")
    assert build_config(load_toml(toml)).execution.max_memory == expected
    assert ExecutionOptions().max_memory is None  # default: decided from the machine at run time


def test_default_memory_budget_divides_the_available_memory(monkeypatch):
    import os

    import sporep_hpc.config as config

    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")  # physical memory, from the OS
    available = config.available_memory()
    assert available is not None and 0 < available <= total  # Linux: /proc/meminfo
    monkeypatch.setattr(config, "available_memory", lambda: 12 * 2**30)
    assert config.default_max_memory(3) == 4 * 2**30
    assert config.default_max_memory(10**6) == config.MIN_MEMORY  # never below the smallest budget
    monkeypatch.setattr(config, "available_memory", lambda: None)
    assert config.default_max_memory(2) is None  # unknown: no budget
    assert config.format_bytes(4 * 2**30) == "4 GiB" and config.format_bytes(1536) == "1.5 KiB"
