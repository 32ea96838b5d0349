"""The HDF5 store (DESIGN.md §5): schema, mpio/serial writer, reader, pandas export.

Public names: `open_store`, `Store`, `to_dataframe`, `read_band_structures`,
`mpio_available`, `open_h5`, `SCHEMA_VERSION`, `DATASETS`, `write_store`,
`write_store_atomically`, `StructureResult`, `timestamp`.
"""

from .h5 import mpio_available, open_h5, write_rows
from .reader import Store, open_store, read_band_structures, to_dataframe
from .schema import (
    DATASETS,
    SCHEMA_VERSION,
    STATUS_DONE,
    STATUS_FAILED,
    STATUS_PENDING,
    StructureResult,
    failed_result,
    from_fixed,
    structure_fields,
    timestamp,
    to_fixed,
)
from .writer import (
    FingerprintMeta,
    StoreHeader,
    partial_path,
    write_store,
    write_store_atomically,
    writes_collectively,
)

__all__ = [
    "DATASETS",
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
    "partial_path",
    "read_band_structures",
    "structure_fields",
    "timestamp",
    "to_dataframe",
    "to_fixed",
    "write_rows",
    "write_store",
    "write_store_atomically",
    "writes_collectively",
]
