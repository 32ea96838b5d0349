"""One declaration per run parameter (issue 17.2): the dataclass checks, the `sporep-hpc run` options,
the TOML keys and the parameter diffs all come from `config.RUN_PARAMETERS` / `config.EXECUTION_OPTIONS`,
and what the parser accepts is what the computation accepts."""

import argparse
import json
import math
from dataclasses import asdict, fields

import numpy as np
import pytest

from sporep_hpc import config
from sporep_hpc.cli import build_parser, main
from sporep_hpc.config import EXECUTION_OPTIONS, RUN_PARAMETERS, ExecutionOptions, RunParameters, build_config
from sporep_hpc.errors import InputError, ParameterError
from sporep_hpc.kpoints import irreducible_kpoints
from sporep_hpc.operators import operator_spectrum
from sporep_hpc.params import differences

ALL = RUN_PARAMETERS + EXECUTION_OPTIONS

#: A command-line value each declared setting must refuse (exit 2). A new declaration without an entry
#: here fails `test_every_setting_has_a_refused_value`. None: a switch without a value (tested via TOML).
BAD_CLI = {
    "operator": "potential",
    "basis": "",
    "kdensity": "0.001",  # below KDENSITY_MIN ≈ 0.0127 1/Å
    "kgrid_rounding": "floor",
    "vacuum_kpoints": "none",
    "exp_to_discard": "-0.1",
    "precision": "0.01",  # issue 17: passed the parser, then every structure failed (exit 4)
    "lindep": "0",  # issue 17: the reverse case
    "fingerprints": "kinetic,kinetic",
    "max_atoms": "0",
    "min_distance": "-1",
    "huckel_k": "1",
    "huckel_weighted": None,
    "images": "first",
    "allow_unconverged": None,
    "keep_cell": None,
    "schedule": "roundrobin",
    "threads": "0",
    "restart": "never",
    "progress_interval": "0",
    "journal_interval": "-1",
    "keep_journal": None,
    "split_kpoints": None,
    "max_memory": "1MiB",
}


def _run_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["run"]


def _si():
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(5.43), ["Si"] * 2, [[0, 0, 0], [0.25, 0.25, 0.25]])


def test_the_tables_are_the_dataclass_fields():
    assert [p.name for p in RUN_PARAMETERS] == [f.name for f in fields(RunParameters)]
    assert [p.name for p in EXECUTION_OPTIONS] == [f.name for f in fields(ExecutionOptions)]
    assert asdict(RunParameters()) == {p.name: p.default for p in RUN_PARAMETERS}
    assert asdict(ExecutionOptions()) == {p.name: p.default for p in EXECUTION_OPTIONS}


def test_every_setting_has_a_flag_a_toml_key_and_a_refused_value(tmp_path):
    assert sorted(BAD_CLI) == sorted(p.name for p in ALL)
    run = _run_parser()
    dests = {a.dest: a for a in run._actions}
    for p in ALL:
        assert p.name in dests, f"{p.name} has no option of `sporep-hpc run`"
        action = dests[p.name]
        assert p.cli_flag in action.option_strings
        if p.choices is not None:
            assert tuple(action.choices) == tuple(p.choices)
        toml = tmp_path / f"{p.name}.toml"
        group = "parameters" if p in RUN_PARAMETERS else "execution"
        toml.write_text(f"[{group}]\n{p.name} = {json.dumps(p.default if p.default is not None else 1)}\n")
        if p.default is not None:
            assert getattr(getattr(build_config(config.load_toml(toml)), group), p.name) == p.default


@pytest.mark.parametrize("name", sorted(BAD_CLI))
def test_a_refused_value_exits_2_at_parse_time(name, tmp_path, capsys):
    p = next(p for p in ALL if p.name == name)
    out = tmp_path / "never.h5"
    if BAD_CLI[name] is None:  # a switch: a wrong type in the TOML file instead
        toml = tmp_path / "bad.toml"
        toml.write_text(f'{name} = "maybe"\n')
        argv = ["run", "examples:batio3", "-o", str(out), "--config", str(toml)]
    else:
        argv = ["run", "examples:batio3", "-o", str(out), p.cli_flag, BAD_CLI[name]]
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own refusal (choices, type): also exit 2
        code = exc.code
    assert code == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert name in err or p.cli_flag in err


def test_parser_and_computation_agree_on_precision_and_lindep():
    si = _si()
    k = np.zeros((1, 3))
    prec = next(p for p in RUN_PARAMETERS if p.name == "precision")
    # the boundaries the parser accepts are computed (Γ only, a few ms)
    for value in (prec.low, prec.high):
        RunParameters(precision=value)
        bands = operator_spectrum(si, kpoints=k, precision=value)
        assert np.all(np.isfinite(bands.eigenvalues))
    # just beyond them: both refuse, with the same message
    for value in (prec.high * 1.01, prec.low / 10, 0.01, 0.0, math.nan):
        with pytest.raises(ParameterError, match="precision must be") as parsed:
            RunParameters(precision=value)
        with pytest.raises(ParameterError, match="precision must be") as computed:
            operator_spectrum(si, kpoints=k, precision=value)
        assert str(parsed.value) == str(computed.value)
    for value in (1e-300, 0.5, 1 - 1e-12):
        RunParameters(lindep=value)
        operator_spectrum(si, kpoints=k, lindep=value)
    for value in (0.0, 1.0, -1e-8):
        with pytest.raises(ParameterError, match="lindep must be") as parsed:
            RunParameters(lindep=value)
        with pytest.raises(ParameterError, match="lindep must be") as computed:
            operator_spectrum(si, kpoints=k, lindep=value)
        assert str(parsed.value) == str(computed.value)
    for value in ("potential", ""):
        with pytest.raises(ParameterError, match="operator must be one of"):
            RunParameters(operator=value)
        with pytest.raises(ParameterError, match="operator must be one of"):
            operator_spectrum(si, operator=value, kpoints=k)


def _same_refusal(parse, compute):
    """Both calls raise ParameterError with the same message."""
    with pytest.raises(ParameterError) as parsed:
        parse()
    with pytest.raises(ParameterError) as computed:
        compute()
    assert str(parsed.value) == str(computed.value)


def test_parser_and_computation_agree_on_basis_huckel_and_structure_limits():
    from sporep_hpc.basis import load_basis
    from sporep_hpc.huckel import coupling_matrix
    from sporep_hpc.structures import check_structure

    h = [-0.5, -0.3]  # orbital energies, Hartree (any negative values)
    # boundaries accepted by both
    RunParameters(exp_to_discard=0.0, huckel_k=1.0 + 1e-9, max_atoms=2, min_distance=0.0)
    load_basis("ano-valence", 0.0)
    coupling_matrix(h, 1.0 + 1e-9)
    check_structure(_si(), "si", max_atoms=2, min_distance=0.0)
    # beyond them: the same refusal
    _same_refusal(lambda: RunParameters(exp_to_discard=-0.1), lambda: load_basis("ano-valence", -0.1))
    _same_refusal(lambda: RunParameters(basis=""), lambda: load_basis("", 0.1))
    _same_refusal(lambda: RunParameters(huckel_k=1.0), lambda: coupling_matrix(h, 1.0))
    _same_refusal(lambda: RunParameters(huckel_weighted="yes"), lambda: coupling_matrix(h, 1.75, "yes"))
    _same_refusal(lambda: RunParameters(max_atoms=0), lambda: check_structure(_si(), "si", max_atoms=0))
    _same_refusal(lambda: RunParameters(min_distance=-1.0),
                  lambda: check_structure(_si(), "si", min_distance=-1.0))


def test_parser_and_kpoints_agree_on_kdensity_and_rounding():
    from pymatgen.core import Lattice, Structure

    kd = next(p for p in RUN_PARAMETERS if p.name == "kdensity")
    # the smallest accepted spacing on a 1-atom cube of 125 Å³ (> MAX_ATOMIC_VOLUME): 2π/5/0.01274 ->
    # 99 points per axis, 970299 in all, at most MAX_KPOINTS: computed
    cube = Structure(Lattice.cubic(5.0), ["Cs"], [[0, 0, 0]])
    RunParameters(kdensity=kd.low)
    _, weights = irreducible_kpoints(cube, kdensity=kd.low)
    assert math.isclose(weights.sum(), 1.0, rel_tol=1e-12)
    for value in (kd.low * 0.99, 0.0, -0.1):
        with pytest.raises(ParameterError, match="kdensity must be"):
            RunParameters(kdensity=value)
    with pytest.raises((ParameterError, InputError)):  # computation: a grid of more than MAX_KPOINTS
        irreducible_kpoints(cube, kdensity=kd.low * 0.5)
    rounding = next(p for p in RUN_PARAMETERS if p.name == "kgrid_rounding")
    for mode in rounding.choices:
        irreducible_kpoints(_si(), kdensity=0.3, rounding=mode)
        RunParameters(kgrid_rounding=mode)


def test_operator_spectrum_defaults_come_from_the_declarations():
    import inspect

    from sporep_hpc.operators import spectrum_with_stats

    for function in (operator_spectrum, spectrum_with_stats):
        sig = inspect.signature(function).parameters
        for p in RUN_PARAMETERS:
            if p.name in sig:
                assert sig[p.name].default == p.default, (function.__name__, p.name)


def test_the_stored_parameters_text_is_unchanged():
    # the default run's JSON as stored before issue 17 (stores must stay bit-identical)
    expected = (
        '{"allow_unconverged": false, "basis": "ano-valence", "exp_to_discard": 0.1, '
        '"fingerprints": ["kinetic"], "huckel_k": 1.75, "huckel_weighted": false, "images": "last", '
        '"kdensity": 0.15, "keep_cell": false, "kgrid_rounding": "ceil", "lindep": 1e-08, '
        '"max_atoms": 200, "min_distance": 0.5, "operator": "kinetic", "precision": 1e-12, '
        '"vacuum_kpoints": "gamma"}'
    )
    assert RunParameters().to_json() == expected
    assert RunParameters.from_json(expected) == RunParameters()


def test_one_difference_text_at_every_call_site(tmp_path):
    from sporep_hpc.analysis.classify import store as classify
    from sporep_hpc.parallel import merge, restart

    a, b = RunParameters(kdensity=0.2), RunParameters(kdensity=0.3)
    text = "kdensity: 0.2 -> 0.3"
    assert [str(d) for d in differences(asdict(a), asdict(b))] == [text]
    assert config.diff_parameters(a, b) == [text]
    ja, jb = json.loads(a.to_json()), json.loads(b.to_json())
    assert restart.diff_texts is config.diff_texts  # check_existing_store: tests/test_cli_run.py
    with pytest.raises(ParameterError) as exc:
        classify._check_parameters(ja, jb, "m", "x.h5")
    assert text in str(exc.value)
    stores = [
        merge.StoreSummary(path=str(tmp_path / name), ids=[], status=np.zeros(0, np.int8),
                           parameters_json=p.to_json(), schema_version="1.0", fingerprints={}, created="",
                           n_ranks=1)
        for name, p in (("a.h5", a), ("b.h5", b))
    ]
    with pytest.raises(Exception) as exc:
        merge.check_compatible(stores)
    assert text in str(exc.value)
    # nested values get dotted paths; lists and tuples are the same value; absent keys are named
    assert [str(d) for d in differences({"s": {"w": 0.1}, "f": ("x",)}, {"s": {"w": 0.2}, "f": ["x"]})] == [
        "s.w: 0.1 -> 0.2"
    ]
    assert [str(d) for d in differences({"x": 1}, {})] == ["x: 1 -> (absent)"]


def test_cell_coercion_is_shared():
    from sporep_hpc.structures import as_cell

    cell = as_cell(_si())
    assert cell.lattice.shape == (3, 3) and cell.frac.shape == (2, 3) and cell.numbers.tolist() == [14, 14]
    assert np.array_equal(cell.cart, _si().cart_coords)  # the structure's own positions (bit for bit)
    for bad in (object(), None):
        with pytest.raises(InputError):
            as_cell(bad)
    with pytest.raises(InputError, match="singular"):
        as_cell(type("Flat", (), {"lattice": type("L", (), {"matrix": np.zeros((3, 3))}),
                                  "frac_coords": np.zeros((1, 3)), "atomic_numbers": [1]})())
    # kpoints and operators use this one coercion: the same refusal from both
    from pymatgen.core import Lattice, Structure

    disordered = Structure(Lattice.cubic(4.0), [{"Na": 0.5, "K": 0.5}], [[0, 0, 0]])
    for call in (lambda: irreducible_kpoints(disordered, kdensity=0.2),
                 lambda: operator_spectrum(disordered, kpoints=np.zeros((1, 3)))):
        with pytest.raises(InputError, match="partial occupancy"):
            call()


def test_threads_resolved_once(monkeypatch):
    from sporep_hpc.threads import resolve_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads(None, fallback=7) == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert resolve_threads(None, fallback=7) == 7
    assert resolve_threads(2, fallback=7) == 2


def test_choice_tuples_are_declared_once():
    from sporep_hpc import jobs, kpoints, operators

    by_name = {p.name: p for p in ALL}
    assert by_name["operator"].choices is operators.OPERATORS
    assert by_name["kgrid_rounding"].choices is kpoints.ROUNDING_MODES
    assert jobs.SCHEDULES is by_name["schedule"].choices
