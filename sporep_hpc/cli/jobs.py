"""`sporep-hpc jobs list|render|examples`: SLURM job scripts from checked values."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from .. import jobs
from ..errors import ParameterError

log = logging.getLogger(__name__)

_DESCRIPTION = """\
SLURM job scripts for sporep-hpc. `render` fills a template with checked values
(ranks >= 1, a Slurm time limit, existing structure list and chunk lists, ...) and
prints the script (or writes it with --script); --dry-run prints the plan instead.

  sporep-hpc jobs list
  sporep-hpc jobs render single-node --structures list.txt --ranks 32 --threads 4 --time 12:00:00 \
      --script run.sbatch
  sporep-hpc split list.txt --chunks 16 -o list.chunks
  sporep-hpc jobs render array --structures list.txt --chunks 16 --ranks 64 --output chunk-stores --dry-run
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `jobs` and its actions."""
    parser = subparsers.add_parser(
        "jobs",
        help="SLURM job scripts (single node, multi-node, array, restart, analysis)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="jobs_action", metavar="ACTION", required=True)

    p_list = actions.add_parser("list", help="the templates and what each is for")
    p_list.set_defaults(run=run_list)

    p_examples = actions.add_parser("examples", help="write every template rendered with example values")
    p_examples.add_argument(
        "directory", help="where to write <template>.sbatch (the repository keeps them in jobs/)"
    )
    p_examples.set_defaults(run=run_examples)

    r = actions.add_parser("render", help="fill a template with checked values")
    r.add_argument(
        "template", choices=sorted(jobs.TEMPLATES), help="the job's template (`sporep-hpc jobs list`)"
    )
    r.add_argument("--script", help="write the script to this file (default: standard output)")
    r.add_argument(
        "--dry-run", action="store_true", help="print the plan (resources, budget, inputs), no script"
    )
    r.add_argument("--no-check", action="store_true", help="do not check that lists, chunks and stores exist")
    d = jobs.JobSpec("single-node", structures="-")
    g = r.add_argument_group("job")
    g.add_argument("--structures", help="structure list: one file, directory or examples:<set> per line")
    g.add_argument(
        "--output",
        default=d.output,
        help=f"store to write (array: directory of chunk stores) (default {d.output})",
    )
    g.add_argument(
        "--ranks", type=int, default=d.ranks, help=f"MPI ranks in all (array: per task) (default {d.ranks})"
    )
    g.add_argument(
        "--nodes",
        type=int,
        default=d.nodes,
        help=f"nodes (single-node: 1; multi-node: ranks must be a multiple of it) (default {d.nodes})",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=d.threads,
        help=f"OpenMP/BLAS threads per rank (--cpus-per-task) (default {d.threads})",
    )
    g.add_argument(
        "--time",
        default=d.time,
        help=f"Slurm time limit (array: per task) as M, M:S, H:M:S, D-H, D-H:M or D-H:M:S (days, hours, "
        f"minutes, seconds) (default {d.time})",
    )
    g.add_argument(
        "--job-name",
        default=d.job_name,
        help=f"Slurm job name, 1 to 64 characters from A-Z a-z 0-9 _ . + - (default {d.job_name})",
    )
    g.add_argument("--partition", help="Slurm partition (default: the cluster's)")
    g.add_argument("--account", help="Slurm account charged (default: yours)")
    g.add_argument("--qos", help="Slurm quality of service (default: the partition's)")
    g.add_argument("--constraint", help="Slurm node features, e.g. 'skylake&ib'")
    g.add_argument(
        "--mem-per-cpu",
        metavar="SIZE",
        help="memory per CPU as Slurm writes it: MB, or with a unit K/M/G/T, e.g. 2000 or 4G "
        "(default: the partition's)",
    )
    g.add_argument(
        "--cores-per-node",
        type=int,
        help="cores per node: checks that ranks per node x threads fit (default: not checked)",
    )
    g.add_argument(
        "--launcher",
        choices=jobs.LAUNCHERS,
        default=d.launcher,
        help=f"the MPI launcher in the script (default {d.launcher})",
    )
    g.add_argument(
        "--schedule",
        choices=jobs.SCHEDULES,
        default=d.schedule,
        help=f"the run's task schedule: dynamic (RMA counter) or static (cost-model LPT, no one-sided MPI) "
        f"(default {d.schedule})",
    )
    g.add_argument(
        "--python",
        default=sys.executable,
        help="the Python where sporep-hpc is installed, as the compute nodes see it (default: this one)",
    )
    g.add_argument(
        "--setup",
        action="append",
        default=[],
        metavar="LINE",
        help="shell line run before the job, as written (it is code: the only value not quoted), "
        "e.g. 'module load mpich' (repeatable)",
    )
    g.add_argument(
        "--run-args",
        action="append",
        default=[],
        metavar="'ARGS'",
        help="extra arguments of `sporep-hpc run`, split into words by shell rules (quotes group words; "
        "$, backticks and globs stay literal: nothing is expanded or run); each word reaches `run` as one "
        "argument, e.g. '--kdensity 0.2 --config \"my run.toml\"' (repeatable)",
    )
    a = r.add_argument_group("array")
    a.add_argument("--chunks", type=int, help="number of chunks (default: the chunk lists found)")
    a.add_argument("--chunk-dir", help="directory of chunk-NNNN.txt (default: <structures stem>.chunks)")
    a.add_argument(
        "--max-parallel", type=int, help="at most this many array tasks at once (default: no limit)"
    )
    s = r.add_argument_group("restart")
    s.add_argument(
        "--signal-seconds",
        type=int,
        default=d.signal_seconds,
        help=f"SIGUSR1 this many seconds before the time limit (default {d.signal_seconds} s)",
    )
    s.add_argument(
        "--max-restarts",
        type=int,
        default=d.max_restarts,
        help=f"requeue the job at most this many times (default {d.max_restarts})",
    )
    n = r.add_argument_group("analysis")
    n.add_argument("--store", help="the store to analyse (merged first when --merge-dir is given)")
    n.add_argument("--merge-dir", help="merge the chunk stores of this directory into --store first")
    n.add_argument(
        "--merge-pattern",
        default=d.merge_pattern,
        help=f"file names of the chunk stores in --merge-dir (default {d.merge_pattern})",
    )
    n.add_argument(
        "--manifest", help="split.json of `sporep-hpc split`: merge checks completeness, keeps order"
    )
    n.add_argument(
        "--fingerprint",
        default=d.fingerprint,
        help=f"fingerprint name in the store (default {d.fingerprint})",
    )
    n.add_argument(
        "--metric",
        choices=jobs.METRICS,
        default=d.metric,
        help=f"distance of the similarity step (default {d.metric})",
    )
    n.add_argument("--labels", help="labels CSV: adds the classification step")
    n.add_argument(
        "--plots", default=d.plots, metavar="DIR", help=f"directory for figures (default {d.plots})"
    )
    r.set_defaults(run=run_render)


def run_list(args: argparse.Namespace) -> int:
    width = max(map(len, jobs.TEMPLATES))
    for name, text in jobs.list_templates().items():
        sys.stdout.write(f"{name:<{width}}  {text}\n")
    return 0


def run_examples(args: argparse.Namespace) -> int:
    for path in jobs.write_examples(args.directory):
        log.info("wrote %s", path)
    return 0


def _split_words(name: str, texts: list[str]) -> tuple[str, ...]:
    """The words of `texts` split by shell rules (no expansion); control characters or unbalanced quotes
    are a ParameterError naming `name`."""
    words: list[str] = []
    for text in texts:
        jobs.check_text(name, text)  # shlex.split would take a newline for a space
        try:
            words += shlex.split(text)
        except ValueError as exc:
            raise ParameterError(
                f"{name} must be shell words with balanced quotes; got {text!r} ({exc})"
            ) from exc
    return tuple(words)


def spec_from_args(args: argparse.Namespace) -> jobs.JobSpec:
    """The JobSpec of parsed `render` arguments (checked by JobSpec itself)."""
    return jobs.JobSpec(
        template=args.template,
        structures=args.structures,
        output=args.output,
        ranks=args.ranks,
        nodes=args.nodes,
        threads=args.threads,
        time=args.time,
        job_name=args.job_name,
        partition=args.partition,
        account=args.account,
        qos=args.qos,
        constraint=args.constraint,
        mem_per_cpu=args.mem_per_cpu,
        cores_per_node=args.cores_per_node,
        launcher=args.launcher,
        schedule=args.schedule,
        python=args.python,
        setup=tuple(args.setup),
        run_args=_split_words("run_args", args.run_args),
        chunks=args.chunks,
        chunk_dir=args.chunk_dir,
        max_parallel=args.max_parallel,
        signal_seconds=args.signal_seconds,
        max_restarts=args.max_restarts,
        store=args.store,
        merge_dir=args.merge_dir,
        merge_pattern=args.merge_pattern,
        manifest=args.manifest,
        fingerprint=args.fingerprint,
        metric=args.metric,
        labels=args.labels,
        plots=args.plots,
    )


def run_render(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    check = not args.no_check
    if args.dry_run:
        sys.stdout.write(jobs.plan(spec, check=check))
        return 0
    script_name = Path(args.script).name if args.script else None
    text = jobs.render(spec, script=script_name, check=check)
    if args.script:
        path = Path(args.script)
        path.write_text(text)
        path.chmod(0o755)
        log.info("wrote %s (%s); submit with: sbatch %s", path, jobs.TEMPLATES[spec.template], path)
    else:
        sys.stdout.write(text)
    return 0
