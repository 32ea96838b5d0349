"""Per-rank journal shards: ``<store>.journal/rank-<r>[.<k>].h5``, finished structures in batches.

Each rank buffers its finished structures and writes them as one batch file, a segment of its
shard (``rank-<r>.h5``, ``rank-<r>.1.h5``, ...), when BATCH_ENTRIES entries or ``journal_interval``
seconds of computation (an execution option, default 10 s) are buffered, when the task loop ends,
and when the run stops. A batch is written to a temporary name and renamed into place, so a
segment file is always complete: a killed run loses at most its unwritten batch (at most
``journal_interval`` seconds of computation per rank, plus the task in progress) and never leaves a
damaged segment.

A segment is columnar (one dataset per field for all its entries, ragged arrays with offsets):
StructureResults (status done or failed + message), their phase times and ``input_digest``, the
SHA-256 of the structure's input when it was computed (`inputs.input_digests`). The journal's
``parameters.json`` records the run parameters; a journal made with other parameters is refused
(see `prepare_journal`). Shards are opened for reading without HDF5's file lock, so a reader
(`sporep-hpc info`) never blocks the run that writes them. A shard that HDF5 cannot open is
skipped (its structures are recomputed); only the run that holds the store's lock
(`sporep_hpc.store.lock`), the one writer, sets such a shard aside (``*.corrupt-<n>``): a reader
reports it and never moves it (a file in use is not a damaged file).

On resume an entry is reused only if its ``input_digest`` equals the digest of the structure's
current input (`merge_refs` with `digests`): a structure file edited under the same id is
recomputed. Segments of older versions (another layout) are not read: their structures are
recomputed, the safe choice at the price of one recomputation.

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

from ..config import RunParameters
from ..errors import ParameterError, StoreError
from ..params import diff_texts
from ..pipeline import PHASES, TaskTimes, structure_id
from ..store.schema import StructureResult

log = logging.getLogger(__name__)

PARAMETERS_FILE = "parameters.json"
#: SHA-256 of the run's inputs (tasks.inputs_digest) when the journal was created.
INPUTS_FILE = "inputs.sha256"
#: Marker of failures that are not the structure's fault (see tasks._failure): retried on resume.
INTERNAL = "internal error"
_SCALARS = ("n_electrons", "fermi_energy", "vbm", "cbm", "band_gap")
#: Layout of a segment file (attribute ``format``); segments of another layout are not read.
SEGMENT_FORMAT = "sporep-journal-2"


def journal_dir(store_path: str | Path) -> Path:
    """``<store>.journal`` next to the store."""
    p = Path(store_path)
    return p.with_name(p.name + ".journal")


#: Bytes kept free on the journal's file system (besides twice the entry being written): HDF5's
#: metadata flushes need room, and a write that meets a full disk can leave HDF5's state broken.
JOURNAL_HEADROOM = 256 * 1024
#: A batch is written when it holds this many entries, or `batch_seconds` of computation (the
#: execution option ``journal_interval``: the most a killed rank can lose, besides its current task).
BATCH_ENTRIES = 256
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
    """Where a journal entry lives: segment file, row in it, its status, whether a rerun retries it,
    and the input digest of its structure when it was computed.

    `retry` is True for a structure that failed with an internal (unexpected) error: a transient
    cause (a killed library, a full disk) is not a property of the structure, so a resumed run
    computes it again. Failures with a reason about the structure itself are kept.
    """

    shard: str
    row: int
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
            changes = _journal_changes(pfile, params)
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreError(f"{pfile} is unreadable ({exc}); rerun with --restart fresh") from exc
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
        changes = _journal_changes(pfile, params)
    except (ValueError, TypeError, KeyError):
        return False
    return not changes and ifile.read_text().strip() == inputs_digest


def _journal_changes(pfile: Path, params: RunParameters) -> list[str]:
    """``name: old -> new`` between the journal's recorded parameters, as written (a parameter the
    journal does not record is a change: it was computed before that parameter existed), and `params`."""
    RunParameters.from_json(pfile.read_text())  # readable as parameters at all
    return diff_texts(json.loads(pfile.read_text()), json.loads(params.to_json()))


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
    try:
        with open_shard(shard) as f:
            if f.attrs.get("format") != SEGMENT_FORMAT:
                log.info("journal segment %s was written by an older version: not read", shard)
                return []
            ids, errors, digests = (_texts(f[key]) for key in ("id", "error", "input_digest"))
            status = f["status"][()]
        out = []
        for row, id in enumerate(ids):
            retry = status[row] != 1 and INTERNAL in errors[row]
            out.append((id, EntryRef(str(shard), row, int(status[row]), retry, digests[row])))
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


def _texts(dset: h5py.Dataset) -> list[str]:
    return [_text(v) for v in dset[()]]


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
    """This rank's shard: finished structures buffered and written in batches (a context manager).

    Every batch is a new segment file, written under a temporary name and renamed into place; a
    file of an earlier (possibly killed) run is never reopened. `flush` writes the buffer now;
    `close` flushes and may raise like `flush` (a full disk: the buffered entries are lost, the
    segments already written are intact).
    """

    def __init__(self, directory: Path, rank: int, params_json: str, batch_entries: int = BATCH_ENTRIES,
                 batch_seconds: float = 0.0):
        self.directory, self.rank, self.params_json = directory, rank, params_json
        self.batch_entries, self.batch_seconds = batch_entries, batch_seconds
        existing = _segments(directory, rank)
        self.segment = max(existing) + 1 if existing else 0
        self.path = shard_path(directory, rank, self.segment)  # the next segment to write
        self._buffer: list[tuple[StructureResult, TaskTimes, str]] = []

    def append(self, result: StructureResult, times: TaskTimes, digest: str = "") -> None:
        """Buffer one finished structure; write the batch when it is full (`batch_entries` entries or
        `batch_seconds` of computation; 0 writes every entry at once). An entry is in the journal
        once its batch is written.

        `digest` is the input digest of the structure (`inputs.input_digests`); an entry without
        one is never reused by a resume.
        """
        self._buffer.append((result, times, digest))
        work = sum(t.total for _, t, _ in self._buffer)
        if len(self._buffer) >= self.batch_entries or work >= self.batch_seconds:
            self.flush()

    def flush(self) -> None:
        """Write the buffered entries as one new segment (temporary name, then rename)."""
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        self._check_room(batch)
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with h5py.File(tmp, "w") as f:
                _write_segment(f, batch, self.params_json)
            os.replace(tmp, self.path)
        except (OSError, RuntimeError, ValueError) as exc:
            tmp.unlink(missing_ok=True)
            raise StoreError(f"cannot write journal segment {self.path}: {exc}") from exc
        self.segment += 1
        self.path = shard_path(self.directory, self.rank, self.segment)

    def _check_room(self, batch: list) -> None:
        """StoreError when the journal's file system has less room than JOURNAL_HEADROOM plus twice
        this batch: HDF5 is stopped before it meets a full disk, which can leave its state broken."""
        size = 16384 + sum(_entry_bytes(result) for result, _, _ in batch)
        try:
            fs = os.statvfs(self.directory)
        except OSError:
            return  # cannot tell: the write itself will say
        free = fs.f_bavail * fs.f_frsize
        need = JOURNAL_HEADROOM + 2 * size
        if free < need:
            raise StoreError(
                f"No space left on device for the journal {self.directory}: {free / 1e3:.0f} kB free, "
                f"{need / 1e3:.0f} kB needed to journal {len(batch)} structure(s) safely"
            )

    def close(self) -> None:
        """Write what is buffered."""
        self.flush()

    def __enter__(self) -> JournalShard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _entry_bytes(r: StructureResult) -> int:
    arrays = (r.cell, r.numbers, r.positions, r.kpoints, r.weights, r.eigenvalues, *r.fingerprints.values())
    return sum(np.asarray(a).nbytes for a in arrays)


def _ragged(f: h5py.File, name: str, arrays: list[np.ndarray], tail: tuple, dtype) -> None:
    """Dataset `name` (concatenation of `arrays`, each reshaped to (-1, *tail)) and `name`_offset."""
    blocks = [np.asarray(a, dtype=dtype).reshape(-1, *tail) for a in arrays]
    f["offset/" + name] = np.concatenate(([0], np.cumsum([len(b) for b in blocks]))).astype(np.int64)
    f[name] = np.concatenate(blocks) if blocks else np.zeros((0, *tail), dtype=dtype)


def _write_segment(f: h5py.File, batch: list[tuple[StructureResult, TaskTimes, str]], params_json: str
                   ) -> None:
    """One segment: the entries of `batch`, a dataset per field (ragged ones with offsets)."""
    results = [r for r, _, _ in batch]
    text = h5py.string_dtype()
    f.attrs["format"] = SEGMENT_FORMAT
    f.attrs["parameters"] = params_json
    f.create_dataset("id", data=[r.id for r in results], dtype=text)
    f.create_dataset("error", data=[r.error for r in results], dtype=text)
    f.create_dataset("formula", data=[r.formula for r in results], dtype=text)
    f.create_dataset("input_digest", data=[d for _, _, d in batch], dtype=text)
    f["status"] = np.array([r.status for r in results], dtype=np.int8)
    f["scalars"] = np.array([[float(getattr(r, k)) for k in _SCALARS] for r in results], dtype=np.float64)
    f["times"] = np.array([t.as_tuple() for _, t, _ in batch], dtype=np.float64).reshape(-1, len(PHASES))
    f["cell"] = np.array([np.asarray(r.cell, dtype=np.float64).reshape(3, 3) for r in results])
    _ragged(f, "numbers", [r.numbers for r in results], (), np.int64)
    _ragged(f, "positions", [r.positions for r in results], (3,), np.float64)
    _ragged(f, "kpoints", [r.kpoints for r in results], (3,), np.float64)
    _ragged(f, "weights", [r.weights for r in results], (), np.float64)
    _ragged(f, "eigenvalues", [r.eigenvalues for r in results], (), np.float64)
    shapes = np.zeros((len(results), 4), dtype=np.int64)  # ndim, then the shape padded with zeros
    for k, r in enumerate(results):
        shape = np.shape(r.eigenvalues)
        shapes[k, 0], shapes[k, 1 : 1 + len(shape)] = len(shape), shape
    f["eigenvalue_shape"] = shapes
    for name in sorted({n for r in results for n in r.fingerprints}):
        rows = [k for k, r in enumerate(results) if name in r.fingerprints]
        g = f.create_group(f"fingerprints/{name}")
        g["rows"] = np.array(rows, dtype=np.int64)
        g["values"] = np.array([np.asarray(results[k].fingerprints[name], dtype=np.float64) for k in rows])


def read_entries(f: h5py.File, rows: Mapping[int, int]) -> dict[int, tuple[StructureResult, TaskTimes]]:
    """{global index: (StructureResult, times)} of the segment rows `rows` ({global index: row}); each
    column of the segment is read once."""
    col = {name: f[name][()] for name in ("status", "scalars", "times", "cell", "eigenvalue_shape")}
    texts = {name: _texts(f[name]) for name in ("id", "error", "formula")}
    ragged = {name: (f["offset/" + name][()], f[name][()])
              for name in ("numbers", "positions", "kpoints", "weights", "eigenvalues")}
    prints = {name: (g["rows"][()], g["values"][()]) for name, g in f["fingerprints"].items()} \
        if "fingerprints" in f else {}
    out = {}
    for index, row in rows.items():
        arrays = {name: data[offset[row] : offset[row + 1]] for name, (offset, data) in ragged.items()}
        ndim, *shape = (int(x) for x in col["eigenvalue_shape"][row])
        arrays["eigenvalues"] = arrays["eigenvalues"].reshape(shape[:ndim])
        fingerprints = {name: values[int(k)] for name, (at, values) in prints.items()
                        for k in np.flatnonzero(at == row)[:1]}
        scalars = col["scalars"][row]
        result = StructureResult(
            index=index, id=texts["id"][row], status=int(col["status"][row]), error=texts["error"][row],
            formula=texts["formula"][row], cell=col["cell"][row], fingerprints=fingerprints, **arrays,
            **{key: float(scalars[k]) for k, key in enumerate(_SCALARS)},
        )
        out[index] = (result, TaskTimes(*(float(t) for t in col["times"][row])))
    return out


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def load_entries(refs: Mapping[int, EntryRef]) -> dict[int, tuple[StructureResult, TaskTimes]]:
    """Read the entries {global index: EntryRef}, opening each segment once (read-only)."""
    by_shard: dict[str, list[tuple[int, EntryRef]]] = {}
    for index, ref in refs.items():
        by_shard.setdefault(ref.shard, []).append((index, ref))
    out = {}
    for shard, items in sorted(by_shard.items()):
        try:
            with open_shard(shard) as f:
                out.update(read_entries(f, {index: ref.row for index, ref in items}))
        except (OSError, KeyError, ValueError) as exc:
            raise StoreError(f"cannot read journal shard {shard}: {exc}") from exc
    return out


def remove_journal(directory: Path) -> None:
    """Delete the journal (after the store was renamed into place)."""
    if directory.is_dir():
        shutil.rmtree(directory)
