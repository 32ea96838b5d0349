"""What a path means: structure files, directories, band files, our own stores and built-in sets,
turned into input records with stable ids and input digests.

Modules: `records` (InputRecord, ids), `files` (reading structure files), `resolve` (units of a
run's inputs and their expansion into records), `digests` (SHA-256 of inputs).
"""

from .digests import input_digests, inputs_digest
from .files import (
    InputUnit,
    calculation,
    collect_inputs,
    list_input_files,
    list_units,
    read_file,
    read_structures,
    records_from_file,
)
from .records import InputRecord, check_unique_ids, clean_id, compact_record
from .resolve import EXAMPLES_PREFIX, expand_unit, input_units, resolve_inputs

__all__ = [
    "EXAMPLES_PREFIX",
    "InputRecord",
    "InputUnit",
    "calculation",
    "check_unique_ids",
    "clean_id",
    "collect_inputs",
    "compact_record",
    "expand_unit",
    "input_digests",
    "input_units",
    "inputs_digest",
    "list_input_files",
    "list_units",
    "read_file",
    "read_structures",
    "records_from_file",
    "resolve_inputs",
]
