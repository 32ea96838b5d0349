"""What the inputs of a run mean: files, directories, ``examples:<spec>`` sets and our own stores,
as independent units (cheap to list) expanded into input records (the expensive part, shared out
over the ranks by the driver).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import SporepError
from ..examples import load_set
from ..store import STATUS_DONE as DONE
from ..store import open_store
from .files import list_input_files, records_from_file
from .records import InputRecord, check_unique_ids

EXAMPLES_PREFIX = "examples:"


# ---------------------------------------------------------------------------- inputs
def input_units(inputs: Iterable[str]) -> list[tuple[str, str, str]]:
    """The inputs as independent units (kind, source, base id), in order; cheap (names only).

    kind is "examples" (a built-in set spec) or "file" (one file of the inputs, directories expanded).
    """
    units: list[tuple[str, str, str]] = []
    for item in inputs:
        item = str(item)
        if item.startswith(EXAMPLES_PREFIX):
            units.append(("examples", item, ""))
        else:
            units.extend(("file", str(path), base) for path, base in list_input_files([item]))
    return units


def expand_unit(unit: tuple[str, str, str]) -> list[InputRecord]:
    """The input records of one unit (reads the file or builds the set)."""
    kind, source, base = unit
    if kind == "examples":
        return [
            InputRecord(id, source, "structure", structure, "", properties)
            for id, structure, properties in load_set(source[len(EXAMPLES_PREFIX) :])
        ]
    records = []
    for record in records_from_file(source, base):
        if record.kind == "bands" and Path(record.source).suffix.lower() in (".h5", ".hdf5"):
            records.extend(_store_records(record))
        else:
            records.append(record)
    return records


def resolve_inputs(inputs: Iterable[str], max_id_bytes: int = 64) -> list[InputRecord]:
    """Input records for files, directories, ``examples:<spec>`` sets and our own stores (``*.h5``).

    Ids are checked for uniqueness (InputError before anything runs). Serial; the driver
    distributes `expand_unit` over the ranks instead.
    """
    records = [r for unit in input_units(inputs) for r in expand_unit(unit)]
    check_unique_ids(records, max_id_bytes)
    return records


def _store_records(record: InputRecord) -> list[InputRecord]:
    """One "bands" record per computed structure of one of our stores (source ``path#id``)."""
    try:
        with open_store(record.source) as store:
            out = []
            properties = store.all_properties()
            for i, id in enumerate(store.ids):
                if store.status[i] == DONE:
                    structure = store.structure(i) if store.atoms(i)[1].size else None
                    source = f"{record.source}#{id}"
                    out.append(InputRecord(id, source, "bands", structure, properties=properties[i] or None))
            return out
    except SporepError as exc:
        return [InputRecord(record.id, record.source, "failed", error=str(exc))]
