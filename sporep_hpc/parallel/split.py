"""Splitting a structure list into chunk lists balanced by the cost model (for job arrays).

A *unit* is the smallest piece of a list that can move to another chunk without changing
the ids `sporep-hpc run` gives its structures: a file, an ``examples:`` set, or a directory
(split into its files when each file, given on its own, keeps the id it has inside the
directory, i.e. flat directories). Units are assigned to chunks by greedy
longest-processing-time on the cost model of ``sporep_hpc.parallel.plan`` (the same
estimate `run` orders its tasks with), so merging the chunk stores gives the ids, and
the results, of one run over the whole list.

Chunk files are ``<dir>/chunk-NNNN.txt`` (:data:`sporep_hpc.jobs.CHUNK_FORMAT`), one entry
per line in input order, plus ``<dir>/split.json`` (ids and estimated cost per chunk) that
`sporep-hpc merge --manifest` checks a merged store against.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .._validation import check_interval
from ..config import RunParameters
from ..errors import InputError, ParameterError
from ..inputs.files import _stem
from ..inputs.records import check_unique_ids
from ..inputs.resolve import resolve_inputs
from ..jobs import CHUNK_FORMAT, chunk_files, read_list
from .plan import COST_SECONDS, plan_record
from .schedule import lpt_assign

MANIFEST = "split.json"


@dataclass(frozen=True)
class Unit:
    """One movable piece of a structure list.

    Attributes
    ----------
    line : str
        The chunk-list line (a path or ``examples:`` spec) that `run` resolves to `ids`.
    ids : tuple of str
        Structure ids it yields (in `run`'s order).
    cost : float
        Sum of the cost-model estimates of its structures (arbitrary units; failed inputs cost 0).
    n_failed : int
        Structures already known to fail (unreadable, too many atoms, element not in the basis...).
    """

    line: str
    ids: tuple[str, ...]
    cost: float
    n_failed: int = 0


@dataclass(frozen=True)
class Split:
    """Units and their assignment to chunks.

    Attributes
    ----------
    units : tuple of Unit
        In input order.
    chunks : tuple of tuple of int
        Unit indices of each chunk, ascending (input order).
    """

    units: tuple[Unit, ...]
    chunks: tuple[tuple[int, ...], ...]

    @property
    def costs(self) -> list[float]:
        """Estimated cost of each chunk."""
        return [sum(self.units[i].cost for i in chunk) for chunk in self.chunks]

    @property
    def imbalance(self) -> float:
        """Largest chunk cost over the mean chunk cost (1 is perfect)."""
        costs = self.costs
        mean = sum(costs) / len(costs)
        return max(costs) / mean if mean > 0 else 1.0

    def ids(self, k: int) -> list[str]:
        """Structure ids of chunk `k`, in the order `run` gives them."""
        return [id for i in self.chunks[k] for id in self.units[i].ids]

    def lines(self, k: int) -> list[str]:
        """Lines of chunk list `k`."""
        return [self.units[i].line for i in self.chunks[k]]


def plan_units(entries: Sequence[str], params: RunParameters) -> list[Unit]:
    """Resolve list entries into units with their cost-model estimates.

    Raises
    ------
    InputError
        For a path that does not exist, or ids repeated across the list (as `run` would, before any work).
    """
    all_records = []
    units: list[Unit] = []
    for entry in entries:
        records = resolve_inputs([entry])
        all_records.extend(records)
        costs = {}
        failed = {}
        for r in records:
            plan = plan_record(0, r, params)
            costs[r.id] = plan.cost
            failed[r.id] = plan.kind == "failed"
        by_file = _flat_directory_files(entry, records)
        groups = by_file if by_file is not None else [(entry, [r.id for r in records])]
        for line, ids in groups:
            units.append(
                Unit(line, tuple(ids), float(sum(costs[i] for i in ids)), sum(failed[i] for i in ids))
            )
    check_unique_ids(all_records)
    return units


def _flat_directory_files(entry: str, records) -> list[tuple[str, list[str]]] | None:
    """Per-file units of a directory entry when every file keeps its ids on its own, else None."""
    if entry.startswith("examples:") or not Path(entry).is_dir():
        return None
    groups: dict[str, list[str]] = {}
    for r in records:
        groups.setdefault(r.source, []).append(r.id)
    for source, ids in groups.items():
        base = _stem(Path(source))  # the id `run` gives a file named on its own (see structures.py)
        standalone = [base] if len(ids) == 1 else [f"{base}-{i}" for i in range(len(ids))]
        if ids != standalone:
            return None
    return list(groups.items())


def split_units(units: Sequence[Unit], n_chunks: int) -> Split:
    """Assign units to `n_chunks` chunks by greedy LPT on their costs (deterministic).

    Raises
    ------
    ParameterError
        When `n_chunks` is not in [1, number of units] (an empty chunk would be an empty job).
    """
    if not units:
        raise ParameterError("the structure list must name at least one structure; got none")
    check_interval("chunks", n_chunks, 1, len(units), integer=True)
    # Zero-cost units (failed inputs, imported bands) still need a chunk: break ties by index (LPT does).
    assignment = lpt_assign([u.cost for u in units], n_chunks)
    chunks = tuple(tuple(sorted(a)) for a in assignment)
    return Split(tuple(units), chunks)


def write_chunks(
    split: Split, directory: str | Path, source: str = "", parameters: str = "", force: bool = False
) -> list[Path]:
    """Write ``chunk-NNNN.txt`` and ``split.json`` into `directory`.

    Existing chunk lists are an error unless `force` (then they are all removed first, so a
    smaller split leaves no stale chunk behind).
    """
    directory = Path(directory)
    old = chunk_files(directory) if directory.is_dir() else []
    if old and not force:
        raise ParameterError(
            f"output directory must not hold chunk lists already; {directory} has {len(old)} "
            "(use --force to replace them)"
        )
    directory.mkdir(parents=True, exist_ok=True)
    for path in old:
        path.unlink()
    paths = []
    for k in range(len(split.chunks)):
        path = directory / CHUNK_FORMAT.format(k)
        path.write_text("".join(line + "\n" for line in split.lines(k)))
        paths.append(path)
    manifest = {
        "source": source,
        "parameters": json.loads(parameters) if parameters else None,
        "cost_model": "sporep_hpc.parallel.plan.cost_model (n_ao^3 n_k + integral term)",
        "imbalance": split.imbalance,
        "order": [id for u in split.units for id in u.ids],
        "chunks": [
            {
                "file": paths[k].name,
                "entries": len(split.chunks[k]),
                "cost": split.costs[k],
                "ids": split.ids(k),
            }
            for k in range(len(split.chunks))
        ],
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return paths


def expected_ids(manifest: str | Path) -> list[str]:
    """All structure ids a split manifest promises, in the order of the original list (one run's order)."""
    try:
        data = json.loads(Path(manifest).read_text())
        return [str(id) for id in data["order"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{manifest}: not a split manifest ({exc})") from exc


def split_list(
    list_path: str | Path,
    n_chunks: int,
    params: RunParameters,
    directory: str | Path | None = None,
    force: bool = False,
) -> tuple[Split, list[Path]]:
    """Read a structure list, balance it into `n_chunks` chunk lists and write them.

    Parameters
    ----------
    list_path : path
        One file, directory or ``examples:<set>`` per line (``#`` comments, blank lines skipped).
    n_chunks : int
        Number of chunks, in [1, number of units].
    params : RunParameters
        The parameters of the run (the basis and k-point density decide the costs).
    directory : path, optional
        Where to write; default ``<list stem>.chunks`` (what `sporep-hpc jobs render array` expects).

    Returns
    -------
    (Split, list of Path)
    """
    check_interval("chunks", n_chunks, 1, None, closed="left", integer=True)
    entries = read_list(list_path)
    if not entries:
        raise ParameterError(f"structure list must name at least one entry; {list_path} names none")
    units = plan_units(entries, params)
    split = split_units(units, n_chunks)
    directory = Path(directory) if directory is not None else Path(list_path).with_suffix(".chunks")
    paths = write_chunks(split, directory, str(Path(list_path).absolute()), params.to_json(), force=force)
    return split, paths


def split_table(split: Split) -> str:
    """Per-chunk summary: entries, structures, estimated cost (core-seconds, × COST_SECONDS) and share."""
    costs = split.costs
    total = sum(costs) or 1.0
    rows = [f"{'chunk':>6} {'entries':>8} {'structures':>10} {'est. core-s':>12} {'share':>7}"]
    for k, chunk in enumerate(split.chunks):
        rows.append(
            f"{k:>6} {len(chunk):>8} {len(split.ids(k)):>10} {costs[k] * COST_SECONDS:>12.4g} "
            f"{costs[k] / total:>7.1%}"
        )
    n_ids = sum(len(u.ids) for u in split.units)
    rows.append(
        f"{len(split.chunks)} chunks, {len(split.units)} units, {n_ids} structures; "
        f"imbalance (largest / mean cost) {split.imbalance:.3f}"
    )
    big = max(split.units, key=lambda u: u.cost)
    if big.cost > total / len(costs):
        rows.append(
            f"note: {big.line!r} ({len(big.ids)} structures) costs more than a chunk's share and cannot be "
            "divided; list its files (or a flat directory) instead for a better balance"
        )
    return "\n".join(rows) + "\n"


__all__ = [
    "MANIFEST",
    "Split",
    "Unit",
    "expected_ids",
    "plan_units",
    "split_list",
    "split_table",
    "split_units",
    "write_chunks",
]
