"""`sporep-hpc examples [SPEC]`: list the built-in structure sets or the structures of one."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("sporep_hpc")

DESCRIPTION = """\
Built-in structure sets (generated or read from installed packages; use them as inputs of
`sporep-hpc run examples:<spec>`). Without SPEC: the sets, their sizes and filters. With SPEC: its
structures (listed without being built; --write builds them).

  sporep-hpc examples
  sporep-hpc examples "cnt?max_atoms=120"
  sporep-hpc examples batio3 --write cifs/
"""


def add_parser(subparsers) -> None:
    from ..examples import registry

    p = subparsers.add_parser(
        "examples",
        help="list the built-in structure sets",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    names = ", ".join(registry())
    p.add_argument(
        "spec", nargs="?", default=None, help=f"set name ({names}) with filters, e.g. cnt?max_atoms=120"
    )
    p.add_argument("--write", default=None, metavar="DIR", help="write the structures as CIF files into DIR")
    p.set_defaults(run=examples_command)


def examples_command(args) -> int:
    from ..examples import ENTRY_FILTERS, catalogue, load_set, registry

    if args.spec is None:
        for name, s in registry().items():
            entries = s.entries()
            print(f"{name:<8s} {len(entries):4d} structures  {s.description}")
            print(f"         filters: {', '.join(ENTRY_FILTERS + s.property_filters)}")
        return 0
    entries = catalogue(args.spec)
    for e in entries:
        tags = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in e.properties.items()
            if k not in ("reference", "n_atoms")
        )
        print(f"{e.id:<32s} {e.n_atoms:5d} atoms  {tags}")
    print(f"{len(entries)} structures, {sum(e.n_atoms for e in entries)} atoms")
    if args.write:
        out = Path(args.write)
        out.mkdir(parents=True, exist_ok=True)
        for sid, structure, _ in load_set(args.spec):
            structure.to(filename=str(out / f"{sid}.cif"))
        log.info("%d CIF files written to %s", len(entries), out)
    return 0
