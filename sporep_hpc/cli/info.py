"""`sporep-hpc info store.h5`: what is in a store (or, before assembly, in its journal)."""

from __future__ import annotations

import json
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="summarise a store", description="Summarise a sporep-hpc store.")
    p.add_argument("store", help="the HDF5 store (or a store whose run is still in its journal)")
    p.add_argument("--failures", type=int, default=20, help="list at most this many failures (default 20)")
    p.set_defaults(run=info_command)


def describe_store(path: str | Path, max_failures: int = 20) -> str:
    """Multi-line description of a store.

    A damaged store is described as far as its valid parts go; what is missing or inconsistent is
    listed at the end, one dataset per line, under "damaged:" (`info_command` then exits with 3).
    """
    import numpy as np

    from ..store import STATUS_DONE, STATUS_FAILED, open_store

    lines = []
    with open_store(path) as store:

        def valid(*parts: str) -> bool:
            return not store.problems(*parts)

        attrs = store.attrs
        f = store.file
        lines.append(f"store {path}")
        lines.append(
            f"  schema {attrs.get('schema_version')}  sporep-hpc {attrs.get('sporep_hpc_version')}  "
            f"created {attrs.get('created')}  ranks {attrs.get('n_ranks')}"
        )
        if valid("/"):
            run = {k: v for k, v in store.parameters.items() if k != "fingerprint_specs"}
            lines.append("  parameters " + json.dumps(run, sort_keys=True))
        table = ("structures/id", "structures/status", "structures/error")
        if valid(*table):
            status = store.status
            n = len(store)
            lines.append(
                f"  structures {n}: {int(np.sum(status == STATUS_DONE))} done, "
                f"{int(np.sum(status == STATUS_FAILED))} failed, {int(np.sum(status == 0))} pending"
            )
            if n and valid("structures/n_atoms", "spectra/kpoints", "spectra/eigenvalues"):
                n_atoms = store.structures()["n_atoms"]
                n_k = int(f["spectra/kpoints"].shape[0])
                n_e = int(f["spectra/eigenvalues"].shape[0])
                lines.append(f"  atoms per structure {int(n_atoms.min())}..{int(n_atoms.max())}; "
                             f"k-points {n_k} in all; eigenvalues {n_e} in all")
        if valid("structures/properties") and store.has_properties:
            props = store.all_properties()
            keys = sorted({k for p in props for k in p})
            with_props = sum(bool(p) for p in props)
            lines.append(
                f"  properties: {with_props} of {len(store)} structures; keys {', '.join(keys) or '(none)'}"
            )
        for name in store.fingerprint_names:
            if valid(f"fingerprints/{name}"):
                values, _, fattrs = store.fingerprints(name)
                extra = ", ".join(f"{k}={v}" for k, v in fattrs.items() if k != "spec")
                lines.append(f"  fingerprint {name}: {values.shape[1]} features ({extra})")
        for group in ("similarity", "models", "neighbours"):
            if group in f:
                lines.append(f"  /{group}: {', '.join(sorted(f[group])) or '(empty)'}")
        if valid(*table):
            errors, ids = store.errors, store.ids
            failed = [(i, errors[i]) for i in range(len(store)) if status[i] == STATUS_FAILED]
            if failed:
                lines.append("  failures:")
                for i, err in failed[:max_failures]:
                    lines.append(f"    {ids[i]}: {err}")
                if len(failed) > max_failures:
                    lines.append(f"    ... and {len(failed) - max_failures} more")
        problems = store.problems()
        if problems:
            lines.append(f"  damaged: {len(problems)} missing or inconsistent dataset(s)/attribute(s):")
            lines += [f"    {p}" for p in problems]
    return "\n".join(lines)


def describe_journal(path: str | Path) -> str:
    """Multi-line description of a run's journal (store not assembled yet); read-only."""
    from ..parallel.journal import journal_dir, scan_journal

    jdir = journal_dir(path)
    refs = scan_journal(jdir)
    done = sum(r.status == 1 for r in refs.values())
    shards = sorted(p.name for p in jdir.glob("rank-*.h5"))
    return (
        f"store {path} not assembled yet; journal {jdir}: {len(refs)} structures finished "
        f"({done} done, {len(refs) - done} failed) in {len(shards)} shard file(s)"
    )


def describe_lock(path: str | Path) -> str | None:
    """One line naming the process writing the store, or None when no process holds its lock."""
    from ..store.lock import describe_holder, lock_path, read_lock

    found = read_lock(path)
    if found is None:
        return None
    holder, _, age = found
    who = describe_holder(holder) if holder else "an unknown process (unreadable lock)"
    return f"in use: being written by {who}; lock {lock_path(path)} renewed {age:.0f} s ago"


def info_command(args) -> int:
    from ..errors import StoreError
    from ..parallel.journal import journal_dir
    from ..store import open_store

    path = Path(args.store)
    in_use = describe_lock(path)
    if in_use:
        print(in_use)
    if not path.exists() and journal_dir(path).is_dir():
        print(describe_journal(path))
        return 0
    if not path.exists():
        raise StoreError(f"{path}: no such store")
    print(describe_store(path, args.failures))
    with open_store(path) as store:
        store.require()  # a damaged store (listed above) exits with 3
    return 0
