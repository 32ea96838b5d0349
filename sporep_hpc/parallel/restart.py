"""What to do about an existing store and journal before a run: nothing (up to date), resume, start
afresh, or refuse (other parameters or inputs; a file that is not a store is never overwritten).

Serial: rank 0 decides and the driver broadcasts the decision.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..config import diff_texts
from ..errors import ParameterError, SporepError, StoreError
from ..store import STATUS_FAILED, STATUS_PENDING, open_store
from .journal import journal_matches

log = logging.getLogger("sporep_hpc.run")


def check_existing_store(
    output: Path, jdir: Path, params: Any, parameters_json: str, digest: str, restart: str
) -> list[tuple[str, str]] | None:
    """What to do about an existing `output` (rank 0 only, serial).

    Returns
    -------
    None
        Compute: there is no store, or ``restart="fresh"``, or `jdir` is the journal of a run with
        these very parameters and inputs (an interrupted ``--restart fresh`` run, resumed).
    list of (id, reason)
        The store is complete and was made with the same parameters and inputs: nothing to do.
        The list holds its failed structures.

    A store with the same parameters and inputs but pending rows (structures the machinery lost: a
    missing journal entry, an internal error) is resumed: only those rows are computed again.

    Raises
    ------
    ParameterError
        The store was made with other parameters (the differences are listed).
    StoreError
        `output` is a directory or not a sporep-hpc store (never overwritten, not even with
        ``restart="fresh"``), or a store made from other inputs.
    """
    if output.is_dir():
        raise StoreError(f"output {output} is a directory; give the store's file name")
    if not output.exists():
        return None
    fresh = "rerun with --restart fresh to replace it, or choose another output"
    try:
        with open_store(output) as store:
            stored_json = store.attrs.get("parameters", "{}")
            stored_digest = store.inputs_digest
            ids, status, errors = store.ids, store.status.copy(), store.errors
    except (SporepError, OSError, KeyError) as exc:
        raise StoreError(
            f"{output} exists and is not a readable sporep-hpc store ({exc}); it is never overwritten "
            "(not even with --restart fresh): remove it yourself or choose another output"
        ) from exc
    if restart == "fresh":
        return None
    try:
        changes = diff_texts(json.loads(stored_json), json.loads(parameters_json))
    except ValueError:
        changes = ["parameters: unreadable in the store"]
    if not changes and stored_digest == digest:
        pending = int(np.sum(status == STATUS_PENDING))
        if not pending:
            return [(id, errors[i]) for i, id in enumerate(ids) if status[i] == STATUS_FAILED]
        log.info("%s has %d structure(s) not computed by an earlier run (lost or interrupted, not failed for "
                 "a reason of their own): computing them", output, pending)
        return None
    if journal_matches(jdir, params, digest):
        log.info("%s exists but the journal %s belongs to a run with these parameters and inputs: "
                 "resuming it (the store will be replaced)", output, jdir)
        return None
    if changes:
        raise ParameterError(
            f"the store {output} was made with other parameters ({'; '.join(changes)}); {fresh}"
        )
    if stored_digest is None:
        why = "does not record its inputs (written by an older version, or merged)"
    elif stored_digest != digest:
        why = "was made from other inputs (structures, properties or band files differ)"
    else:
        why = "is incomplete (pending rows)"
    raise StoreError(f"the store {output} {why}; {fresh}")
