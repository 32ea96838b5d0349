"""`sporep-hpc split list.txt --chunks N`: chunk lists balanced by the cost model (for job arrays)."""

from __future__ import annotations

import argparse
import logging
import sys

from ..config import RUN_PARAMETERS, build_config, load_toml

log = logging.getLogger(__name__)

#: The run parameters that change a list's costs (basis size, k-points, which structures fail): the
#: options of `split`, made from their declarations as in `run`.
_COST_NAMES = (
    "basis",
    "kdensity",
    "kgrid_rounding",
    "vacuum_kpoints",
    "exp_to_discard",
    "max_atoms",
    "min_distance",
)
COST_PARAMETERS = tuple(p for p in RUN_PARAMETERS if p.name in _COST_NAMES)

_DESCRIPTION = """\
Split a structure list (one file, directory or examples:<set> per line) into N chunk lists
balanced by the cost model of `sporep-hpc run` (n_ao^3 n_k + integral term), for a job array:

  sporep-hpc split list.txt --chunks 16                  -> list.chunks/chunk-0000.txt ... chunk-0015.txt
  sporep-hpc jobs render array --structures list.txt --ranks 64 --output stores --script array.sbatch

Give the same --config (or --basis/--kdensity...) as the run: the costs depend on them. The chunk
table (stdout) gives each chunk's cost in estimated core-seconds.
Ids stay those of one run over the whole list, so `sporep-hpc merge` gives the same store.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `split`."""
    p = subparsers.add_parser(
        "split",
        help="split a structure list into cost-balanced chunk lists",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("structures", help="structure list file")
    p.add_argument("--chunks", type=int, required=True, help="number of chunk lists (array tasks)")
    p.add_argument("-o", "--output", help="directory for chunk-NNNN.txt (default: <list stem>.chunks)")
    p.add_argument("--force", action="store_true", help="replace chunk lists already in the directory")
    p.add_argument("--config", help="TOML run configuration (as for `sporep-hpc run`; flags override it)")
    g = p.add_argument_group("run parameters that change the costs (as for `sporep-hpc run`)")
    for param in COST_PARAMETERS:
        param.add_argument(g)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..parallel.split import split_list, split_table

    file_values = load_toml(args.config) if args.config else {}
    config = build_config(file_values, {p.name: getattr(args, p.name) for p in COST_PARAMETERS})
    split, paths = split_list(args.structures, args.chunks, config.parameters, args.output, force=args.force)
    sys.stdout.write(split_table(split))
    log.info("wrote %d chunk lists and split.json to %s", len(paths), paths[0].parent)
    return 0
