"""`sporep-hpc similarity store.h5`: distance matrix of a fingerprint (MPI tiles) and its clustering."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("sporep_hpc")

#: Help of --threads in the analysis commands (`sporep_hpc.threads.resolve_threads` decides).
THREADS_HELP = "OpenMP threads per rank (default: OMP_NUM_THREADS, else 1)"
#: Help of --mix-kinds in similarity, neighbours and classify (`sporep_hpc.store.reader.check_kinds`).
MIX_KINDS_HELP = ("compare rows of different kinds (operator spectra and DFT bands) in one fingerprint; "
                  "refused by default (DESIGN.md §8.2)")

DESCRIPTION = """\
Distance matrix between the fingerprints of a store, computed in tiles shared by the MPI ranks and
written to /similarity/<name>/distance (chunked; the matrix never has to fit in memory), with the
hierarchical clustering (scipy linkage) beside it. Metrics: euclidean, cosine, tanimoto (pymatgen's
definition, as a distance 1 - T), wasserstein (1-D, per window, on the energy grid).

  mpiexec -n 4 sporep-hpc similarity store.h5 --fingerprint kinetic --metric cosine --plots figs/
"""


def add_parser(subparsers) -> None:
    from ..analysis.similarity import DEFAULT_TILE, LINKAGE_METHODS, METRICS

    p = subparsers.add_parser(
        "similarity",
        help="distance matrix + clustering of a fingerprint (MPI)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("store", help="the HDF5 store (modified in place: /similarity/<name>)")
    p.add_argument("--fingerprint", default=None, help="fingerprint name (default: the only/first one)")
    p.add_argument("--metric", default="cosine", choices=METRICS, help="distance (default cosine)")
    p.add_argument(
        "--name", default=None, help="group name under /similarity (default <fingerprint>_<metric>)"
    )
    p.add_argument(
        "--tile", type=int, default=DEFAULT_TILE, help=f"tile edge in rows (default {DEFAULT_TILE})"
    )
    p.add_argument(
        "--linkage", default="average", choices=LINKAGE_METHODS, help="scipy linkage method (default average)"
    )
    p.add_argument(
        "--max-linkage",
        type=int,
        default=20000,
        dest="max_linkage",
        help="cluster only up to this many structures (default 20000)",
    )
    p.add_argument("--threads", type=int, default=None, help=THREADS_HELP)
    p.add_argument("--mix-kinds", action="store_true", dest="mix_kinds", help=MIX_KINDS_HELP)
    p.add_argument("--plots", default=None, metavar="DIR", help="write PNG figures into DIR")
    p.add_argument(
        "--show", default=None, metavar="ID,ID,...",
        help="structures drawn in the fingerprint figure (default: one representative per group or cluster)",
    )
    p.add_argument(
        "--neighbours",
        type=int,
        default=3,
        help="nearest neighbours listed per structure, 0: none (default 3)",
    )
    p.set_defaults(run=similarity_command)


def default_fingerprint(path, quiet: bool = False) -> str:
    """The store's fingerprint when there is exactly one (else the first, with a note).

    Every rank calls it (a read-only open), so a missing store fails on all ranks alike."""
    from ..errors import StoreError
    from ..store import open_store

    with open_store(path) as store:
        names = store.fingerprint_names
    if not names:
        raise StoreError(f"{path}: no fingerprints stored")
    if len(names) > 1 and not quiet:
        log.info(
            "several fingerprints (%s); using %s (choose with --fingerprint)", ", ".join(names), names[0]
        )
    return names[0]


def nearest_neighbours(distance, ids, k: int) -> list[str]:
    """One line per structure: its k nearest other structures with distances."""
    import numpy as np

    lines = []
    for i, sid in enumerate(ids):
        order = [j for j in np.argsort(distance[i], kind="stable") if j != i][:k]
        near = ", ".join(f"{ids[j]} {distance[i, j]:.4g}" for j in order)
        lines.append(f"  {sid:<24s} {near}")
    return lines


def similarity_figures(path, name: str, out_dir, groups=None, show=None) -> list[Path]:
    """Heatmap (dendrogram order), dendrogram and a few fingerprints of a stored similarity group."""
    from .. import plots
    from ..analysis.similarity import window_offsets_from_attrs
    from ..store import open_store
    from ..store.groups import read_similarity

    out_dir = Path(out_dir)
    rec = read_similarity(path, name)
    metric = rec.attrs.get("metric", "")
    made = [
        plots.plot_distance_heatmap(
            rec.distance,
            rec.ids,
            out_dir / f"{name}_heatmap.png",
            linkage=rec.linkage,
            metric=metric,
            title=f"{metric} distance, {rec.attrs['fingerprint']}",
        )
    ]
    if rec.linkage is not None:
        made.append(
            plots.plot_dendrogram(
                rec.linkage,
                rec.ids,
                out_dir / f"{name}_dendrogram.png",
                groups=groups,
                method=rec.attrs.get("linkage_method", "average"),
                metric=metric,
                title=f"{metric} distance, {rec.linkage.shape[0] + 1} structures",
            )
        )
    with open_store(path) as store:
        values, energies, attrs = store.fingerprints(rec.attrs["fingerprint"])
    if show:  # rows of the similarity group named by the user
        where = {sid: k for k, sid in enumerate(rec.ids)}
        missing = [sid for sid in show if sid not in where]
        if missing:
            from ..errors import InputError

            raise InputError(f"--show: not in /similarity/{name}: {', '.join(missing)}")
        pick = [where[sid] for sid in show]
    else:
        pick = plots.representative_rows(rec.distance, groups=groups, linkage=rec.linkage)
    made.append(
        plots.plot_fingerprints(
            energies,
            values[rec.index[pick]],
            [rec.ids[k] + (f" ({groups[k]})" if groups is not None else "") for k in pick],
            out_dir / f"{rec.attrs['fingerprint']}_fingerprints.png",
            window_offsets=window_offsets_from_attrs(attrs, energies),
            references=str(attrs.get("reference", "")).split("+"),
            title=f"fingerprint {rec.attrs['fingerprint']}",
        )
    )
    return made


def example_groups(ids) -> list[str] | None:
    """Group names for colouring: nanotube family, BaTiO3 / AFLOW set, else None."""
    from ..analysis.classify import example_properties

    props = example_properties(ids)
    if not props:
        return None
    out = []
    for i in ids:
        p = props.get(i, {})
        out.append(p.get("family") or ("BaTiO3" if "phase" in p else p.get("strukturbericht") or "other"))
    return out


def similarity_command(args) -> int:
    from ..analysis.similarity import compute_similarity
    from ..store.groups import read_similarity
    from . import import_mpi, setup_logging

    comm = import_mpi().COMM_WORLD
    setup_logging(rank=comm.rank, verbose=getattr(args, "verbose", False))
    fingerprint = args.fingerprint or default_fingerprint(args.store, quiet=comm.rank > 0)
    res = compute_similarity(
        args.store,
        fingerprint,
        args.metric,
        name=args.name,
        comm=comm,
        tile=args.tile,
        linkage_method=args.linkage,
        max_linkage=args.max_linkage,
        n_threads=args.threads,
        mix_kinds=args.mix_kinds,
    )
    if comm.rank != 0:
        return 0
    n = len(res.ids)
    print(
        f"similarity {res.name}: {args.metric} distances of fingerprint {fingerprint} between {n} structures "
        f"({comm.size} rank(s), tile {args.tile}) -> {args.store}:/similarity/{res.name}"
    )
    if args.neighbours > 0 and 1 < n <= 200:
        rec = read_similarity(args.store, res.name)
        print(f"nearest neighbours ({args.metric} distance):")
        print("\n".join(nearest_neighbours(rec.distance, rec.ids, args.neighbours)))
    if args.plots:
        show = [i.strip() for i in args.show.split(",") if i.strip()] if args.show else None
        for p in similarity_figures(args.store, res.name, args.plots, example_groups(res.ids), show):
            print(f"figure {p}")
    return 0
