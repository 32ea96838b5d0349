"""Agreement helpers: a SporepError on one rank is raised on every rank before the next collective.

Errors raised through these helpers carry ``agreed = True``: every rank raises the same error, so
the caller may exit normally with its code instead of aborting the job (STYLE.md §2.9).
`comm` may be None (serial use).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import SporepError, StoreError


def _as_store_error(exc: OSError) -> StoreError:
    return StoreError(f"{exc.filename or 'file system'}: {exc.strerror or exc}")


def _capture(fn: Callable[[], Any]) -> tuple[Any, SporepError | None]:
    """`fn`'s value, or the SporepError it raised (an OSError becomes a StoreError)."""
    try:
        return fn(), None
    except SporepError as exc:
        return None, exc
    except OSError as exc:
        return None, _as_store_error(exc)


def _raise_agreed(error: SporepError | None) -> None:
    if error is not None:
        error.agreed = True  # raised on every rank
        raise error


def root_call(comm: Any, fn: Callable[[], Any]) -> Any:
    """Run `fn` on rank 0 and broadcast its value; a SporepError there is raised on every rank."""
    value, error = _capture(fn) if comm is None or comm.rank == 0 else (None, None)
    if comm is not None and comm.size > 1:
        value, error = comm.bcast((value, error), root=0)
    _raise_agreed(error)
    return value


def all_call(comm: Any, fn: Callable[[], Any]) -> Any:
    """Run `fn` on every rank; a SporepError on any rank (the lowest rank's first) is raised on all."""
    value, error = _capture(fn)
    if comm is not None and comm.size > 1:
        error = next((e for e in comm.allgather(error) if e is not None), None)
    _raise_agreed(error)
    return value
