"""What the inputs of a run mean: files, directories (calculation folders one unit each),
``examples:<spec>`` sets and our own stores, as independent units (cheap to list) expanded into input
records (the expensive part, shared out over the ranks by the driver).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..config import IMAGES
from ..errors import SporepError
from ..examples import load_set
from ..store import STATUS_DONE as DONE
from ..store import open_store
from .files import InputUnit, list_units, unit_records
from .records import InputRecord, check_unique_ids

EXAMPLES_PREFIX = "examples:"


# ---------------------------------------------------------------------------- inputs
def input_units(inputs: Iterable[str]) -> list[InputUnit]:
    """The inputs as independent units (`InputUnit`: kind, source, base id, note), in order; cheap (names,
    and the first bytes of ``.xml``, ``.in`` and ``.out`` files).

    kind is "examples" (a built-in set spec), "file" (one file of the inputs, directories expanded) or
    "calculation" (the file a calculation folder is read from).
    """
    units: list[InputUnit] = []
    for item in inputs:
        item = str(item)
        if item.startswith(EXAMPLES_PREFIX):
            units.append(InputUnit("examples", item, ""))
        else:
            units.extend(list_units([item]))
    return units


def expand_unit(unit: InputUnit, images: str = IMAGES.default) -> list[InputRecord]:
    """The input records of one unit (reads the file or builds the set); `images`: see
    `sporep_hpc.config.IMAGES`."""
    unit = InputUnit(*unit)
    if unit.kind == "examples":
        return [
            InputRecord(id, unit.source, "structure", structure, "", properties)
            for id, structure, properties in load_set(unit.source[len(EXAMPLES_PREFIX) :])
        ]
    records = []
    for record in unit_records(unit, IMAGES.check(images)):
        if record.kind == "bands" and Path(record.source).suffix.lower() in (".h5", ".hdf5"):
            records.extend(_store_records(record))
        else:
            records.append(record)
    return records


def resolve_inputs(inputs: Iterable[str], max_id_bytes: int = 64, images: str = IMAGES.default
                   ) -> list[InputRecord]:
    """Input records for files, directories, ``examples:<spec>`` sets and our own stores (``*.h5``).

    Ids are checked for uniqueness (InputError before anything runs). Serial; the driver
    distributes `expand_unit` over the ranks instead.
    """
    records = [r for unit in input_units(inputs) for r in expand_unit(unit, images)]
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
