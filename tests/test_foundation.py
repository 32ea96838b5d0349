"""The package skeleton: CLI entry points, error hierarchy, parameter checks, threads, layering."""

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sporep_hpc
from sporep_hpc._validation import check_choice, check_interval
from sporep_hpc.cli import main
from sporep_hpc.errors import InputError, ParameterError, SporepError, StoreError
from sporep_hpc.threads import resolve_threads, threads_per_rank

PACKAGE = Path(sporep_hpc.__file__).parent

# Layers, lowest first (STYLE.md §2.1): a module may import only from its own layer or below.
LAYERS = [
    {"errors", "_validation", "threads", "_ext", "params", "agreement"},
    {"structures"},
    {"examples"},
    {"kpoints"},
    {"basis", "huckel"},
    {"smearing"},
    {"bands"},
    {"operators"},
    {"fingerprints", "bandfiles"},
    {"store", "config"},
    {"inputs", "pipeline"},
    {"parallel", "jobs"},
    {"analysis", "featurizer"},
    {"plots"},
    {"cli", "__main__", "__init__"},
]
NUMERIC = {"kpoints", "basis", "huckel", "smearing", "bands", "operators", "fingerprints"}


def _layer(name: str) -> int:
    for i, names in enumerate(LAYERS):
        if name in names:
            return i
    raise AssertionError(f"module {name!r} is in no layer: add it to LAYERS in {__file__}")


def _imports(path: Path) -> set[str]:
    """Top-level sporep_hpc modules and third-party roots that `path` imports."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(PACKAGE).parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                mod = node.module or ""
                if mod.startswith("sporep_hpc."):
                    found.add(mod.split(".")[1])
                elif mod == "sporep_hpc":
                    found.update(f"sporep_hpc:{a.name}" for a in node.names)
                else:
                    found.add("ext:" + mod.split(".")[0])
            else:
                base = list(rel[:-1])[: len(rel) - node.level]
                target = [*base, *(node.module or "").split(".")] if node.module else base
                target = [t for t in target if t]
                if target:
                    found.add(target[0])
                else:
                    found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")
                found.add(root[1] if root[0] == "sporep_hpc" and len(root) > 1 else "ext:" + root[0])
    return found


def test_version_and_help():
    out = subprocess.run(
        [sys.executable, "-m", "sporep_hpc", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"sporep-hpc {sporep_hpc.__version__}"
    out = subprocess.run(
        [sys.executable, "-m", "sporep_hpc", "--help"], capture_output=True, text=True, check=True
    )
    assert "exit codes" in out.stdout


def test_unknown_subcommand_exits_2():
    with pytest.raises(SystemExit) as exc:
        main(["no-such-command"])
    assert exc.value.code == 2


def test_exception_hierarchy_and_exit_codes():
    assert issubclass(ParameterError, ValueError)
    for cls, code in [(InputError, 2), (ParameterError, 2), (StoreError, 3), (SporepError, 1)]:
        assert issubclass(cls, SporepError)
        assert cls.exit_code == code


@pytest.mark.parametrize(
    ("value", "kwargs", "ok"),
    [
        (0.1, {"low": 0.0, "high": None, "closed": "neither"}, True),
        (0.0, {"low": 0.0, "high": None, "closed": "neither"}, False),
        (0.0, {"low": 0.0, "high": None, "closed": "left"}, True),
        (float("nan"), {"low": None, "high": None}, False),
        (float("inf"), {"low": 0.0, "high": None}, False),
        (3, {"low": 1, "high": 3, "integer": True}, True),
        (3, {"low": 1, "high": 3, "integer": True, "closed": "left"}, False),
        (2.0, {"low": 1, "high": 3, "integer": True}, False),
        (True, {"low": 0, "high": 1, "integer": True}, False),
        ("1", {"low": 0, "high": 2}, False),
    ],
)
def test_check_interval(value, kwargs, ok):
    low, high = kwargs.pop("low"), kwargs.pop("high")
    if ok:
        check_interval("x", value, low, high, **kwargs)
    else:
        with pytest.raises(ParameterError, match=r"^x must be "):
            check_interval("x", value, low, high, **kwargs)


def test_check_interval_message_names_range_unit_and_value():
    with pytest.raises(ParameterError, match=r"width must be a number in \(0, inf\) eV; got -0.1"):
        check_interval("width", -0.1, 0.0, None, closed="neither", unit="eV")


def test_check_choice():
    check_choice("kind", "a", {"a", "b"})
    with pytest.raises(ParameterError, match="kind must be one of 'a', 'b'; got 'c'"):
        check_choice("kind", "c", {"b", "a"})


def test_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert resolve_threads() == 3
    assert resolve_threads(2) == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "garbage")
    assert resolve_threads() == 1
    with pytest.raises(ParameterError):
        resolve_threads(0)
    assert threads_per_rank(2, cores=8) == 4
    assert threads_per_rank(16, cores=8) == 1


def test_layering_imports_only_downwards():
    """STYLE.md §2.1: no upward import; numerics never import mpi4py, h5py or matplotlib."""
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        top = rel.parts[0].removesuffix(".py")
        if top in ("__init__", "__main__"):
            continue
        mine = _layer(top)
        for dep in _imports(path):
            if dep.startswith("ext:"):
                if top in NUMERIC and dep[4:] in ("mpi4py", "h5py", "matplotlib"):
                    problems.append(f"{rel} imports {dep[4:]}")
                continue
            dep = dep.removeprefix("sporep_hpc:")
            if dep in ("__version__",):
                continue
            if _layer(dep) > mine:
                problems.append(f"{rel} (layer {top}) imports upward from {dep}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("raised", "code"), [(InputError("bad"), 2), (StoreError("gone"), 3), (RuntimeError("bug"), 1)]
)
def test_errors_map_to_exit_codes(monkeypatch, raised, code):
    """SporepError subclasses give their exit code; any other exception 1, with its traceback logged."""
    import sporep_hpc.cli.examples as examples_cli

    def boom(args):
        raise raised

    monkeypatch.setattr(examples_cli, "examples_command", boom)
    assert main(["examples"]) == code


def test_a_closed_stdout_is_not_an_internal_error(tmp_path, make_store):
    """`sporep-hpc info store.h5 | head -1`: the reader goes away mid-output, the command ends quietly."""
    n = 3000  # one line per failure: far more than a pipe buffer
    store = make_store(tmp_path / "s.h5", np.zeros((n, 2)), [0.0, 1.0], failed=range(n))
    command = f"{sys.executable} -m sporep_hpc info {store} --failures {n} | head -1"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.startswith("store ") and "Traceback" not in out.stderr, out.stderr
    assert "internal error" not in out.stderr and out.returncode == 0, out.stderr
