"""Rank 0's progress line (bar on a TTY, plain lines in a batch log) and the end-of-run summary table."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from .plan import COST_SECONDS

log = logging.getLogger("sporep_hpc.progress")


def format_duration(seconds: float) -> str:
    """``1h02m03s`` / ``2m03s`` / ``4.2s``."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def progress_line(done: int, failed: int, total: int, elapsed: float) -> str:
    """``37/120 structures (2 failed) 1.85/s ETA 44.9s``."""
    finished = done + failed
    rate = finished / elapsed if elapsed > 0 else 0.0
    eta = (total - finished) / rate if rate > 0 else float("inf")
    failed_txt = f" ({failed} failed)" if failed else ""
    return f"{finished}/{total} structures{failed_txt} {rate:.2f}/s ETA {format_duration(eta)}"


class Progress:
    """Prints progress at most every `interval` seconds (0.5 s on a TTY), the first time after one interval
    (a rate from the first structures alone is no estimate); `update(force=True)` prints at once. Only the
    instance on rank 0 is `active`. `label` starts each line (``progress``, ``planning``)."""

    def __init__(self, total: int, interval: float = 10.0, active: bool = True, stream: TextIO | None = None,
                 label: str = "progress"):
        self.total = total
        self.interval = interval
        self.active = active and total > 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.label = label
        self.start = time.perf_counter()
        self._last = self.start
        self._shown = (-1, -1)

    def update(self, done: int, failed: int, force: bool = False) -> None:
        if not self.active:
            return
        now = time.perf_counter()
        wait = 0.5 if self.tty else self.interval
        if not force and (now - self._last < wait or (done, failed) == self._shown):
            return
        self._last, self._shown = now, (done, failed)
        line = progress_line(done, failed, self.total, now - self.start)
        if self.tty:
            width = 30
            filled = int(width * (done + failed) / self.total)
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {line}   ")
            self.stream.flush()
        else:
            log.info("%s: %s", self.label, line)

    def close(self) -> None:
        """Ends a TTY's bar line (when one was drawn)."""
        if self.active and self.tty and self._shown != (-1, -1):
            self.stream.write("\n")
            self.stream.flush()


@dataclass(frozen=True)
class RunReport:
    """What a run did (identical on every rank).

    Attributes
    ----------
    n_total, n_done, n_failed, n_skipped : int
        Structures in the input; done; failed; already in the journal (not recomputed).
    failures : list of (id, reason)
    wall_time : float, s
    phase_times : dict of phase -> seconds summed over ranks (integrals, eigen, dos, io, other)
    busy_times : list of float, s
        Per-rank time spent in tasks this run.
    stopped : bool
        True when a signal ended the run before assembly (exit code 5).
    store : str
        The written store ("" when stopped or dry run).
    n_ranks, threads : int
    t_setup : float, s
        Wall time before the first task: inputs (rank 0), planning (all ranks), journal scan.
    t_symmetry : float, s
        Time of the planner's symmetry work (primitive cell, point group, k-point reduction: spglib),
        summed over ranks; part of the setup.
    t_assembly : float, s
        Wall time of the store assembly (journal read, collective write, rename).
    up_to_date : bool
        True when the store already existed, complete, with the same parameters and inputs:
        nothing was computed (n_skipped = n_total; n_done, n_failed, failures from the store).
    n_pending : int
        Structures left pending by the machinery (lost journal entry, internal error; listed in
        `failures` too): the next run computes them again.
    plan : list of PlanEntry
        Dry run only: every structure's plan entry (`sporep_hpc.parallel.plan.PlanEntry`); else empty.
    rank_costs : list of float
        Dry run only: the cost-model estimate of each rank's tasks under the static LPT assignment
        (units of `sporep_hpc.parallel.plan.cost_model`); else empty.
    kinds : dict of str to int
        Inputs per kind of spectrum (``operator``, ``dft``; `sporep_hpc.fingerprints.source_kind`).
    fingerprint_kinds : dict of str to tuple of str
        The kinds each fingerprint group was computed for (`sporep_hpc.fingerprints.spec_kinds`).
    """

    n_total: int
    n_done: int
    n_failed: int
    n_skipped: int
    failures: Sequence[tuple[str, str]] = field(default_factory=list)
    wall_time: float = 0.0
    phase_times: dict = field(default_factory=dict)
    busy_times: Sequence[float] = field(default_factory=list)
    stopped: bool = False
    store: str = ""
    n_ranks: int = 1
    threads: int = 1
    t_setup: float = 0.0
    t_symmetry: float = 0.0
    t_assembly: float = 0.0
    up_to_date: bool = False
    n_pending: int = 0
    plan: Sequence[Any] = field(default_factory=list)
    rank_costs: Sequence[float] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    fingerprint_kinds: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def load_imbalance(self) -> float:
        """max / mean of the per-rank busy times (1.0 is perfect balance)."""
        busy = [b for b in self.busy_times]
        mean = sum(busy) / len(busy) if busy else 0.0
        return max(busy) / mean if mean > 0 else 1.0

    @property
    def exit_code(self) -> int:
        """0 ok, 4 some structures failed or are pending, 5 stopped by a signal."""
        return 5 if self.stopped else (4 if self.n_failed or self.n_pending else 0)


def summary_table(report: RunReport, max_failures: int = 20) -> str:
    """Multi-line end-of-run summary."""
    lines = [
        "run summary",
        f"  structures     {report.n_total:>8d}",
        f"  done           {report.n_done:>8d}",
        f"  failed         {report.n_failed:>8d}",
        *([f"  pending        {report.n_pending:>8d}  (not computed by this run: rerun to compute them)"]
          if report.n_pending else []),
        f"  {'from store' if report.up_to_date else 'from journal':<14s} {report.n_skipped:>8d}",
        f"  ranks x threads {report.n_ranks} x {report.threads}",
        f"  wall time      {format_duration(report.wall_time):>8s}  "
        f"(setup {format_duration(report.t_setup)}, of which symmetry {format_duration(report.t_symmetry)} "
        f"summed over ranks; store assembly {format_duration(report.t_assembly)})",
        "  time per phase in tasks (summed over ranks; io = journal):",
    ]
    if len(report.kinds) > 1:  # said once: operator spectra and DFT bands are kept apart
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(report.kinds.items()))
        groups = ", ".join(f"{name} ({'+'.join(k)})" for name, k in report.fingerprint_kinds.items())
        lines.append(f"  kinds          mixed: {counts} inputs; fingerprints per kind: {groups} (the other "
                     "kind is NaN); similarity/neighbours/classify compare one kind at a time")
    for phase, t in report.phase_times.items():
        lines.append(f"    {phase:<10s} {format_duration(t):>10s}")
    if report.busy_times:
        lines.append(
            f"  load imbalance (max/mean busy time) {report.load_imbalance:.3f} "
            f"[busy per rank: {', '.join(format_duration(b) for b in report.busy_times)}]"
        )
    if report.failures:
        lines.append("  failures:")
        for id, reason in list(report.failures)[:max_failures]:
            lines.append(f"    {id}: {reason}")
        if len(report.failures) > max_failures:
            lines.append(f"    ... and {len(report.failures) - max_failures} more (see `sporep-hpc info`)")
    if report.up_to_date:
        lines.append(f"  UP TO DATE: {report.store} already holds these results; nothing was computed")
    elif report.stopped:
        lines.append("  STOPPED by a signal: the journal is consistent; rerun the same command to resume")
    elif report.store:
        lines.append(f"  store          {report.store}")
    return "\n".join(lines)


def plan_table(entries: Sequence[Any], per_rank_cost: Sequence[float], n_threads: int) -> str:
    """The dry-run task plan: one line per structure, then the total and each rank's share (static LPT
    assignment of `per_rank_cost`, cost-model units), all as estimated core-seconds (× COST_SECONDS)."""
    head = ("index", "id", "kind", "atoms", "n_ao", "grid", "n_k", "core-s")
    lines = ["{:>6s}  {:<32s} {:<9s} {:>5s} {:>5s} {:>11s} {:>5s} {:>10s}  note".format(*head)]
    for e in entries:
        grid = "x".join(str(n) for n in e.grid) or "-"  # Monkhorst-Pack shape; "-" when not planned
        lines.append(
            f"{e.index:>6d}  {e.id[:32]:<32s} {e.kind:<9s} {e.n_atoms:>5d} {e.n_ao:>5d} {grid:>11s} "
            f"{e.n_k:>5d} {e.cost * COST_SECONDS:>10.3g}  {e.error or e.note}"
        )
    total = sum(per_rank_cost)
    lines.append(f"estimated cost {_core_seconds(total * COST_SECONDS)} in all (CPU time of one thread on "
                 "an idle core; a loaded machine takes longer)")
    lines.append(f"estimated cost per rank ({len(per_rank_cost)} ranks x {n_threads} threads, static LPT):")
    for r, c in enumerate(per_rank_cost):
        share = c / total if total else 0.0
        lines.append(f"  rank {r:>4d}  {_core_seconds(c * COST_SECONDS):>22s}  ({share:6.1%})")
    busiest = max(per_rank_cost, default=0.0) * COST_SECONDS
    lines.append(f"estimated time in tasks {format_duration(busiest / n_threads)} (the busiest rank's "
                 f"core-seconds / {n_threads} thread(s), if they scale; without setup and store assembly)")
    return "\n".join(lines)


def _core_seconds(seconds: float) -> str:
    """``0.0123 core-s`` / ``12.3 core-s`` / ``45,000 core-s (12.5 core-h)``."""
    text = f"{seconds:,.0f} core-s" if seconds >= 1000 else f"{seconds:.3g} core-s"
    return text + (f" ({seconds / 3600:.3g} core-h)" if seconds >= 3600 else "")
