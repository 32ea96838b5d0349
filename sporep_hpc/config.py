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
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ._validation import check_choice, check_interval
from .errors import ParameterError
from .huckel import K_DEFAULT
from .huckel import check_parameters as check_huckel
from .kpoints import MAX_KPOINTS

OPERATORS = ("kinetic", "overlap", "huckel")
KGRID_ROUNDING = ("ceil", "round")
SCHEDULES = ("dynamic", "static")
RESTART_POLICIES = ("auto", "fresh")

#: Volume per atom of the most open elemental crystal, rounded up (bcc Cs: 117 Å³), Å³.
MAX_ATOMIC_VOLUME = 120.0
#: Smallest kdensity, 1/Å: below it even a 1-atom cell of MAX_ATOMIC_VOLUME needs more than
#: MAX_KPOINTS grid points ((2π)³ / (V kdensity³) points), so every structure would fail (about 0.0127).
KDENSITY_MIN = 2.0 * math.pi / (MAX_ATOMIC_VOLUME * MAX_KPOINTS) ** (1.0 / 3.0)
#: Smallest lattice-sum threshold: 10⁻³⁰ of the largest primitive overlap is far below what double
#: precision resolves, and the screening radius (hence the memory) grows as √ln(1/precision).
PRECISION_MIN = 1e-30
#: Smallest memory budget per rank, bytes: below it not even the smallest structure fits.
MIN_MEMORY = 16 * 2**20
#: Units of `parse_bytes`: SI (kB, MB, GB, TB) and binary (K, M, G, T, KiB, MiB, GiB, TiB, as SLURM's --mem).
BYTE_UNITS = {
    "": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


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
        Monkhorst-Pack spacing, Å⁻¹, in [KDENSITY_MIN, inf) (KDENSITY_MIN ≈ 0.0127: a smaller spacing
        gives even a 1-atom cell more than MAX_KPOINTS points).
    kgrid_rounding : str
        n_i = ceil(|b_i| / kdensity) (``"ceil"``, guarantees the spacing) or round (``"round"``,
        the original study's operator grids); DESIGN §3.
    exp_to_discard : float
        Primitives with smaller exponents are dropped, Bohr⁻², in [0, inf).
    precision : float
        Lattice-sum truncation threshold, in [PRECISION_MIN, 1e-3] (the operators refuse larger
        values; smaller ones only widen the lattice sums far beyond double precision).
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
        check_interval("kdensity", self.kdensity, KDENSITY_MIN, None, closed="left", unit="1/Å")
        check_choice("kgrid_rounding", self.kgrid_rounding, KGRID_ROUNDING)
        check_interval("exp_to_discard", self.exp_to_discard, 0.0, None, closed="left", unit="1/Bohr^2")
        check_interval("precision", self.precision, PRECISION_MIN, 1e-3)
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
    max_memory : int, str or None
        Memory budget per rank, bytes (a number, or text with a unit: ``"4GiB"``, ``"500MB"``, see
        `parse_bytes`), at least MIN_MEMORY; stored as int. A structure whose estimate
        (`sporep_hpc.parallel.plan.memory_estimate`) exceeds it fails with its own reason, and
        parameters that exceed it for every structure are refused before any work. None: the
        memory available on the node (`available_memory`) divided by the ranks on that node
        (`default_max_memory`).
    """

    schedule: str = "dynamic"
    threads: int | None = None
    restart: str = "auto"
    progress_interval: float = 10.0
    keep_journal: bool = False
    split_kpoints: bool = True
    max_memory: int | str | None = None

    def __post_init__(self):
        check_choice("schedule", self.schedule, SCHEDULES)
        if self.threads is not None:
            check_interval("threads", self.threads, 1, None, closed="left", integer=True)
        check_choice("restart", self.restart, RESTART_POLICIES)
        check_interval("progress_interval", self.progress_interval, 0.0, None, closed="neither", unit="s")
        for name in ("keep_journal", "split_kpoints"):
            if not isinstance(getattr(self, name), bool):
                raise ParameterError(f"{name} must be true or false; got {getattr(self, name)!r}")
        if self.max_memory is not None:
            value = parse_bytes("max_memory", self.max_memory)
            if value < MIN_MEMORY:
                raise ParameterError(
                    f"max_memory must be at least {format_bytes(MIN_MEMORY)}; got {self.max_memory!r}"
                )
            object.__setattr__(self, "max_memory", value)


@dataclass(frozen=True)
class RunConfig:
    """Everything `sporep-hpc run` needs besides the inputs and the output path."""

    parameters: RunParameters = field(default_factory=RunParameters)
    execution: ExecutionOptions = field(default_factory=ExecutionOptions)


def parse_bytes(name: str, value: object) -> int:
    """A size in bytes from an int, a float with an integral value or text such as ``"4GiB"``,
    ``"1.5 GB"``, ``"800M"`` or ``"1e9"`` (units: BYTE_UNITS, case-insensitive).

    Raises
    ------
    ParameterError
        Naming `name`, for anything else (negative, not finite, unknown unit).
    """
    if isinstance(value, bool):
        raise ParameterError(f"{name} must be a size in bytes (e.g. 4GiB, 500MB, 1e9); got {value!r}")
    if isinstance(value, (int, float)):
        number, unit = value, ""
    else:
        m = _SIZE.match(str(value))
        if m is None or m.group(2).lower() not in BYTE_UNITS:
            units = ", ".join(u for u in BYTE_UNITS if u)
            raise ParameterError(
                f"{name} must be a size in bytes, optionally with a unit ({units}); got {value!r}"
            )
        number, unit = float(m.group(1)), m.group(2).lower()
    size = number * BYTE_UNITS[unit]
    if not math.isfinite(size) or size < 0 or size > 2**62:
        raise ParameterError(f"{name} must be a size in [0, 2^62] bytes; got {value!r}")
    return int(size)


def format_bytes(n: float) -> str:
    """``"1.5 GiB"``-style text of a byte count (for messages)."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def available_memory() -> int | None:
    """Memory this process may still use on its node, bytes: ``MemAvailable`` of /proc/meminfo, lowered
    to the room left under a cgroup limit (SLURM jobs, containers: cgroup v2 ``memory.max`` minus
    ``memory.current``, or v1 ``memory.limit_in_bytes`` minus ``memory.usage_in_bytes``); None when
    neither can be read (not Linux)."""

    def read_int(path: str) -> int | None:
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    found = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit, used in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        cap, now = read_int(limit), read_int(used)
        if cap is not None and now is not None and cap < 2**60:
            found.append(max(0, cap - now))
    return min(found) if found else None


def default_max_memory(ranks_on_node: int) -> int | None:
    """The default `ExecutionOptions.max_memory`: `available_memory` divided by the ranks sharing the
    node (at least MIN_MEMORY); None when the available memory is unknown (no budget is checked)."""
    check_interval("ranks_on_node", ranks_on_node, 1, None, integer=True)
    total = available_memory()
    return None if total is None else max(MIN_MEMORY, total // ranks_on_node)


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
    "KDENSITY_MIN",
    "MAX_KPOINTS",
    "ExecutionOptions",
    "RunConfig",
    "RunParameters",
    "available_memory",
    "build_config",
    "default_max_memory",
    "diff_parameters",
    "format_bytes",
    "load_toml",
    "parse_bytes",
]
