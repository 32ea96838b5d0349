"""`sporep-hpc report store.h5`: a short text report of a store's similarity and classification results.

Also runnable as ``python -m sporep_hpc.cli.report store.h5`` (what `make demo` uses).
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="summarise similarity and classification results",
        description="Report: store contents, BaTiO3 distances, nanotube clustering, CV scores, figures.",
    )
    _arguments(p)
    p.set_defaults(run=report_command)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", help="the HDF5 store")
    p.add_argument("--similarity", default=None, help="/similarity group (default: the first)")
    p.add_argument("--model", default=None, help="/models group (default: the first)")
    p.add_argument("--plots", default=None, metavar="DIR", help="list the PNG figures of DIR")


def report_command(args) -> int:
    from ..analysis.report import store_report

    print(store_report(args.store, similarity=args.similarity, model=args.model, plots=args.plots))
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
