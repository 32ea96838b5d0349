"""Opening HDF5 files: mpio when h5py has MPI and several ranks share the file, else the default driver."""

from __future__ import annotations

import os
from typing import Any

import h5py
import numpy as np

from .._validation import check_choice
from ..errors import StoreError

MODES = ("r", "r+", "w", "w-", "x", "a")


def mpio_available() -> bool:
    """True when h5py was built with MPI and SPOREP_FORCE_SERIAL_HDF5 is not "1"."""
    return bool(h5py.get_config().mpi) and os.environ.get("SPOREP_FORCE_SERIAL_HDF5", "") != "1"


def open_h5(path: Any, mode: str = "r", comm: Any = None) -> h5py.File:
    """An h5py.File; driver="mpio" on `comm` when `comm` has more than one rank and mpio is available.

    With `comm` of size > 1 and no mpio, this is an error: the caller must then
    funnel the I/O through one rank (the serial fallback).
    """
    check_choice("mode", mode, MODES)
    try:
        if comm is not None and comm.size > 1:
            if not mpio_available():
                raise StoreError(
                    f"cannot open {path} on {comm.size} ranks: h5py was built without MPI "
                    "(or SPOREP_FORCE_SERIAL_HDF5=1); use the serial fallback"
                )
            return h5py.File(path, mode, driver="mpio", comm=comm)
        return h5py.File(path, mode)
    except (OSError, FileNotFoundError) as exc:
        raise StoreError(f"cannot open HDF5 file {path} (mode {mode!r}): {exc}") from exc


def is_mpio(f: h5py.File) -> bool:
    """True when `f` was opened with the mpio driver."""
    return f.driver == "mpio"


def write_rows(dset: h5py.Dataset, start: int, data: np.ndarray) -> None:
    """Write `data` into rows [start, start + len(data)) of `dset`.

    With the mpio driver the write is collective: every rank of the file's
    communicator must call this, in the same order, also with ``len(data) == 0``
    (an empty selection is written). h5py's ``dset[a:b] = x`` skips empty selections
    and would leave the other ranks waiting, so the low-level API is used here.
    """
    data = np.ascontiguousarray(data, dtype=dset.dtype)
    n = int(data.shape[0]) if data.ndim else 0
    if dset.size == 0:  # nothing to write on any rank (the size is global): no I/O call at all
        if n:
            raise StoreError(f"{dset.name}: {n} rows do not fit an empty dataset")
        return
    if n and data.shape[1:] != dset.shape[1:]:
        raise StoreError(f"{dset.name}: rows of shape {data.shape[1:]} do not fit {dset.shape[1:]}")
    fspace = dset.id.get_space()
    if n == 0:
        fspace.select_none()
        mspace = h5py.h5s.create_simple((1,))
        mspace.select_none()
        buf = np.zeros(1, dtype=dset.dtype)
    else:
        offset = (start,) + (0,) * (dset.ndim - 1)
        count = (n, *dset.shape[1:])
        fspace.select_hyperslab(offset, count)
        mspace = h5py.h5s.create_simple(count)
        buf = data
    dxpl = None
    if is_mpio(dset.file):
        dxpl = h5py.h5p.create(h5py.h5p.DATASET_XFER)
        dxpl.set_dxpl_mpio(h5py.h5fd.MPIO_COLLECTIVE)
    dset.id.write(mspace, fspace, buf, dxpl=dxpl)
