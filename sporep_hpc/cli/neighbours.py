"""`sporep-hpc neighbours store.h5 -k K`: exact k nearest neighbours of every structure, or of new ones."""

from __future__ import annotations

import argparse
import json
import logging

log = logging.getLogger("sporep_hpc")

#: Stores up to this size get their neighbour lists printed (larger ones: read the group or use --json).
PRINT_LIMIT = 200

DESCRIPTION = """\
Exact k nearest neighbours between the fingerprints of a store, without an N x N matrix: the distance
tiles are shared by the MPI ranks and each rank keeps only the k best per structure, so memory grows
as N*k. The result does not depend on the number of ranks; ties go to the earlier store row.

Without --query, every structure's k nearest other structures (itself excluded) are written to
/neighbours/<fingerprint>_<metric>/index (N, k) store rows and .../distance (N, k), nearest first
(rows of failed structures: -1 and NaN). k must be at most the number of structures with a
fingerprint minus one.

With --query FILE..., the fingerprints of the given structure files, directories, band files or
stores are computed with the store's own parameters (kdensity, basis, fingerprint windows...) and the
k nearest stored structures of each are printed (k at most the number of stored structures with a
fingerprint); the store is not modified. Put STORE before --query, which takes every name after it.

Metrics: euclidean, cosine, tanimoto (1 - T, pymatgen's index) and wasserstein (eV, per window).

  mpiexec -n 4 sporep-hpc neighbours store.h5 -k 10 --metric cosine
  sporep-hpc neighbours store.h5 -k 5 --query new.cif other_bands.npz --json > nearest.json
"""


def add_parser(subparsers) -> None:
    from ..analysis.neighbours import DEFAULT_TILE
    from ..analysis.similarity import METRICS
    from .similarity import MIX_KINDS_HELP, THREADS_HELP

    p = subparsers.add_parser(
        "neighbours",
        help="exact k nearest neighbours of every structure or of new files (MPI, no N x N matrix)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", help="the HDF5 store (without --query modified in place: /neighbours/<name>)")
    p.add_argument("-k", type=int, required=True, metavar="K", help="neighbours per structure (at least 1)")
    p.add_argument("--metric", default="cosine", choices=METRICS, help="distance (default cosine)")
    p.add_argument("--fingerprint", default=None, help="fingerprint name (default: the only/first one)")
    p.add_argument(
        "--query",
        nargs="+",
        default=None,
        metavar="FILE",
        help="structure files, directories, band files or stores to look up instead (store unchanged)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"id": [["stored id", distance], ...]} to stdout (queries, or every stored structure)',
    )
    p.add_argument(
        "--tile", type=int, default=DEFAULT_TILE, help=f"tile edge in rows (default {DEFAULT_TILE})"
    )
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--mix-kinds", action="store_true", dest="mix_kinds", help=MIX_KINDS_HELP)
    p.set_defaults(run=neighbours_command)


def _lines(lists: dict) -> list[str]:
    return [f"  {sid:<24s} " + ", ".join(f"{j} {d:.4g}" for j, d in near) for sid, near in lists.items()]


def neighbours_command(args) -> int:
    from ..analysis.neighbours import compute_neighbours, query_store
    from . import import_mpi, setup_logging
    from .similarity import default_fingerprint

    comm = import_mpi().COMM_WORLD
    setup_logging(rank=comm.rank, verbose=getattr(args, "verbose", False))
    fingerprint = args.fingerprint or default_fingerprint(args.store, quiet=comm.rank > 0 or args.json)
    common = {"comm": comm, "tile": args.tile, "n_threads": args.threads, "mix_kinds": args.mix_kinds}
    if args.query:
        res = query_store(args.store, args.query, args.k, args.metric, fingerprint=fingerprint, **common)
        if comm.rank == 0:
            found = res.as_dict()
            if args.json:
                print(json.dumps(found, indent=1))
            else:
                print(f"{args.k} nearest stored structures ({args.metric}, fingerprint {fingerprint}):")
                print("\n".join(_lines(found)))
        return 4 if res.failed else 0
    rec = compute_neighbours(args.store, fingerprint, args.k, args.metric, **common)
    if comm.rank != 0:
        return 0
    lists = rec.lists()
    if args.json:
        print(json.dumps({sid: [[j, d] for j, d in near] for sid, near in lists.items()}, indent=1))
        return 0
    print(
        f"neighbours {rec.name}: {args.k} nearest of {len(lists)} structures ({args.metric} distance, "
        f"{comm.size} rank(s), tile {args.tile}) -> {args.store}:/neighbours/{rec.name}"
    )
    if len(lists) <= PRINT_LIMIT:
        print("\n".join(_lines(lists)))
    return 0
