"""Run parameters: frozen dataclasses, TOML loading, JSON for the store.

Two groups, kept apart on purpose:

- `RunParameters` decide *what* is computed. They are stored as JSON in the store's
  root attribute ``parameters`` and in the journal; a restart with different values is
  refused (unless ``--restart fresh``).
- `ExecutionOptions` decide *how* (schedule, threads, restart policy): they never change
  the result and are not compared on restart.

Each setting is declared once (`sporep_hpc.params.Param`: type, default, range or choices, unit, help),
beside the code that uses it, and listed here in `RUN_PARAMETERS` and `EXECUTION_OPTIONS`: the
dataclasses' checks, the options of ``sporep-hpc run``, the TOML keys and the parameter diffs all come
from these two tables.

A TOML file holds either flat keys or the tables ``[parameters]`` and ``[execution]``;
command-line flags override it. Unknown keys are an error naming the valid ones.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ._validation import check_interval
from .bandfiles import ALLOW_UNCONVERGED
from .basis import BASIS, EXP_TO_DISCARD
from .errors import ParameterError
from .huckel import HUCKEL_K, HUCKEL_WEIGHTED
from .kpoints import KDENSITY, KDENSITY_MIN, KGRID_ROUNDING, MAX_ATOMIC_VOLUME, MAX_KPOINTS, VACUUM_KPOINTS
from .operators import LINDEP, OPERATOR, PRECISION
from .params import Param, diff_texts
from .structures import KEEP_CELL, MAX_ATOMS, MIN_DISTANCE

#: Schedules of `sporep_hpc.parallel.driver` (declared here, below `parallel/`, so that the run's
#: configuration and `sporep_hpc.jobs` can offer them without importing MPI code).
SCHEDULES = ("dynamic", "static")
RESTART_POLICIES = ("auto", "fresh")
#: Distances of `sporep_hpc.analysis.similarity` and `neighbours` (declared here, below analysis/, so that
#: `sporep_hpc.jobs` can offer them, as SCHEDULES).
METRICS = ("euclidean", "cosine", "tanimoto", "wasserstein")
#: What a multi-image structure file (an ASE trajectory, a pw.x output) gives: its last image or every one.
#: Declared here, below `sporep_hpc.inputs` (which reads the files), as SCHEDULES is for parallel/.
IMAGE_CHOICES = ("last", "all")
IMAGES = Param("images", "last", "multi-image files (ASE trajectories, pw.x and VASP outputs): the last "
               "image, or every image with ids <stem>@<i>", kind=str, choices=IMAGE_CHOICES)

#: Smallest memory budget per rank, bytes: below it not even the smallest structure fits.
MIN_MEMORY = 16 * 2**20
#: Units of `parse_bytes`: SI (kB, MB, GB, TB) and binary (K, M, G, T, KiB, MiB, GiB, TiB, as SLURM's --mem).
BYTE_UNITS = {
    "": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")


def _fingerprint_names(value: Any) -> tuple[str, ...]:
    """Preset names from a tuple/list or comma-separated text: non-empty, no repeats."""
    names = value
    if isinstance(names, str):
        names = tuple(n.strip() for n in names.split(",") if n.strip())
    try:
        names = tuple(names)
    except TypeError:
        names = ()
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ParameterError(f"fingerprints must be a non-empty list of preset names; got {value!r}")
    if len(set(names)) != len(names):
        raise ParameterError(f"fingerprints must not repeat a name; got {list(names)}")
    return names


def _memory_budget(value: Any) -> int:
    size = parse_bytes("max_memory", value)
    if size < MIN_MEMORY:
        raise ParameterError(f"max_memory must be at least {format_bytes(MIN_MEMORY)}; got {value!r}")
    return size


FINGERPRINTS = Param("fingerprints", ("kinetic",), "comma-separated fingerprint presets", kind=str,
                     parse=_fingerprint_names, metavar="NAME[,NAME...]")

#: What a run computes, in the order of `RunParameters`' fields (stored with the results).
RUN_PARAMETERS: tuple[Param, ...] = (
    OPERATOR, BASIS, KDENSITY, KGRID_ROUNDING, VACUUM_KPOINTS, EXP_TO_DISCARD, PRECISION, LINDEP,
    FINGERPRINTS, MAX_ATOMS, MIN_DISTANCE, HUCKEL_K, HUCKEL_WEIGHTED, IMAGES, ALLOW_UNCONVERGED, KEEP_CELL,
)

#: Run parameters that choose which inputs are read from files (not how anything is computed).
INPUT_PARAMETERS = (IMAGES.name, ALLOW_UNCONVERGED.name)

#: Run parameters that change the spectra, hence the fingerprints (all but the fingerprint presets, which
#: are compared through their specifications, the limits deciding which structures are computed, and the
#: input choices): a classification model refuses a store made with other values.
SPECTRUM_PARAMETERS = tuple(
    p.name for p in RUN_PARAMETERS
    if p.name not in (FINGERPRINTS.name, MAX_ATOMS.name, MIN_DISTANCE.name, *INPUT_PARAMETERS)
)

#: How a run is executed, in the order of `ExecutionOptions`' fields (never changes its results).
EXECUTION_OPTIONS: tuple[Param, ...] = (
    Param("schedule", "static", "static (greedy LPT on the cost model: 1.88x at 2 ranks on 314 mixed "
          "structures) or dynamic (RMA counter: 1.77x there; for cost models far off or heterogeneous nodes)",
          kind=str,
          choices=SCHEDULES),
    Param("threads", None, "threads per rank (default: OMP_NUM_THREADS, else cores / ranks per node)",
          kind=int, low=1, closed="left", optional=True),
    Param("restart", "auto", "auto: resume from the journal (nothing to do if the store is up to date); "
          "fresh: recompute, replacing the journal and the store", kind=str, choices=RESTART_POLICIES),
    Param("progress_interval", 10.0, "seconds between progress lines", low=0.0, closed="neither", unit="s"),
    Param("journal_interval", 10.0, "seconds of computation a rank buffers before writing them to its "
          "journal: what a killed rank may lose besides its current task (0: write after every task)",
          low=0.0, closed="left", unit="s"),
    Param("keep_journal", False, "keep <store>.journal/ after a successful assembly", kind=bool),
    Param("split_kpoints", True, "never split a big structure into k-point chunks", kind=bool,
          flag="--no-split"),
    Param("max_memory", None, "memory budget per rank, bytes or with a unit (4GiB, 500MB); a structure "
          "estimated to need more fails, parameters too big for any structure are refused (default: the "
          "node's available memory / ranks on the node)", kind=str, optional=True, parse=_memory_budget,
          metavar="SIZE"),
)


_EXEC = {p.name: p for p in EXECUTION_OPTIONS}


def _check_fields(instance: Any, table: tuple[Param, ...]) -> None:
    """Check and normalise every field of a frozen dataclass with its declaration."""
    for p in table:
        object.__setattr__(instance, p.name, p.check(getattr(instance, p.name)))


@dataclass(frozen=True)
class RunParameters:
    """What a run computes (stored with the results; compared on restart).

    One field per declaration of `RUN_PARAMETERS`, in that order; the types, ranges, choices and
    units are those of the declarations (``sporep-hpc run --help`` lists them).

    Attributes
    ----------
    operator : str
        Operator whose generalised spectrum is computed (`sporep_hpc.operators.OPERATOR`; ``"huckel"``:
        extended Hückel, DESIGN.md §8.3).
    basis : str
        Gaussian basis name (``"ano-valence"`` or any basis_set_exchange name).
    kdensity : float
        Monkhorst-Pack spacing, Å⁻¹ (`sporep_hpc.kpoints.KDENSITY`: at least KDENSITY_MIN ≈ 0.0127, below
        which even a 1-atom cell gets more than MAX_KPOINTS points).
    kgrid_rounding : str
        n_i = ceil(|b_i| / kdensity) (``"ceil"``) or round (``"round"``, the original study's grids).
    vacuum_kpoints : str
        ``"gamma"``: n_i = 1 along lattice directions with a vacuum gap at least
        `sporep_hpc.pipeline.vacuum_gap` wide (DESIGN.md §8.4); ``"full"``: the k-spacing everywhere.
    exp_to_discard : float
        Primitives with smaller exponents are dropped, Bohr⁻².
    precision : float
        Lattice-sum truncation threshold (`sporep_hpc.operators.PRECISION`).
    lindep : float
        Overlap eigenvalues below this are dropped (canonical orthogonalisation).
    fingerprints : tuple of str
        Fingerprint preset names (sporep_hpc.fingerprints.PRESETS); at least one, no repeats.
    max_atoms : int
        Structures with more atoms are marked failed.
    min_distance : float
        Structures with two atoms closer than this are marked failed, Å.
    huckel_k : float
        Wolfsberg-Helmholz constant K of the ``"huckel"`` operator.
    huckel_weighted : bool
        ``"huckel"`` with the weighted formula of Ammeter et al. (1978) instead of the plain K.
    images : str
        ``"last"``: a multi-image file (trajectory, pw.x output) is its last image; ``"all"``: every image,
        ids ``<stem>@<i>`` (`IMAGES`).
    allow_unconverged : bool
        Use the bands of a Quantum ESPRESSO XML file whose SCF did not converge (else a failed row
        "SCF not converged"; `sporep_hpc.bandfiles.ALLOW_UNCONVERGED`).
    keep_cell : bool
        Compute each structure in the cell it is given in; by default it is reduced to its standardized
        primitive cell (`sporep_hpc.structures.symmetry_of`) and band files' fingerprints are per
        primitive cell (`sporep_hpc.pipeline.computed_structure`).
    """

    operator: str = OPERATOR.default
    basis: str = BASIS.default
    kdensity: float = KDENSITY.default
    kgrid_rounding: str = KGRID_ROUNDING.default
    vacuum_kpoints: str = VACUUM_KPOINTS.default
    exp_to_discard: float = EXP_TO_DISCARD.default
    precision: float = PRECISION.default
    lindep: float = LINDEP.default
    fingerprints: tuple[str, ...] = FINGERPRINTS.default
    max_atoms: int = MAX_ATOMS.default
    min_distance: float = MIN_DISTANCE.default
    huckel_k: float = HUCKEL_K.default
    huckel_weighted: bool = HUCKEL_WEIGHTED.default
    images: str = IMAGES.default
    allow_unconverged: bool = ALLOW_UNCONVERGED.default
    keep_cell: bool = KEEP_CELL.default

    def __post_init__(self):
        _check_fields(self, RUN_PARAMETERS)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys) of these parameters."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunParameters:
        """Inverse of `to_json`."""
        return cls(**json.loads(text))


@dataclass(frozen=True)
class ExecutionOptions:
    """How a run is executed; never changes its results.

    Attributes
    ----------
    schedule : str
        ``"static"`` (greedy LPT on the cost model; the default: no RMA progress thread on rank 0) or
        ``"dynamic"`` (RMA counter, self-scheduling).
    threads : int or None
        OpenMP/BLAS threads per rank; None: from ``OMP_NUM_THREADS`` or cores / ranks per node.
    restart : str
        ``"auto"`` resumes from a journal made with the same parameters; ``"fresh"`` discards it.
    progress_interval : float
        Seconds between progress lines on rank 0, in (0, inf).
    journal_interval : float
        Seconds of computation each rank buffers before writing a journal batch, in [0, inf): what
        a killed rank may lose besides its current task (`sporep_hpc.parallel.journal`).
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

    schedule: str = _EXEC["schedule"].default
    threads: int | None = _EXEC["threads"].default
    restart: str = _EXEC["restart"].default
    progress_interval: float = _EXEC["progress_interval"].default
    journal_interval: float = _EXEC["journal_interval"].default
    keep_journal: bool = _EXEC["keep_journal"].default
    split_kpoints: bool = _EXEC["split_kpoints"].default
    max_memory: int | str | None = _EXEC["max_memory"].default

    def __post_init__(self):
        _check_fields(self, EXECUTION_OPTIONS)


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


_PARAM_KEYS = tuple(p.name for p in RUN_PARAMETERS)
_EXEC_KEYS = tuple(p.name for p in EXECUTION_OPTIONS)


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
    """``name: old -> new`` for each parameter that differs (`sporep_hpc.params.differences`)."""
    return diff_texts(asdict(old), asdict(new))


__all__ = [
    "EXECUTION_OPTIONS",
    "INPUT_PARAMETERS",
    "KDENSITY_MIN",
    "MAX_ATOMIC_VOLUME",
    "MAX_KPOINTS",
    "RUN_PARAMETERS",
    "SCHEDULES",
    "SPECTRUM_PARAMETERS",
    "ExecutionOptions",
    "RunConfig",
    "RunParameters",
    "available_memory",
    "build_config",
    "default_max_memory",
    "diff_parameters",
    "diff_texts",
    "format_bytes",
    "load_toml",
    "parse_bytes",
]
