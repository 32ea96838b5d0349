"""Run parameters: frozen dataclasses, TOML loading, JSON for the store.

Two groups, kept apart on purpose:

- `RunParameters` decide *what* is computed. They are stored as JSON in the store's
  root attribute ``parameters`` and in the journal; a restart with different values is
  refused (unless ``--restart fresh``).
- `ExecutionOptions` decide *how* (schedule, threads, restart policy): they never change
  the result and are not compared on restart.

A TOML file holds either flat keys or the tables ``[parameters]`` and ``[execution]``;
command-line flags override it. Unknown keys are an error naming the valid ones.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ._validation import check_choice, check_interval
from .errors import ParameterError
from .huckel import K_DEFAULT
from .huckel import check_parameters as check_huckel

OPERATORS = ("kinetic", "overlap", "huckel")
KGRID_ROUNDING = ("ceil", "round")
SCHEDULES = ("dynamic", "static")
RESTART_POLICIES = ("auto", "fresh")


@dataclass(frozen=True)
class RunParameters:
    """What a run computes (stored with the results; compared on restart).

    Attributes
    ----------
    operator : str
        Operator whose generalised spectrum is computed: ``"kinetic"``, ``"huckel"`` (extended Hückel,
        DESIGN.md §8.3) or ``"overlap"``.
    basis : str
        Gaussian basis name (``"ano-valence"`` or any basis_set_exchange name).
    kdensity : float
        Monkhorst-Pack spacing, Å⁻¹, in (0, inf).
    kgrid_rounding : str
        n_i = ceil(|b_i| / kdensity) (``"ceil"``, guarantees the spacing) or round (``"round"``,
        the original study's operator grids); DESIGN §3.
    exp_to_discard : float
        Primitives with smaller exponents are dropped, Bohr⁻², in [0, inf).
    precision : float
        Lattice-sum truncation threshold, in (0, 1).
    lindep : float
        Overlap eigenvalues below this are dropped (canonical orthogonalisation), in (0, 1).
    fingerprints : tuple of str
        Fingerprint preset names (sporep_hpc.fingerprints.PRESETS); at least one.
    max_atoms : int
        Structures with more atoms are marked failed, in [1, inf).
    min_distance : float
        Structures with two atoms closer than this are marked failed, Å, in [0, inf).
    huckel_k : float
        Wolfsberg-Helmholz constant K of the ``"huckel"`` operator, in (1, inf); default 1.75.
    huckel_weighted : bool
        ``"huckel"`` with the weighted formula of Ammeter et al. (1978) instead of the plain K.
    """

    operator: str = "kinetic"
    basis: str = "ano-valence"
    kdensity: float = 0.15
    kgrid_rounding: str = "ceil"
    exp_to_discard: float = 0.1
    precision: float = 1e-12
    lindep: float = 1e-8
    fingerprints: tuple[str, ...] = ("kinetic",)
    max_atoms: int = 200
    min_distance: float = 0.5
    huckel_k: float = K_DEFAULT
    huckel_weighted: bool = False

    def __post_init__(self):
        check_choice("operator", self.operator, OPERATORS)
        if not isinstance(self.basis, str) or not self.basis:
            raise ParameterError(f"basis must be a non-empty basis name; got {self.basis!r}")
        check_interval("kdensity", self.kdensity, 0.0, None, closed="neither", unit="1/Å")
        check_choice("kgrid_rounding", self.kgrid_rounding, KGRID_ROUNDING)
        check_interval("exp_to_discard", self.exp_to_discard, 0.0, None, closed="left", unit="1/Bohr^2")
        check_interval("precision", self.precision, 0.0, 1.0, closed="neither")
        check_interval("lindep", self.lindep, 0.0, 1.0, closed="neither")
        check_interval("max_atoms", self.max_atoms, 1, None, closed="left", integer=True)
        check_interval("min_distance", self.min_distance, 0.0, None, closed="left", unit="Å")
        check_huckel(self.huckel_k, self.huckel_weighted)
        names = self.fingerprints
        if isinstance(names, str):
            names = tuple(n.strip() for n in names.split(",") if n.strip())
        names = tuple(names)
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ParameterError(
                f"fingerprints must be a non-empty list of preset names; got {self.fingerprints!r}"
            )
        if len(set(names)) != len(names):
            raise ParameterError(f"fingerprints must not repeat a name; got {list(names)}")
        object.__setattr__(self, "fingerprints", names)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys) of these parameters."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunParameters:
        """Inverse of `to_json`."""
        data = json.loads(text)
        data["fingerprints"] = tuple(data["fingerprints"])
        return cls(**data)


@dataclass(frozen=True)
class ExecutionOptions:
    """How a run is executed; never changes its results.

    Attributes
    ----------
    schedule : str
        ``"dynamic"`` (RMA counter, self-scheduling) or ``"static"`` (greedy LPT).
    threads : int or None
        OpenMP/BLAS threads per rank; None: from ``OMP_NUM_THREADS`` or cores / ranks per node.
    restart : str
        ``"auto"`` resumes from a journal made with the same parameters; ``"fresh"`` discards it.
    progress_interval : float
        Seconds between progress lines on rank 0, in (0, inf).
    split_kpoints : bool
        Split a structure costing more than one rank's share into k-point chunks (combined in
        k order afterwards; the values agree with an unsplit run to rounding, well below 1e-12 eV).
    keep_journal : bool
        Keep ``<store>.journal/`` after a successful assembly (default: removed).
    """

    schedule: str = "dynamic"
    threads: int | None = None
    restart: str = "auto"
    progress_interval: float = 10.0
    keep_journal: bool = False
    split_kpoints: bool = True

    def __post_init__(self):
        check_choice("schedule", self.schedule, SCHEDULES)
        if self.threads is not None:
            check_interval("threads", self.threads, 1, None, closed="left", integer=True)
        check_choice("restart", self.restart, RESTART_POLICIES)
        check_interval("progress_interval", self.progress_interval, 0.0, None, closed="neither", unit="s")
        for name in ("keep_journal", "split_kpoints"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(f"{name} must be true or false; got {getattr(self, name)!r}")


@dataclass(frozen=True)
class RunConfig:
    """Everything `sporep-hpc run` needs besides the inputs and the output path."""

    parameters: RunParameters = field(default_factory=RunParameters)
    execution: ExecutionOptions = field(default_factory=ExecutionOptions)


_PARAM_KEYS = tuple(f.name for f in fields(RunParameters))
_EXEC_KEYS = tuple(f.name for f in fields(ExecutionOptions))


def _toml_module():
    try:
        import tomllib  # Python >= 3.11
    except ModuleNotFoundError:
        try:
            import tomli as tomllib  # the same parser, for Python 3.10
        except ModuleNotFoundError as exc:
            raise ParameterError("reading a TOML config needs Python >= 3.11 or the tomli package") from exc
    return tomllib


def load_toml(path: str | Path) -> dict[str, Any]:
    """Flat key → value mapping from a TOML run file (``[parameters]``/``[execution]`` tables or flat)."""
    tomllib = _toml_module()
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ParameterError(f"config file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError(f"config file {path} is not valid TOML: {exc}") from exc
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("parameters", "execution") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def build_config(
    file_values: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
) -> RunConfig:
    """A validated RunConfig from TOML values, overridden by (non-None) command-line values.

    Raises
    ------
    ParameterError
        For an unknown key (the message lists the valid keys) or a value out of range.
    """
    merged: dict[str, Any] = dict(file_values or {})
    merged.update({k: v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(set(merged) - set(_PARAM_KEYS) - set(_EXEC_KEYS))
    if unknown:
        valid = ", ".join(sorted(_PARAM_KEYS + _EXEC_KEYS))
        raise ParameterError(f"unknown run setting(s) {', '.join(unknown)}; valid: {valid}")
    try:
        params = RunParameters(**{k: merged[k] for k in _PARAM_KEYS if k in merged})
        execution = ExecutionOptions(**{k: merged[k] for k in _EXEC_KEYS if k in merged})
    except TypeError as exc:  # e.g. a list where a number is expected
        raise ParameterError(str(exc)) from exc
    return RunConfig(params, execution)


def diff_parameters(old: RunParameters, new: RunParameters) -> list[str]:
    """Human-readable list ``name: old -> new`` of the parameters that differ."""
    a, b = asdict(old), asdict(new)
    return [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b[k]]


__all__ = [
    "ExecutionOptions",
    "RunConfig",
    "RunParameters",
    "build_config",
    "diff_parameters",
    "load_toml",
]
