"""`sporep-hpc merge chunk-*.h5 -o all.h5`: one store from stores made with identical parameters (MPI)."""

from __future__ import annotations

import argparse

_DESCRIPTION = """\
Merge stores written by `sporep-hpc run` with identical parameters (refused otherwise, naming the
differing parameter) into one store; ids must be unique across them. Under MPI the ranks read and
write in parallel (collective parallel-HDF5 writes):

  mpiexec -n 4 sporep-hpc merge stores/chunk-*.h5 -o all.h5 --manifest list.chunks/split.json

--manifest (the split.json of `sporep-hpc split`) checks that every structure of the split is
there and orders the rows as in the original list: the merged store equals one run over it.
The store is written uncompressed; compress afterwards with `h5repack -f GZIP=4 all.h5 all.gz.h5`.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `merge`."""
    p = subparsers.add_parser(
        "merge",
        help="merge stores with identical parameters into one (MPI)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="stores to merge, in order")
    p.add_argument("-o", "--output", required=True, help="the merged store")
    p.add_argument(
        "--manifest", help="split.json of `sporep-hpc split`: check completeness, use the list's order"
    )
    p.add_argument("--force", action="store_true", help="replace the output if it exists")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..parallel.merge import merge_stores
    from ..parallel.split import expected_ids
    from . import import_mpi, setup_logging

    comm = import_mpi().COMM_WORLD
    setup_logging(rank=comm.rank, verbose=getattr(args, "verbose", False))
    order = expected_ids(args.manifest) if args.manifest else None
    report = merge_stores(args.inputs, args.output, comm, order=order, force=args.force)
    if comm.rank == 0:  # the result to stdout, logs to stderr
        how = "collective mpio" if report.parallel else "serial HDF5 on rank 0"
        print(
            f"merged {report.n_inputs} stores into {report.output}: {report.n_rows} structures "
            f"({report.n_done} done, {report.n_failed} failed), {report.bytes_written / 1e6:.1f} MB in "
            f"{report.seconds:.2f} s ({report.n_ranks} rank(s), {how})",
            flush=True,
        )
    return 0
