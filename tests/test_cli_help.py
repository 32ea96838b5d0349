"""The command line as a new user meets it (issue 16.4): every subcommand's --help states each default
once (never "(default: None)"), every option has help, every enumeration is an argparse `choices`;
results (the run's summary, the dry-run plan) go to standard output, logs and progress to standard
error; `sporep-hpc examples` lists the sets without building a structure.
"""

import argparse
import subprocess
import sys

import pytest
from _references import structures

from sporep_hpc import jobs
from sporep_hpc.cli import SUBCOMMANDS, build_parser, main
from sporep_hpc.config import EXECUTION_OPTIONS, RUN_PARAMETERS
from sporep_hpc.errors import ParameterError
from sporep_hpc.parallel.plan import COST_SECONDS, PlanEntry
from sporep_hpc.parallel.progress import plan_table

TIMEOUT = 300  # s per command; each takes a few seconds here

#: Bogus value for the enumeration probes below (no valid choice anywhere looks like it).
NOT_A_CHOICE = "no-such-choice-xyz"


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """{"run": parser, ..., "jobs render": parser, ...}: every (nested) subcommand's parser."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[name] = sub
                found.update({f"{name} {k}": v for k, v in _subparsers(sub).items()})
    return found


PARSERS = _subparsers(build_parser())


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """{dest: action} of the options and positionals a user types (not -h, not subcommands)."""
    return {
        a.dest: a for a in parser._actions
        if not isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction))
    }


def test_every_subcommand_is_checked():
    assert set(SUBCOMMANDS) <= set(PARSERS)
    assert {"jobs render", "jobs list", "jobs examples"} <= set(PARSERS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_help_states_each_default_once(name):
    parser = PARSERS[name]
    text = parser.format_help()
    assert "(default: None)" not in text and "default: []" not in text
    formatter = parser._get_formatter()
    for dest, action in _options(parser).items():
        assert action.help, f"{name} {dest}: an option without help"
        shown = formatter._expand_help(action)  # what --help prints for it, defaults added by a formatter
        assert shown.count("(default") <= 1, f"{name} {dest}: {shown!r}"
        assert "None" not in shown, f"{name} {dest}: {shown!r}"


@pytest.mark.parametrize("param", RUN_PARAMETERS + EXECUTION_OPTIONS, ids=lambda p: p.name)
def test_run_enumerations_have_choices(param):
    """A declaration that refuses a value with "must be one of" is an enumeration: `run` (and `split`,
    where it is an option) must offer its values as argparse choices, the checked ones exactly."""
    try:
        param.check(NOT_A_CHOICE)
    except ParameterError as exc:
        enumeration = "must be one of" in str(exc)
    else:
        enumeration = False
    for command in ("run", "split"):
        action = _options(PARSERS[command]).get(param.name)
        if action is None:
            continue
        if enumeration:
            assert action.choices is not None, f"{command} --{param.name}: no choices"
            for value in action.choices:
                assert param.check(value) == value
        else:
            assert action.choices is None or param.choices == tuple(action.choices)


def test_run_options_named_in_the_issue():
    run = _options(PARSERS["run"])
    for name in ("operator", "restart", "schedule", "kgrid_rounding"):
        assert run[name].choices, name
    assert run["keep_journal"].help


def test_jobs_render_enumerations_have_choices():
    """Every JobSpec field refused with "must be one of" has argparse choices with those values."""
    render = _options(PARSERS["jobs render"])
    probed = 0
    for dest, action in render.items():
        if dest not in jobs.JobSpec.__dataclass_fields__ or action.type not in (None, str):
            continue
        if dest == "template":
            values = {"template": NOT_A_CHOICE}
        else:
            values = {"template": "single-node", "structures": "list.txt", dest: NOT_A_CHOICE}
        try:
            jobs.JobSpec(**values)
        except ParameterError as exc:
            if "must be one of" in str(exc):
                probed += 1
                assert action.choices is not None, f"jobs render --{dest}: no choices"
    assert probed >= 3  # template, launcher, schedule (JobSpec leaves metric to the parser's choices)
    assert render["metric"].choices


@pytest.mark.parametrize(("command", "dest"), [
    ("similarity", "metric"), ("similarity", "linkage"), ("neighbours", "metric"), ("classify", "balancing"),
])
def test_analysis_enumerations_have_choices(command, dest):
    assert _options(PARSERS[command])[dest].choices


def test_plan_table_prints_core_seconds():
    """Costs 4e9 and 2e9 cost-model units on two ranks: COST_SECONDS times those, each and in all."""
    entries = [PlanEntry(0, "a", "structure", 2, 10, 5, 4e9), PlanEntry(1, "b", "structure", 1, 5, 5, 2e9)]
    text = plan_table(entries, [4e9, 2e9], n_threads=2)
    a, b = (f"{c * COST_SECONDS:.3g}" for c in (4e9, 2e9))
    assert "core-s" in text.splitlines()[0]  # the column's unit
    assert f" {a} " in text.splitlines()[1] and f" {b} " in text.splitlines()[2]
    assert f"estimated cost {6e9 * COST_SECONDS:.3g} core-s in all" in text
    assert "rank    0" in text and f"{a} core-s" in text and "66.7%" in text


def _sporep(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sporep_hpc", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_dry_run_plan_goes_to_stdout(subprocess_env, tmp_path):
    structures()["si"].to(filename=str(tmp_path / "si.json"))
    r = _sporep(subprocess_env, "run", tmp_path / "si.json", "examples:batio3", "-o", tmp_path / "d.h5",
                "--dry-run")
    assert r.returncode == 0, r.stderr
    plan = r.stdout.splitlines()
    assert "core-s" in plan[0] and len(plan) >= 5 + 3  # header, 5 structures, total, ranks, time
    for sid in ("si", "batio3_cubic", "batio3_rhombohedral"):
        assert any(line.split()[1:2] == [sid] for line in plan), sid
    assert "estimated cost per rank" in r.stdout and "core-s in all" in r.stdout
    assert "batio3" not in r.stderr and "estimated" not in r.stderr and "core-s" not in r.stderr
    assert not (tmp_path / "d.h5").exists()


def test_run_summary_goes_to_stdout_progress_to_stderr(subprocess_env, tmp_path):
    structures()["si"].to(filename=str(tmp_path / "si.json"))
    out = tmp_path / "s.h5"
    r = _sporep(subprocess_env, "run", tmp_path / "si.json", "-o", out, "--kdensity", "0.5")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("run summary") and f"store          {out}" in r.stdout
    assert "progress: 1/1 structures" in r.stderr and "progress" not in r.stdout
    assert "run summary" not in r.stderr and "wall time" not in r.stderr
    r = _sporep(subprocess_env, "run", tmp_path / "si.json", "-o", out, "--kdensity", "0.5")
    assert r.returncode == 0, r.stderr
    assert "UP TO DATE" in r.stdout and "nothing to compute" in r.stderr and "run summary" not in r.stderr


@pytest.fixture
def no_structure_built(monkeypatch):
    """Building any structure of a built-in set (or any pymatgen Structure) fails the test."""
    from pymatgen.core import Structure

    from sporep_hpc.examples import aflow, batio3, cnt

    def boom(*args, **kwargs):
        raise AssertionError("a structure was built")

    for module, name in ((aflow, "_structure"), (batio3, "polymorph"), (cnt, "nanotube")):
        monkeypatch.setattr(module, name, boom)
    monkeypatch.setattr(Structure, "__init__", boom)


def test_examples_lists_the_sets_without_building_them(no_structure_built, capsys):
    from sporep_hpc.examples import aflow, cnt

    assert main(["examples"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if not line.startswith(" ")}
    assert set(lines) == {"cnt", "batio3", "aflow"}
    # sizes from the sources themselves: pymatgen's prototype file, the chiralities, four polymorphs
    assert f" {len(aflow._load())} structures" in lines["aflow"]
    assert f" {len(cnt.chiralities())} structures" in lines["cnt"] and " 4 structures" in lines["batio3"]
    assert main(["examples", "aflow?strukturbericht=A1"]) == 0
    out = capsys.readouterr().out
    assert "aflow_A_cF4_225_a" in out and out.splitlines()[-1].startswith("1 structures")


def test_examples_does_not_import_the_prototype_matcher(subprocess_env):
    """pymatgen.analysis.prototypes loads every prototype with monty when imported (7.5 s here): the
    set is read from its data file without importing it."""
    code = ("import sys; from sporep_hpc.cli import main; assert main(['examples']) == 0; "
            "assert 'pymatgen.analysis.prototypes' not in sys.modules, 'imported'")
    r = subprocess.run([sys.executable, "-c", code], env=subprocess_env, capture_output=True, text=True,
                       timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr
    assert "aflow" in r.stdout
