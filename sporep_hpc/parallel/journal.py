"""Per-rank journal shards: ``<store>.journal/rank-<r>.h5``, one entry per finished structure.

A shard is a sequence of segment files (``rank-<r>.h5``, ``rank-<r>.1.h5``, ...): each run, and
every SEGMENT_ENTRIES entries, starts a new one, so a crash can only damage the segment in writing.

Each entry is a group ``/entries/<seq>`` holding a StructureResult (status done or
failed + message), its phase times and ``input_digest``, the SHA-256 of the structure's
input when it was computed (`tasks.input_digests`); the attribute ``complete`` is written last
and the file flushed, so an entry cut by a kill is ignored on reading. The journal's
``parameters.json`` records the run parameters; a journal made with other parameters
is refused (see `prepare_journal`). Shards are opened for reading without HDF5's file lock, so a
reader (`sporep-hpc info`) never blocks the run that writes them. A shard that HDF5 cannot open is
skipped (its structures are recomputed); only the run that holds the store's lock
(`sporep_hpc.store.lock`), the one writer, sets such a shard aside (``*.corrupt-<n>``): a reader
reports it and never moves it (a file in use is not a damaged file).

On resume an entry is reused only if its ``input_digest`` equals the digest of the structure's
current input (`merge_refs` with `digests`): a structure file edited under the same id is
recomputed. Entries without a digest (journals of older versions) count as stale: nothing
proves they were computed from today's input, and the price of the safe choice is one
recomputation.

Shards are written by one rank each (serial HDF5, no MPI): no collective here.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ..config import RunParameters, diff_parameters
from ..errors import ParameterError, StoreError
from ..pipeline import PHASES, TaskTimes, structure_id
from ..store.schema import StructureResult

log = logging.getLogger(__name__)

PARAMETERS_FILE = "parameters.json"
#: SHA-256 of the run's inputs (tasks.inputs_digest) when the journal was created.
INPUTS_FILE = "inputs.sha256"
#: Marker of failures that are not the structure's fault (see tasks._failure): retried on resume.
INTERNAL = "internal error"
_ARRAYS = ("cell", "numbers", "positions", "kpoints", "weights", "eigenvalues")
_SCALARS = ("n_electrons", "fermi_energy", "vbm", "cbm", "band_gap")


def journal_dir(store_path: str | Path) -> Path:
    """``<store>.journal`` next to the store."""
    p = Path(store_path)
    return p.with_name(p.name + ".journal")


#: Bytes kept free on the journal's file system (besides twice the entry being written): HDF5's
#: metadata flushes need room, and a write that meets a full disk can leave HDF5's state broken.
JOURNAL_HEADROOM = 256 * 1024
#: Entries per shard segment: a crash that corrupts the segment being written loses at most these.
SEGMENT_ENTRIES = 1000
_SEGMENT_NAME = re.compile(r"^rank-(\d+)(?:\.(\d+))?\.h5$")


def shard_path(directory: Path, rank: int, segment: int = 0) -> Path:
    """Segment `segment` of rank `rank`'s shard: ``rank-<r>.h5``, then ``rank-<r>.<k>.h5``."""
    return directory / (f"rank-{rank}.h5" if segment == 0 else f"rank-{rank}.{segment}.h5")


def _segments(directory: Path, rank: int) -> list[int]:
    out = []
    for p in directory.glob(f"rank-{rank}*.h5"):
        m = _SEGMENT_NAME.match(p.name)
        if m and int(m.group(1)) == rank:
            out.append(int(m.group(2) or 0))
    return out


@dataclass(frozen=True)
class EntryRef:
    """Where a journal entry lives: shard file, group name, its status, whether a rerun retries it,
    and the input digest of its structure when it was computed ("" in journals of older versions).

    `retry` is True for a structure that failed with an internal (unexpected) error: a transient
    cause (a killed library, a full disk) is not a property of the structure, so a resumed run
    computes it again. Failures with a reason about the structure itself are kept.
    """

    shard: str
    group: str
    status: int
    retry: bool = False
    digest: str = ""


def prepare_journal(directory: Path, params: RunParameters, restart: str, inputs_digest: str = "") -> str:
    """Create or check the journal directory (rank 0 only, before any shard is opened).

    With ``restart="fresh"`` an existing journal is removed. With ``"auto"`` an existing
    journal must have been made with the same parameters. A new journal records
    `inputs_digest` (INPUTS_FILE), see `journal_matches`.

    Returns
    -------
    str
        A short note for the log ("new journal", "resuming ...").

    Raises
    ------
    ParameterError
        The journal was made with different parameters (lists them) and restart is "auto".
    """
    if restart == "fresh" and directory.exists():
        shutil.rmtree(directory)
    pfile = directory / PARAMETERS_FILE
    if pfile.is_file():
        try:
            old = RunParameters.from_json(pfile.read_text())
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreError(f"{pfile} is unreadable ({exc}); rerun with --restart fresh") from exc
        changes = diff_parameters(old, params)
        if changes:
            raise ParameterError(
                f"the journal {directory} was made with other parameters ({'; '.join(changes)}); "
                "rerun with the same parameters to resume, or with --restart fresh to start over"
            )
        return f"resuming from journal {directory}"
    directory.mkdir(parents=True, exist_ok=True)
    if inputs_digest:
        (directory / INPUTS_FILE).write_text(inputs_digest + "\n")
    tmp = pfile.with_suffix(".tmp")
    tmp.write_text(params.to_json())
    tmp.replace(pfile)
    return f"new journal {directory}"


def journal_matches(directory: Path, params: RunParameters, inputs_digest: str) -> bool:
    """True if `directory` is a journal of a run with exactly these parameters and inputs."""
    pfile, ifile = directory / PARAMETERS_FILE, directory / INPUTS_FILE
    if not (pfile.is_file() and ifile.is_file()):
        return False
    try:
        old = RunParameters.from_json(pfile.read_text())
    except (ValueError, TypeError, KeyError):
        return False
    return not diff_parameters(old, params) and ifile.read_text().strip() == inputs_digest


def list_shards(directory: Path) -> list[Path]:
    """The shard files of a journal, in name order."""
    return sorted(directory.glob("rank-*.h5")) if directory.is_dir() else []


def open_shard(shard: str | Path) -> h5py.File:
    """A journal shard opened read-only, without HDF5's file lock (readers never block the writer)."""
    return h5py.File(shard, "r", locking=False)


def scan_shard(shard: Path, set_aside: bool = False) -> list[tuple[str, EntryRef]]:
    """(id, EntryRef) of the complete entries of one shard, in entry order.

    A shard that cannot be read contributes nothing (its structures are recomputed). With
    `set_aside` (only the run holding the store's lock passes it) it is also moved aside
    (``*.corrupt-<n>``) with a warning; without it, it is left untouched.
    """
    out: list[tuple[str, EntryRef]] = []
    try:
        with open_shard(shard) as f:
            entries = f.get("entries")
            for name in sorted(entries) if entries is not None else []:
                attrs = entries[name].attrs
                if not attrs.get("complete", 0):
                    continue
                id = attrs["id"]
                id = id.decode() if isinstance(id, bytes) else str(id)
                status = int(attrs["status"])
                error = attrs.get("error", "")
                error = error.decode() if isinstance(error, bytes) else str(error)
                retry = status != 1 and INTERNAL in error
                digest = attrs.get("input_digest", "")
                digest = digest.decode() if isinstance(digest, bytes) else str(digest)
                out.append((id, EntryRef(str(shard), f"entries/{name}", status, retry, digest)))
    except (OSError, KeyError, ValueError, RuntimeError) as exc:  # what h5py raises on a damaged file
        if not set_aside:
            log.warning("journal shard %s is unreadable or in use (%s); its entries are not counted",
                        shard, exc)
            return []
        n = len(list(shard.parent.glob(shard.name + ".corrupt-*")))
        aside = shard.with_name(f"{shard.name}.corrupt-{n}")
        log.warning("journal shard %s is unreadable (%s); moved to %s, its structures are recomputed",
                    shard, exc, aside.name)
        shard.replace(aside)
        return []
    return out


def is_current(id: str, ref: EntryRef, digests: Mapping[str, str]) -> bool:
    """True if entry `ref` (journal id `id`, a structure or one of its k-point chunks) was computed
    from the input whose digest `digests` holds for its structure today. An entry without a digest
    (older journal) or of a structure not in `digests` is not current."""
    want = digests.get(id)
    if want is None:
        want = digests.get(structure_id(id))
    return bool(ref.digest) and ref.digest == want


def stale_ids(per_shard: Iterable[list[tuple[str, EntryRef]]], digests: Mapping[str, str]) -> set[str]:
    """Journal ids of structures in `digests` (or their chunks) that have complete entries, none
    current (`is_current`): what a resume recomputes because its input changed since."""
    seen: set[str] = set()
    current: set[str] = set()
    for entries in per_shard:
        for id, ref in entries:
            if id in digests or structure_id(id) in digests:
                seen.add(id)
                if is_current(id, ref, digests):
                    current.add(id)
    return seen - current


def merge_refs(
    per_shard: Iterable[list[tuple[str, EntryRef]]], digests: Mapping[str, str] | None = None
) -> dict[str, EntryRef]:
    """{id: EntryRef} from the shards' entries given in shard order: a "done" entry wins over a
    failed one, else the first complete entry of an id wins.

    With `digests` ({structure id: input digest} of the current inputs), only current entries
    (`is_current`) take part: a stale "done" entry never hides a newer one. Serial and
    deterministic: the same entries and digests give the same choice on every rank.
    """
    found: dict[str, EntryRef] = {}
    for entries in per_shard:
        for id, ref in entries:
            if digests is not None and not is_current(id, ref, digests):
                continue
            old = found.get(id)
            if old is None or (old.status != 1 and ref.status == 1):
                found[id] = ref
    return found


def scan_journal(directory: Path, digests: Mapping[str, str] | None = None) -> dict[str, EntryRef]:
    """{id: EntryRef} of the complete entries of every shard (serial, read-only: never moves a shard;
    see `merge_refs` for the rule, and for `digests`)."""
    return merge_refs((scan_shard(shard) for shard in list_shards(directory)), digests)


class JournalShard:
    """This rank's shard, written as a sequence of segment files (a context manager).

    Every opening starts a new segment (a file written by an earlier, possibly killed, run is
    never reopened for writing), and a segment is closed after `max_entries` entries: a crash
    that corrupts the file being written loses at most that segment.
    """

    def __init__(self, directory: Path, rank: int, params_json: str, max_entries: int = SEGMENT_ENTRIES):
        self.directory, self.rank = directory, rank
        self.params_json, self.max_entries = params_json, max_entries
        existing = _segments(directory, rank)
        self.segment = max(existing) + 1 if existing else 0
        self.file = None
        self._open()

    def _open(self) -> None:
        self.path = shard_path(self.directory, self.rank, self.segment)
        try:
            self.file = h5py.File(self.path, "w-")
        except OSError as exc:
            raise StoreError(f"cannot create journal shard {self.path}: {exc}") from exc
        self.file.attrs["parameters"] = self.params_json
        self.entries = self.file.create_group("entries")
        self._seq = 0

    def append(self, result: StructureResult, times: TaskTimes, digest: str = "") -> None:
        """Write one finished structure and flush (the entry is complete only after this returns).

        `digest` is the input digest of the structure (`tasks.input_digests`); an entry without
        one is never reused by a resume.
        """
        self._check_room(result)
        if self._seq >= self.max_entries:
            self.close()
            self.segment += 1
            self._open()
        g = self.entries.create_group(f"{self._seq:08d}")
        self._seq += 1
        for key in _ARRAYS:
            g.create_dataset(key, data=np.asarray(getattr(result, key)))
        fp = g.create_group("fingerprints")
        for key, vec in result.fingerprints.items():
            fp.create_dataset(key, data=np.asarray(vec, dtype=np.float64))
        a = g.attrs
        a["id"] = result.id
        a["status"] = int(result.status)
        a["error"] = result.error
        a["formula"] = result.formula
        for key in _SCALARS:
            a[key] = float(getattr(result, key))
        a["times"] = json.dumps(dict(zip(PHASES, times.as_tuple(), strict=True)))
        a["input_digest"] = digest
        a["complete"] = 1
        self.file.flush()

    def _check_room(self, result: StructureResult) -> None:
        """StoreError when the journal's file system has less room than JOURNAL_HEADROOM plus twice
        this entry: HDF5 is stopped before it meets a full disk, which can leave its state broken."""
        entry = sum(np.asarray(getattr(result, key)).nbytes for key in _ARRAYS)
        entry += sum(np.asarray(v).nbytes for v in result.fingerprints.values()) + 16384
        try:
            fs = os.statvfs(self.directory)
        except OSError:
            return  # cannot tell: the write itself will say
        free = fs.f_bavail * fs.f_frsize
        if free < JOURNAL_HEADROOM + 2 * entry:
            raise StoreError(
                f"No space left on device for the journal {self.directory}: {free / 1e3:.0f} kB free, "
                f"{(JOURNAL_HEADROOM + 2 * entry) / 1e3:.0f} kB needed to journal {result.id!r} safely"
            )

    def close(self) -> None:
        """Close the segment; an error here (a full disk after a failed append) is logged, not raised:
        entries already flushed stay readable and the unfinished one is never marked complete."""
        if self.file is not None and self.file.id.valid:
            try:
                self.file.close()
            except (OSError, RuntimeError) as exc:
                log.warning("closing journal shard %s failed: %s", self.path, exc)

    def __enter__(self) -> JournalShard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_entry(f: h5py.File, group: str, index: int) -> tuple[StructureResult, TaskTimes]:
    """The StructureResult (with global `index`) and times stored in one entry."""
    g = f[group]
    a = g.attrs

    def text(key):
        v = a[key]
        return v.decode() if isinstance(v, bytes) else str(v)

    arrays = {key: g[key][()] for key in _ARRAYS}
    fps = {key: g["fingerprints"][key][()] for key in g["fingerprints"]}
    times = json.loads(text("times"))
    return (
        StructureResult(
            index=index,
            id=text("id"),
            status=int(a["status"]),
            error=text("error"),
            formula=text("formula"),
            fingerprints=fps,
            **arrays,
            **{key: float(a[key]) for key in _SCALARS},
        ),
        TaskTimes(*(float(times.get(p, 0.0)) for p in PHASES)),
    )


def load_entries(refs: Mapping[int, EntryRef]) -> dict[int, tuple[StructureResult, TaskTimes]]:
    """Read the entries {global index: EntryRef}, opening each shard once (read-only)."""
    by_shard: dict[str, list[tuple[int, EntryRef]]] = {}
    for index, ref in refs.items():
        by_shard.setdefault(ref.shard, []).append((index, ref))
    out = {}
    for shard, items in sorted(by_shard.items()):
        try:
            with open_shard(shard) as f:
                for index, ref in items:
                    out[index] = read_entry(f, ref.group, index)
        except (OSError, KeyError) as exc:
            raise StoreError(f"cannot read journal shard {shard}: {exc}") from exc
    return out


def remove_journal(directory: Path) -> None:
    """Delete the journal (after the store was renamed into place)."""
    if directory.is_dir():
        shutil.rmtree(directory)
