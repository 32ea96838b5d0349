"""One writer per store: ``<store>.lock``, created atomically next to the store.

A run (and any command that writes into a store) holds the lock while it works on the store and
its journal; a second writer is refused at once with a StoreError (exit code 3) naming the holder.
Readers (`info`, the Python API) never take it.

The lock file is created with ``O_CREAT | O_EXCL`` (atomic on local file systems and on NFSv3+,
Lustre and GPFS) and holds one JSON object: host, pid, the process start time (from /proc, to tell
a recycled PID), the UTC start time and the command line. While the lock is held, a heartbeat
thread renews the file's modification time every HEARTBEAT seconds.

A lock is stale, and is taken over with a warning, when

- its host is this host and its process no longer runs (or the PID now belongs to another
  process), or
- its host is another one and its heartbeat is older than STALE_AFTER seconds (the holder was
  killed with its node; a live holder renews the file every HEARTBEAT seconds).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..agreement import root_call
from ..errors import StoreError
from .schema import timestamp

log = logging.getLogger(__name__)

#: Seconds between renewals of the lock file's modification time by its holder.
HEARTBEAT = 60.0
#: Seconds without a heartbeat after which a lock held from another host is stale.
STALE_AFTER = 1800.0


def lock_path(store: str | Path) -> Path:
    """``<store>.lock`` next to the store."""
    p = Path(store)
    return p.with_name(p.name + ".lock")


def _process_start(pid: int) -> str:
    """Start time of process `pid` in clock ticks since boot ("" where /proc does not tell)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22 of proc(5), counted after the command name


def _alive(pid: int, start: str) -> bool:
    """True if process `pid` runs on this host and (when `start` is known) is the one that started then."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    return not start or _process_start(pid) in ("", start)


def describe_holder(holder: dict[str, Any]) -> str:
    """``host:pid since <start> (<command>)``."""
    command = " ".join(str(holder.get("command", ""))[:200].split())
    host, pid, started = (holder.get(k, "?") for k in ("host", "pid", "started"))
    return f"{host}:{pid} since {started} ({command})"


def is_stale(holder: dict[str, Any], age: float) -> bool:
    """True if the lock described by `holder`, last renewed `age` seconds ago, has no live holder."""
    if holder.get("host") == socket.gethostname():
        try:
            return not _alive(int(holder["pid"]), str(holder.get("start", "")))
        except (KeyError, TypeError, ValueError):
            return age > STALE_AFTER
    return age > STALE_AFTER


def read_lock(store: str | Path) -> tuple[dict[str, Any], str, float] | None:
    """(holder, raw text, seconds since its last renewal) of the store's lock, or None if unlocked.

    `holder` is {} when the lock file is unreadable as JSON (being written, or damaged).
    """
    path = lock_path(store)
    try:
        text = path.read_text()
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read the lock {path}: {exc.strerror or exc}") from exc
    try:
        holder = json.loads(text)
    except ValueError:
        holder = {}
    return (holder if isinstance(holder, dict) else {}), text, age


class StoreLock:
    """The write lock of one store (a context manager; `release` is idempotent).

    Parameters
    ----------
    store : path
        The store; the lock is `lock_path(store)`.
    command : str, optional
        Recorded in the lock for the user who finds it (default: this process's command line).
    heartbeat : float
        Seconds between renewals of the lock (0: no heartbeat thread).
    """

    def __init__(self, store: str | Path, command: str | None = None, heartbeat: float = HEARTBEAT):
        self.store, self.path = Path(store), lock_path(store)
        self.command = " ".join(sys.argv) if command is None else command
        self.heartbeat = heartbeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.held = False

    def acquire(self) -> StoreLock:
        """Take the lock (taking over a stale one), or raise StoreError naming its holder."""
        me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "start": _process_start(os.getpid()),
            "started": timestamp(),
            "command": self.command,
        }
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            except OSError as exc:
                raise StoreError(f"cannot create the lock {self.path}: {exc.strerror or exc}") from exc
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(me, f)
            except OSError as exc:
                self.path.unlink(missing_ok=True)
                raise StoreError(f"cannot write the lock {self.path}: {exc.strerror or exc}") from exc
            self.held = True
            if self.heartbeat > 0:
                self._thread = threading.Thread(target=self._renew, name="sporep-lock", daemon=True)
                self._thread.start()
            return self
        raise StoreError(f"cannot take the lock {self.path}: it keeps being re-created by another process")

    def _take_over_if_stale(self) -> None:
        found = read_lock(self.store)
        if found is None:
            return  # released meanwhile: try again
        holder, text, age = found
        if not holder and age <= STALE_AFTER:  # being written right now, or damaged: wait for the age rule
            raise StoreError(
                f"the store is locked by {self.path} (unreadable; made {age:.0f} s ago): another run may be "
                f"starting; if none is, remove {self.path}"
            )
        if holder and not is_stale(holder, age):
            raise StoreError(
                f"the store is being written by another sporep-hpc process, {describe_holder(holder)}; "
                f"wait for it to finish (lock {self.path})"
            )
        log.warning("taking over the stale lock %s of %s", self.path,
                    describe_holder(holder) if holder else "an unknown process")
        try:
            if self.path.read_text() == text:  # still the same stale lock
                self.path.unlink()
        except FileNotFoundError:
            pass

    def _renew(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                os.utime(self.path)
            except OSError as exc:
                log.warning("cannot renew the lock %s: %s", self.path, exc)

    def release(self) -> None:
        """Remove the lock if this object holds it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.held:
            self.held = False
            try:
                self.path.unlink()
            except FileNotFoundError:
                log.warning("the lock %s had disappeared before its release", self.path)
            except OSError as exc:
                log.warning("cannot remove the lock %s: %s", self.path, exc)

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextmanager
def locked(store: str | Path, comm: Any = None) -> Iterator[None]:
    """Hold the store's write lock for the block (rank 0 of `comm` holds it; every rank calls this).

    Post-processing that writes into a store (similarity, models, neighbours) uses it, so that it
    never writes while a run replaces the store, nor two commands at once. A refusal (StoreError
    naming the holder) is raised on every rank.
    """
    lock = StoreLock(store) if comm is None or comm.rank == 0 else None
    root_call(comm, lambda: lock.acquire().held)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
