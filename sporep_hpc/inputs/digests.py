"""Input digests: SHA-256 of what a run computes from, for the whole run (is the store up to date?)
and per record (is a journal entry still current?).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from ..structures import CompactStructure, properties_json
from .records import InputRecord


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:  # an unreadable band file: its record fails later; the name stands in
        return f"unreadable:{path}:{exc.strerror}"
    return h.hexdigest()


def _record_chunks(r: InputRecord, file_hashes: dict[str, str]):
    """(bytes, in_run, in_record) pieces hashed for one record, in order: the run's digest takes the
    properties, the record's does not (see `input_digests`); the rest enters both."""
    yield json.dumps([r.id, r.kind, properties_json(r.properties)]).encode(), True, False
    yield json.dumps([r.id, r.kind]).encode(), False, True
    s = r.structure
    if isinstance(s, CompactStructure):
        yield json.dumps([list(s.species), list(s.pbc)]).encode(), True, True
        yield np.ascontiguousarray(s.lattice, dtype=np.float64).tobytes(), True, True
        yield np.ascontiguousarray(s.frac_coords, dtype=np.float64).tobytes(), True, True
    elif s is not None:  # disordered or broken pymatgen structure (it fails validation, but is an input)
        try:
            with np.errstate(all="ignore"):  # NaN or inf lattices: pymatgen's arithmetic warns
                text = json.dumps(s.as_dict(), sort_keys=True, default=str)
        except Exception:  # pymatgen cannot serialise it: its formula and sizes stand in
            text = f"{type(s).__name__}:{len(s)}"
        yield text.encode("utf-8", "backslashreplace"), True, True
    if r.kind == "bands":
        path = r.source.split("#")[0] if ".h5#" in r.source or ".hdf5#" in r.source else r.source
        if path not in file_hashes:
            file_hashes[path] = _file_sha256(path)
        yield file_hashes[path].encode(), True, True
    yield b"\0", True, True


def input_digests(records: Sequence[InputRecord]) -> tuple[str, list[str]]:
    """The run's inputs digest (`inputs_digest`) and one digest per record, in one pass.

    A record's digest (SHA-256 hex) covers its id, kind, structure (bit for bit) and band-file
    content: everything its journal entry is computed from. Its properties are left out: they are
    not journaled (the store takes them from the current records), so a changed property does not
    make an entry stale. Band files are hashed once. Serial (rank 0 computes it for everyone).
    """
    whole = hashlib.sha256()
    file_hashes: dict[str, str] = {}
    each = []
    for r in records:
        one = hashlib.sha256()
        for chunk, in_run, in_record in _record_chunks(r, file_hashes):
            if in_run:
                whole.update(chunk)
            if in_record:
                one.update(chunk)
        each.append(one.hexdigest())
    return whole.hexdigest(), each


def inputs_digest(records: Sequence[InputRecord]) -> str:
    """SHA-256 (hex) of what a run computes from: per record, in order, its id, kind, properties and
    structure (lattice, species, fractional coordinates, bit for bit), and for imported band files
    the file's content. File names and locations do not enter: a moved input directory is the same
    input. Serial (rank 0 computes it for everyone).
    """
    return input_digests(records)[0]
