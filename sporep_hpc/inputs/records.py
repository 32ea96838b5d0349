"""Input records: one item of a run's inputs before any computation, and its id rules.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..errors import InputError
from ..structures import CompactStructure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InputRecord:
    """One input item before any computation.

    Attributes
    ----------
    id : str
        Stable identifier, unique in a run (at most 64 bytes of UTF-8).
    source : str
        File the item came from (or ``examples:<spec>``).
    kind : str
        ``"structure"`` (computed from the structure), ``"bands"`` (imported band file:
        `source` is read by the band readers) or ``"failed"`` (unreadable: see `error`).
    structure : pymatgen Structure, CompactStructure or None
        The structure (None for unreadable inputs and for band files without one; vasprun.xml
        and our stores have one); `as_structure` gives the pymatgen object in either case.
    error : str
        One-line reason when `kind` is ``"failed"``, else empty.
    properties : dict or None
        Extra per-structure properties (built-in sets; ``info`` of extended XYZ frames; the
        ``properties`` of pymatgen JSON structures), stored as JSON in /structures/properties.
    note : str
        How the input was chosen, for the dry-run plan (a calculation folder: which file and why), else empty.
    """

    id: str
    source: str
    kind: str
    structure: Any = None
    error: str = ""
    properties: Any = None
    note: str = ""


def compact_record(record: InputRecord) -> InputRecord:
    """`record` with its structure in compact form (see CompactStructure); a structure pymatgen cannot
    take apart is kept as it is (validation then fails it with its reason)."""
    if record.structure is None or isinstance(record.structure, CompactStructure):
        return record
    try:
        compact = CompactStructure.from_structure(record.structure)
    except Exception as exc:  # pymatgen raises many types on a broken structure
        log.debug("%s: kept as a pymatgen structure (%s: %s)", record.id, type(exc).__name__, exc)
        return record
    return replace(record, structure=compact)


def _is_control(char: str) -> bool:
    """True for control characters (Cc) and lone surrogates (Cs: undecodable bytes of a file name)."""
    return unicodedata.category(char) in ("Cc", "Cs")


def clean_id(text: str) -> str:
    """`text` with every control character (newline, tab, NUL, U+001F, ...) and every byte of a
    file name that is not UTF-8 (a lone surrogate) replaced by ``_``.

    Ids never hold control characters: they are printed on one line, and the journal marks
    k-point chunks with one (`sporep_hpc.pipeline.chunk_id`), so no structure id can
    look like a chunk of another.
    """
    return "".join("_" if _is_control(c) else c for c in text)


def check_unique_ids(records: Sequence[InputRecord], max_bytes: int = 64) -> None:
    """Raise InputError if two records share an id, or an id is empty, longer than `max_bytes`
    or holds a control character (ids made from file names never do: see `clean_id`)."""
    seen: dict[str, str] = {}
    for r in records:
        if not r.id or len(r.id.encode()) > max_bytes:
            raise InputError(f"id {r.id!r} from {r.source} must be 1 to {max_bytes} bytes long")
        if any(_is_control(c) for c in r.id):
            raise InputError(f"id {r.id!r} from {r.source} must not contain control characters")
        if r.id in seen:
            raise InputError(f"duplicate id {r.id!r}: from {seen[r.id]} and from {r.source}")
        seen[r.id] = r.source
