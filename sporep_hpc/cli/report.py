"""`sporep-hpc report store.h5 [other.h5 ...]`: a short text report of stores' similarity and classification
results, side by side for several stores.

Also runnable as ``python -m sporep_hpc.cli.report store.h5`` (what `make demo` uses).
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="summarise similarity and classification results",
        description="Report: store contents (by formula), BaTiO3 distances, nanotube clustering, band gaps "
        "(chemical operators), CV scores, figures. Several stores: each report, then their headline numbers "
        "side by side (e.g. the same structures with --operator kinetic and huckel).",
    )
    _arguments(p)
    p.set_defaults(run=report_command)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", nargs="+", help="the HDF5 store(s)")
    p.add_argument("--similarity", default=None, help="/similarity group (default: the first)")
    p.add_argument("--model", default=None, help="/models group (default: the first)")
    p.add_argument("--plots", default=None, metavar="DIR", help="list the PNG figures of DIR")


def report_command(args) -> int:
    from ..analysis.report import compare_report, store_report

    if len(args.store) == 1:
        print(store_report(args.store[0], similarity=args.similarity, model=args.model, plots=args.plots))
    else:
        print(compare_report(args.store, similarity=args.similarity, model=args.model, plots=args.plots))
    return 0


def main(argv=None) -> int:
    from ..errors import SporepError

    parser = argparse.ArgumentParser(prog="sporep-hpc report")
    _arguments(parser)
    args = parser.parse_args(argv)
    try:
        return report_command(args)
    except SporepError as exc:
        print(f"sporep-hpc report: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
