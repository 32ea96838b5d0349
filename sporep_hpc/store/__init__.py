"""The HDF5 store (DESIGN.md §5): schema, mpio/serial writer, reader, pandas export.

Public names: `open_store`, `Store`, `to_dataframe`, `read_band_structures`,
`mpio_available`, `open_h5`, `SCHEMA_VERSION`, `write_store`, `StructureResult`.
"""

from .h5 import mpio_available, open_h5, write_rows
from .reader import Store, open_store, read_band_structures, to_dataframe
from .schema import (
    SCHEMA_VERSION,
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_PENDING,
    StructureResult,
    failed_result,
    from_fixed,
    structure_fields,
    to_fixed,
)
from .writer import FingerprintMeta, StoreHeader, write_store

__all__ = [
    "SCHEMA_VERSION",
    "STATUS_DONE",
    "STATUS_FAILED",
    "STATUS_PENDING",
    "FingerprintMeta",
    "Store",
    "StoreHeader",
    "StructureResult",
    "failed_result",
    "from_fixed",
    "mpio_available",
    "open_h5",
    "open_store",
    "read_band_structures",
    "structure_fields",
    "to_dataframe",
    "to_fixed",
    "write_rows",
    "write_store",
]
