"""SLURM job scripts: templates, checked values, rendering and the plan of a job.

The templates live once, as package data in ``sporep_hpc/jobs_templates/<name>.sbatch``;
``jobs/`` in the repository holds copies rendered with example values by
:func:`write_examples` (``sporep-hpc jobs examples jobs/``), never edited by hand.

Placeholders are ``{{name}}``. A job script must not be a program of its values: every value is
checked before rendering (:class:`JobSpec`, messages give the name, the valid range and the value).
No text value may hold a control character (a newline would end a comment such as the
``# Rendered by:`` provenance and start a command); every value that becomes a shell word is
quoted with :func:`shlex.quote` (file names, the interpreter, each word of ``run_args``), in
comments too, so that what a comment shows can be pasted; values that sbatch parses (``#SBATCH``
lines: job name, partition, account, qos, constraint, memory, time) and the few bare words
(fingerprint, the merge glob) are restricted to a small character set instead. Only ``setup``
lines are shell code by design: they are written as given, one line each.
"""

from __future__ import annotations

import re
import shlex
import sys
import unicodedata
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path

from ._validation import check_choice, check_interval
from .config import METRICS, SCHEDULES
from .errors import ParameterError

TEMPLATES: dict[str, str] = {
    "single-node": "one node: N MPI ranks x T threads over one structure list",
    "multi-node": "several nodes: ranks per node x threads, one structure list, one parallel HDF5 store",
    "array": "job array: task i runs chunk i of a list split by `sporep-hpc split`, one store per chunk",
    "restart": "pre-emptible run: SIGUSR1 before the time limit, checkpoint, requeue, resume from journal",
    "analysis": "merge chunk stores (optional), similarity matrix and clustering, classification",
}
LAUNCHERS = ("srun", "mpirun", "mpiexec")
CHUNK_FORMAT = "chunk-{:04d}.txt"
"""Name of chunk i of a split list; the array template computes the same name in bash."""

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")
_SLURM_WORD = re.compile(r"^[A-Za-z0-9_.,:+=@-]+$")
_JOB_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")
_MEMORY = re.compile(r"^[1-9][0-9]*[KMGT]?$")
_GLOB = re.compile(r"^[A-Za-z0-9_.*?\[\]-]+$")
_IDENT = re.compile(r"^[A-Za-z0-9_.+-]+$")
_SIGNAL_MAX = 65535  # Slurm's --signal accepts at most 65535 s
_OWN_RUN_OPTIONS = ("-o", "--output", "--schedule")

# Shared snippets, so the five templates cannot drift apart.
_THREADS_ENV = """\

# Threads: one OpenMP/BLAS thread per CPU of a rank (ranks x threads = allocated cores, never more).
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"
export OPENBLAS_NUM_THREADS="$OMP_NUM_THREADS" MKL_NUM_THREADS="$OMP_NUM_THREADS"
# Slurm >= 22.05: srun no longer inherits --cpus-per-task from sbatch.
export SRUN_CPUS_PER_TASK="${SLURM_CPUS_PER_TASK:-1}\""""

_READ_LIST = """
# read_list FILE ARRAY: the entries of a structure list (one path, directory or examples:<set> per line;
# blank lines and lines starting with # are skipped).
read_list() {
    local -n _entries=$2
    _entries=()
    local line
    while IFS= read -r line || [[ -n "$line" ]]; do
        line="${line#"${line%%[![:space:]]*}"}"
        line="${line%"${line##*[![:space:]]}"}"
        [[ -z "$line" || "$line" == \\#* ]] && continue
        _entries+=("$line")
    done < "$1"
    if (( ${#_entries[@]} == 0 )); then echo "sporep-hpc: no structures listed in $1" >&2; exit 2; fi
}"""

_EXIT_STATUS = """
# Exit codes of `sporep-hpc run`: 0 done, 4 done with some structures failed (reasons in the store),
# 5 stopped by a signal with the journal consistent (submit again to resume), 2/3/1 errors.
case $rc in
    0) echo "sporep-hpc: done" ;;
    4) echo "sporep-hpc: done; some structures failed, see \\`sporep-hpc info\\`"; rc=0 ;;
    5) echo "sporep-hpc: stopped before the end; submit this script again to resume from the journal" >&2 ;;
    *) echo "sporep-hpc: failed with exit code $rc" >&2 ;;
esac
exit "$rc\""""


def list_templates() -> dict[str, str]:
    """Template names and one-line descriptions."""
    return dict(TEMPLATES)


def template_text(name: str) -> str:
    """The raw text of template `name` (package data ``jobs_templates/<name>.sbatch``)."""
    check_choice("template", name, TEMPLATES)
    return resources.files("sporep_hpc").joinpath("jobs_templates", f"{name}.sbatch").read_text()


def parse_time(value: str) -> int:
    """Seconds of a Slurm time limit.

    Accepted formats (as ``sbatch --time``): ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``,
    ASCII digits only and nothing around them (the text goes on an ``#SBATCH`` line as given).

    Raises
    ------
    ParameterError
        For any other string, zero, or minutes/seconds >= 60, hours >= 24 after a day count.
    """
    # ASCII digits only, nothing around them: sbatch reads this value, not Python's int().
    text = str(value)
    match = re.fullmatch(r"(?:([0-9]+)-)?([0-9]+)(?::([0-9]+))?(?::([0-9]+))?", text)
    bad = ParameterError(
        f"time must be a Slurm time limit (M, M:S, H:M:S, D-H, D-H:M or D-H:M:S, minutes and seconds < 60, "
        f"hours < 24 after D-) greater than 0; got {value!r}"
    )
    if match is None:
        raise bad
    days, first, second, third = match.groups()
    if days is not None:
        hours, minutes, seconds = int(first), int(second or 0), int(third or 0)
        limits_ok = hours < 24 and minutes < 60 and seconds < 60
        total = ((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds
    elif third is not None:
        hours, minutes, seconds = int(first), int(second), int(third)
        limits_ok = minutes < 60 and seconds < 60
        total = (hours * 60 + minutes) * 60 + seconds
    else:
        minutes, seconds = int(first), int(second or 0)
        limits_ok = second is None or seconds < 60
        total = minutes * 60 + seconds
    if not limits_ok or total <= 0:
        raise bad
    return total


def check_text(name: str, value: str) -> None:
    """Raise ParameterError if `value` holds a control character (Unicode category Cc: C0 such as
    newline, carriage return, tab, NUL and escape; DEL; C1): in a job script a newline ends a comment
    or a line and starts a command."""
    bad = sorted({c for c in value if unicodedata.category(c) == "Cc"})
    if bad:
        shown = " ".join(f"U+{ord(c):04X}" for c in bad)
        raise ParameterError(
            f"{name} must be text without control characters (newline, carriage return, tab, NUL, ...; "
            f"found {shown}); got {value!r}"
        )


def _check_word(name: str, value: str | None, pattern: re.Pattern, what: str) -> None:
    """Values sbatch parses (``#SBATCH`` lines) or bash sees bare: `pattern` is their whole alphabet."""
    if value is not None and (not isinstance(value, str) or not pattern.fullmatch(value)):
        raise ParameterError(f"{name} must be {what}; got {value!r}")


@dataclass(frozen=True)
class JobSpec:
    """The values of one job script, checked in ``__post_init__``.

    Paths are kept as given; :func:`render` resolves them to absolute paths (a job runs in the
    directory it was submitted from, which may differ from where it was rendered).
    Checks that touch the file system (lists and chunks exist) are in :func:`check_paths`.
    """

    template: str
    """One of :data:`TEMPLATES`."""
    structures: str | None = None
    """Structure list: one file, directory or ``examples:<set>`` per line (not used by analysis)."""
    output: str = "store.h5"
    """The store to write (array: the directory of the chunk stores ``chunk-NNNN.h5``)."""
    ranks: int = 1
    """MPI ranks in all (array: per array task)."""
    nodes: int = 1
    """Nodes (single-node: must be 1; multi-node: ranks must be a multiple of it)."""
    threads: int = 1
    """OpenMP/BLAS threads per rank (``--cpus-per-task``)."""
    time: str = "01:00:00"
    """Slurm time limit (array: per task)."""
    job_name: str = "sporep"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    mem_per_cpu: str | None = None
    """Memory per CPU as Slurm writes it (``2000``, ``4G``)."""
    cores_per_node: int | None = None
    """If given, ranks per node x threads must fit in it."""
    launcher: str = "srun"
    python: str = field(default_factory=lambda: sys.executable)
    """The Python of the environment where sporep-hpc is installed, as seen from the compute nodes."""
    setup: tuple[str, ...] = ()
    """Shell lines run before the job (``module load ...``, ``source .../activate``). The only values
    written as shell code, as given (one line each: no control characters)."""
    schedule: str = "dynamic"
    """``sporep-hpc run --schedule``: dynamic (RMA task counter; rank 0 keeps it responsive with a progress
    thread, which needs MPI_THREAD_MULTIPLE: the run warns when it is missing) or static (cost-model LPT, no
    one-sided communication; use it when the run warns or ranks wait for tasks)."""
    run_args: tuple[str, ...] = ()
    """Extra arguments of ``sporep-hpc run`` (``("--config", "my run.toml")``), one word each: each reaches
    ``run`` as one argument, unchanged (quoted in the script; ``$``, backticks and globs stay literal)."""
    chunks: int | None = None
    """Array: number of chunks (inferred from ``chunk_dir`` when None)."""
    chunk_dir: str | None = None
    """Array: directory of ``chunk-NNNN.txt`` lists (default ``<structures stem>.chunks``)."""
    max_parallel: int | None = None
    """Array: at most this many tasks at once (``--array=0-N%P``)."""
    signal_seconds: int = 300
    """Restart: SIGUSR1 this many seconds before the time limit."""
    max_restarts: int = 10
    """Restart: requeue at most this many times."""
    store: str | None = None
    """Analysis: the (merged) store to analyse."""
    merge_dir: str | None = None
    """Analysis: merge ``merge_dir/merge_pattern`` into ``store`` first (skipped when ``store`` exists)."""
    merge_pattern: str = "chunk-*.h5"
    manifest: str | None = None
    """Analysis: split.json of `sporep-hpc split`: the merge checks completeness, keeps the list's order."""
    fingerprint: str = "kinetic"
    metric: str = "cosine"
    labels: str | None = None
    """Analysis: labels CSV for the classification step (skipped when None)."""
    plots: str = "figures"

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, str):
                    check_text(f.name, item)
        check_choice("template", self.template, TEMPLATES)
        check_interval("ranks", self.ranks, 1, None, closed="left", integer=True)
        check_interval("nodes", self.nodes, 1, None, closed="left", integer=True)
        check_interval("threads", self.threads, 1, None, closed="left", integer=True)
        _check_word("job_name", self.job_name, _JOB_NAME, "1 to 64 characters from A-Z a-z 0-9 _ . + -")
        for name in ("partition", "account", "qos", "constraint"):
            _check_word(
                name, getattr(self, name), _SLURM_WORD, "a Slurm name from A-Z a-z 0-9 _ . , : + = @ -"
            )
        _check_word("mem_per_cpu", self.mem_per_cpu, _MEMORY, "a positive integer with optional K/M/G/T")
        check_choice("launcher", self.launcher, LAUNCHERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        seconds = parse_time(self.time)
        if not isinstance(self.python, str) or not self.python.strip() or self.python.startswith("-"):
            # a leading "-" would make the interpreter an option of srun/mpirun
            raise ParameterError(
                f"python must be a non-empty command or path not starting with '-'; got {self.python!r}"
            )
        for line in self.setup:
            if not isinstance(line, str):
                raise ParameterError(f"setup must be shell lines (strings); got {line!r}")
        for arg in self.run_args:
            if not isinstance(arg, str):
                raise ParameterError(f"run_args must be strings; got {arg!r}")
            if arg in _OWN_RUN_OPTIONS or arg.startswith(("--output=", "--schedule")):
                raise ParameterError(
                    f"run_args must not set the output or the schedule (use output, schedule); got {arg!r}"
                )
        if self.template == "single-node" and self.nodes != 1:
            raise ParameterError(
                f"nodes must be 1 for template 'single-node' (use 'multi-node'); got {self.nodes}"
            )
        if self.nodes > self.ranks:
            raise ParameterError(f"ranks must be >= nodes ({self.nodes}); got {self.ranks}")
        if self.template == "multi-node" and self.ranks % self.nodes:
            raise ParameterError(
                f"ranks must be a multiple of nodes ({self.nodes}) for 'multi-node'; got {self.ranks}"
            )
        if self.cores_per_node is not None:
            check_interval("cores_per_node", self.cores_per_node, 1, None, closed="left", integer=True)
            need = self.ranks_per_node * self.threads
            if need > self.cores_per_node:
                raise ParameterError(
                    f"ranks per node x threads must be in [1, {self.cores_per_node}] (cores_per_node); "
                    f"got {self.ranks_per_node} x {self.threads} = {need}"
                )
        if self.template != "analysis" and not self.structures:
            raise ParameterError(f"structures (a list file) is required for template {self.template!r}")
        if self.template == "array":
            if self.chunks is not None:
                check_interval("chunks", self.chunks, 1, None, closed="left", integer=True)
            if self.max_parallel is not None:
                check_interval("max_parallel", self.max_parallel, 1, None, closed="left", integer=True)
        if self.template == "restart":
            check_interval("signal_seconds", self.signal_seconds, 60, _SIGNAL_MAX, integer=True, unit="s")
            check_interval("max_restarts", self.max_restarts, 0, None, closed="left", integer=True)
            if seconds <= self.signal_seconds + 60:
                raise ParameterError(
                    f"time must be longer than signal_seconds + 60 s = {self.signal_seconds + 60} s for "
                    f"template 'restart' (the job must have time to work); got {self.time!r} = {seconds} s"
                )
        if self.template == "analysis":
            if not self.store:
                raise ParameterError("store is required for template 'analysis'")
            check_choice("metric", self.metric, METRICS)
            _check_word("fingerprint", self.fingerprint, _IDENT, "a name from A-Z a-z 0-9 _ . + -")
            _check_word(
                "merge_pattern", self.merge_pattern, _GLOB, "a file-name glob from A-Z a-z 0-9 _ . - * ? [ ]"
            )

    @property
    def ranks_per_node(self) -> int:
        """MPI ranks on one node (ceil(ranks / nodes))."""
        return -(-self.ranks // self.nodes)

    @property
    def seconds(self) -> int:
        """The time limit in seconds."""
        return parse_time(self.time)

    @property
    def default_chunk_dir(self) -> str:
        """Where `sporep-hpc split` puts the chunks of `structures` unless told otherwise."""
        stem = Path(self.structures or "structures").with_suffix("")
        return f"{stem}.chunks"

    def command_line(self) -> str:
        """The `sporep-hpc jobs render` command that reproduces this spec."""
        defaults = JobSpec(template=self.template, structures=self.structures, store=self.store)
        args = ["sporep-hpc", "jobs", "render", self.template]
        for f in fields(self):
            if f.name == "template":
                continue
            value = getattr(self, f.name)
            if value == getattr(defaults, f.name) and f.name not in ("structures", "store"):
                continue
            if value is None or value == ():
                continue
            flag = "--" + f.name.replace("_", "-")
            if f.name == "run_args":
                args.append(f"{flag} {shlex.quote(shlex.join(value))}")
            elif isinstance(value, tuple):
                args += [f"{flag} {shlex.quote(v)}" for v in value]
            else:
                args.append(f"{flag} {shlex.quote(str(value))}")
        return " ".join(args)


def read_list(path: str | Path) -> list[str]:
    """Entries of a structure list: one per line, blank lines and ``#`` comments skipped, stripped.

    The same rule as ``read_list`` in the templates' bash.
    """
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ParameterError(
            f"structures must be a readable list file; got {str(path)!r} ({exc.strerror})"
        ) from exc
    entries = [line.strip() for line in text.splitlines()]
    return [e for e in entries if e and not e.startswith("#")]


def chunk_files(chunk_dir: str | Path) -> list[Path]:
    """The chunk lists ``chunk-NNNN.txt`` of a directory, in index order."""
    return sorted(Path(chunk_dir).glob("chunk-[0-9][0-9][0-9][0-9].txt"))


def check_paths(spec: JobSpec) -> JobSpec:
    """Check the files a job needs exist and fill in what can be inferred from them.

    The structure list must exist and name at least one entry; listed paths (not ``examples:``
    sets) must exist relative to the current directory. Array: the chunk lists made by
    `sporep-hpc split` must be there, numbered 0..chunks-1. Analysis: the store (or the
    directory to merge from) and the labels must exist.

    Returns
    -------
    JobSpec
        `spec` with ``chunks`` and ``chunk_dir`` filled in (array), otherwise unchanged.
    """
    if spec.structures:
        entries = read_list(spec.structures)
        if not entries:
            raise ParameterError(f"structures must list at least one entry; {spec.structures!r} lists none")
        missing = [e for e in entries if not e.startswith("examples:") and not Path(e).exists()]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:3]) + (
                f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            )
            raise ParameterError(
                f"structures must list existing paths or examples:<set> (relative to {str(Path.cwd())!r}); "
                f"{len(missing)} of {len(entries)} in {spec.structures!r} do not exist: {shown}"
            )
    if spec.python.startswith("/") and not Path(spec.python).is_file():
        raise ParameterError(f"python must be an existing interpreter; got {spec.python!r}")
    if spec.template == "array":
        chunk_dir = spec.chunk_dir or spec.default_chunk_dir
        chunks = str(spec.chunks or "N")
        split_cmd = shlex.join(["sporep-hpc", "split", spec.structures, "--chunks", chunks, "-o", chunk_dir])
        found = chunk_files(chunk_dir)
        if not found:
            raise ParameterError(
                f"chunk_dir must hold the chunk lists of structures: none in {chunk_dir!r}; "
                f"run `{split_cmd}` first"
            )
        expected = [Path(chunk_dir) / CHUNK_FORMAT.format(i) for i in range(len(found))]
        if found != expected:
            raise ParameterError(
                f"chunk lists in {chunk_dir!r} must be numbered 0..{len(found) - 1} without gaps; "
                f"got {', '.join(p.name for p in found[:5])}...; run `{split_cmd}` again"
            )
        if spec.chunks is not None and spec.chunks != len(found):
            raise ParameterError(
                f"chunks must equal the number of chunk lists in {chunk_dir!r} ({len(found)}); "
                f"got {spec.chunks}; run `{split_cmd}` again"
            )
        spec = replace(spec, chunks=len(found), chunk_dir=chunk_dir)
    if spec.template == "analysis":
        # merge_dir is usually made by the array job this one waits for: it need not exist yet
        if spec.merge_dir is None and not Path(spec.store).is_file():
            raise ParameterError(f"store must be an existing store (or give merge_dir); got {spec.store!r}")
        if spec.manifest is not None and not Path(spec.manifest).is_file():
            raise ParameterError(
                f"manifest must be the split.json of `sporep-hpc split`; got {spec.manifest!r}"
            )
        if spec.labels is not None and not Path(spec.labels).is_file():
            raise ParameterError(f"labels must be an existing CSV file; got {spec.labels!r}")
    return spec


def _absolute(path: str | None, resolve: bool) -> str | None:
    if path is None:
        return None
    return str(Path(path).absolute()) if resolve else path


def _values(spec: JobSpec, script: str, resolve: bool) -> dict[str, str]:
    """Placeholder values of a checked spec; `resolve` makes paths absolute."""
    q = shlex.quote
    structures = _absolute(spec.structures, resolve)
    output = _absolute(spec.output, resolve)
    chunk_dir = _absolute(spec.chunk_dir or spec.default_chunk_dir, resolve) if spec.structures else None
    python = spec.python
    if resolve and ("/" in python and not python.startswith("/")):
        python = str(Path(python).absolute())
    sporep = f"{q(python)} -m mpi4py -m sporep_hpc"
    launch = {
        "srun": "srun --kill-on-bad-exit=1",
        "mpirun": 'mpirun -n "$SLURM_NTASKS"',
        "mpiexec": 'mpiexec -n "$SLURM_NTASKS"',
    }[spec.launcher]
    optional = [
        f"#SBATCH --{flag}={value}"
        for flag, value in (
            ("partition", spec.partition),
            ("account", spec.account),
            ("qos", spec.qos),
            ("constraint", spec.constraint),
            ("mem-per-cpu", spec.mem_per_cpu),
        )
        if value is not None
    ]
    setup = "\n# Environment\n" + "\n".join(spec.setup) if spec.setup else ""
    values = {
        "provenance": f"# Rendered by: {spec.command_line()}",
        "script": q(script),
        "job_name": spec.job_name,
        "ranks": str(spec.ranks),
        "nodes": str(spec.nodes),
        "ranks_per_node": str(spec.ranks_per_node),
        "threads": str(spec.threads),
        "time": spec.time,
        "optional_sbatch": "\n".join(optional),
        "setup": setup,
        "threads_env": _THREADS_ENV,
        "read_list": _READ_LIST,
        "exit_status": _EXIT_STATUS,
        "launch": launch,
        "sporep": sporep,
        "run_args": f" --schedule {q(spec.schedule)}" + "".join(" " + q(a) for a in spec.run_args),
        "structures": q(structures) if structures else "",
        "output": q(output),
        "chunk_dir": q(chunk_dir) if chunk_dir else "",
        "chunks": q(str(spec.chunks if spec.chunks is not None else "N")),
        "last_task": str((spec.chunks or 1) - 1),
        "array_throttle": f"%{spec.max_parallel}" if spec.max_parallel else "",
        "signal_seconds": str(spec.signal_seconds),
        "max_restarts": str(spec.max_restarts),
        "schedule": spec.schedule,
    }
    if spec.template == "analysis":
        store = _absolute(spec.store, resolve)
        merge_step = ""
        if spec.merge_dir is not None:
            merge_dir = _absolute(spec.merge_dir, resolve)
            manifest = f" --manifest {q(_absolute(spec.manifest, resolve))}" if spec.manifest else ""
            merge_step = (
                f"\n# Merge the chunk stores (MPI-parallel) unless a previous attempt already did.\n"
                f"MERGE_DIR={q(merge_dir)}\n"
                f'if [[ -e "$STORE" ]]; then\n'
                f'    echo "sporep-hpc: $STORE exists: not merging again (delete it to redo the merge)"\n'
                f"else\n"
                f"    shopt -s nullglob\n"
                f'    CHUNK_STORES=("$MERGE_DIR"/{spec.merge_pattern})\n'
                f"    shopt -u nullglob\n"
                f"    if (( ${{#CHUNK_STORES[@]}} == 0 )); then\n"
                f'        echo "sporep-hpc: no stores $MERGE_DIR/{spec.merge_pattern} to merge" >&2; exit 2\n'
                f"    fi\n"
                f'    echo "sporep-hpc: merging ${{#CHUNK_STORES[@]}} stores into $STORE"\n'
                f'    {launch} {sporep} merge "${{CHUNK_STORES[@]}}" -o "$STORE"{manifest}\n'
                f"fi\n"
            )
        classify_step = (
            "# (no labels given: classification skipped; render with --labels labels.csv to add it)"
        )
        if spec.labels is not None:
            classify_step = (
                f"\n# Random-forest classification runs on one rank with all of its threads.\n"
                f'echo "sporep-hpc: classification of $STORE"\n'
                f'{q(python)} -m sporep_hpc classify "$STORE" --labels {q(_absolute(spec.labels, resolve))} '
                f'--plots "$PLOTS"'
            )
        values.update(
            store=q(store),
            plots=q(_absolute(spec.plots, resolve)),
            fingerprint=q(spec.fingerprint),
            metric=q(spec.metric),
            merge_comment="merge, " if spec.merge_dir is not None else "",
            merge_step=merge_step,
            classify_step=classify_step,
        )
    return values


def render(spec: JobSpec, *, script: str | None = None, check: bool = True, resolve: bool = True) -> str:
    """The job script of `spec`.

    Parameters
    ----------
    spec : JobSpec
        Checked values.
    script : str, optional
        File name the script will be saved as (quoted in its comments); default ``<template>.sbatch``.
    check : bool
        Run :func:`check_paths` first (lists, chunks, stores exist). Off only for examples.
    resolve : bool
        Write paths as absolute paths (a job may run elsewhere than where it was rendered).

    Returns
    -------
    str
        The script; every placeholder is filled (a leftover one is a bug and raises).
    """
    if script is not None:
        check_text("script", script)
    if check:
        spec = check_paths(spec)
    values = _values(spec, script or f"{spec.template}.sbatch", resolve)
    text = template_text(spec.template)
    missing = sorted(set(_PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise RuntimeError(f"template {spec.template!r} has placeholders without values: {missing}")
    # A placeholder alone on its line that renders empty removes the line.
    text = re.sub(
        r"^\{\{(\w+)\}\}\n",
        lambda m: values[m.group(1)] + "\n" if values[m.group(1)] else "",
        text,
        flags=re.MULTILINE,
    )
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def plan(spec: JobSpec, *, check: bool = True) -> str:
    """A dry-run summary: resources, core-hours requested, inputs, outputs."""
    if check:
        spec = check_paths(spec)
    tasks = (spec.chunks or 1) if spec.template == "array" else 1
    cores = spec.ranks * spec.threads
    core_hours = budget_core_hours(spec)
    python = shlex.quote(spec.python)
    rows = [
        ("template", f"{spec.template}: {TEMPLATES[spec.template]}"),
        (
            "resources",
            f"{spec.nodes} node(s), {spec.ranks} rank(s) ({spec.ranks_per_node} per node) "
            f"x {spec.threads} thread(s) = {cores} cores" + (" per array task" if tasks > 1 else ""),
        ),
        (
            "time limit",
            f"{spec.time} ({spec.seconds / 3600:.2f} h)" + (" per array task" if tasks > 1 else ""),
        ),
        ("budget", f"at most {core_hours:.1f} core-hours" + (f" ({tasks} array tasks)" if tasks > 1 else "")),
        ("launch", f"{spec.launcher} {python} -m mpi4py -m sporep_hpc run --schedule {spec.schedule}"),
    ]
    if spec.structures:
        entries = read_list(spec.structures) if check else []
        rows.append(("structures", f"{spec.structures}" + (f" ({len(entries)} entries)" if check else "")))
    if spec.template == "array":
        sizes = [len(read_list(p)) for p in chunk_files(spec.chunk_dir)] if check else []
        detail = f", {min(sizes)}-{max(sizes)} entries each" if sizes else ""
        throttle = f", at most {spec.max_parallel} at once" if spec.max_parallel else ""
        rows.append(("chunks", f"{spec.chunks} lists in {spec.chunk_dir}{detail}{throttle}"))
        rows.append(("output", f"{spec.output}/chunk-NNNN.h5 (then: sporep-hpc merge ... -o all.h5)"))
    elif spec.template == "analysis":
        if spec.merge_dir:
            rows.append(("merge", f"{spec.merge_dir}/{spec.merge_pattern} -> {spec.store}"))
        rows.append(("similarity", f"{spec.metric} on fingerprint {spec.fingerprint!r} of {spec.store}"))
        rows.append(("classify", f"labels {spec.labels}" if spec.labels else "skipped (no labels)"))
        rows.append(("figures", spec.plots))
    else:
        rows.append(("output", f"{spec.output} (journal {spec.output}.journal/)"))
    if spec.template == "restart":
        rows.append(
            (
                "restart",
                f"SIGUSR1 {spec.signal_seconds} s before the limit, checkpoint, requeue "
                f"(at most {spec.max_restarts} times)",
            )
        )
    if spec.run_args:
        rows.append(("run args", " ".join(shlex.quote(a) for a in spec.run_args)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows) + "\n"


EXAMPLES: dict[str, JobSpec] = {
    "single-node": JobSpec(
        "single-node",
        structures="structures.txt",
        output="store.h5",
        ranks=32,
        threads=4,
        time="12:00:00",
        python="python3",
        job_name="sporep",
    ),
    "multi-node": JobSpec(
        "multi-node",
        structures="structures.txt",
        output="store.h5",
        ranks=512,
        nodes=4,
        threads=1,
        time="1-00:00:00",
        python="python3",
        job_name="sporep",
    ),
    "array": JobSpec(
        "array",
        structures="structures.txt",
        output="chunks-out",
        chunks=16,
        ranks=64,
        threads=2,
        time="06:00:00",
        max_parallel=4,
        python="python3",
        job_name="sporep-array",
    ),
    "restart": JobSpec(
        "restart",
        structures="structures.txt",
        output="store.h5",
        ranks=128,
        nodes=1,
        threads=1,
        time="04:00:00",
        python="python3",
        job_name="sporep-restart",
    ),
    "analysis": JobSpec(
        "analysis",
        store="all.h5",
        merge_dir="chunks-out",
        manifest="structures.chunks/split.json",
        labels="labels.csv",
        ranks=16,
        threads=2,
        time="02:00:00",
        python="python3",
        job_name="sporep-analysis",
    ),
}
"""The example values the copies in ``jobs/`` are rendered with."""


def render_example(name: str) -> str:
    """Template `name` rendered with :data:`EXAMPLES` values (relative paths, no file checks)."""
    check_choice("template", name, TEMPLATES)
    text = render(EXAMPLES[name], script=f"{name}.sbatch", check=False, resolve=False)
    header = (
        "# This copy in jobs/ is generated by `sporep-hpc jobs examples jobs/` from the template in\n"
        "# sporep_hpc/jobs_templates/: do not edit it; render your own with `sporep-hpc jobs render`.\n"
    )
    first, rest = text.split("\n", 1)
    return f"{first}\n{header}{rest}"


def write_examples(directory: str | Path) -> list[Path]:
    """Write every template rendered with example values to ``directory/<name>.sbatch``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in TEMPLATES:
        path = directory / f"{name}.sbatch"
        path.write_text(render_example(name))
        path.chmod(0o755)
        written.append(path)
    return written


def budget_core_hours(spec: JobSpec) -> float:
    """Core-hours a job may use at most: cores x time limit (x array tasks)."""
    tasks = (spec.chunks or 1) if spec.template == "array" else 1
    return spec.ranks * spec.threads * spec.seconds / 3600 * tasks


__all__ = [
    "CHUNK_FORMAT",
    "EXAMPLES",
    "TEMPLATES",
    "JobSpec",
    "budget_core_hours",
    "check_paths",
    "check_text",
    "chunk_files",
    "list_templates",
    "parse_time",
    "plan",
    "read_list",
    "render",
    "render_example",
    "template_text",
    "write_examples",
]
