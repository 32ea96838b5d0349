"""One writer per store (issue 12.2): the lock file, its staleness rules, and the post-processing
commands that write into a store (similarity, classify, neighbours) refusing while a run holds it."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from sporep_hpc.cli import main
from sporep_hpc.errors import StoreError
from sporep_hpc.store.lock import STALE_AFTER, StoreLock, lock_path, read_lock


def dead_pid() -> int:
    """The PID of a process that has exited (reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    return int(done.stdout)


def write_lock(store, **holder):
    lock_path(store).write_text(json.dumps(holder))


def test_lock_is_exclusive_and_released(tmp_path):
    store = tmp_path / "s.h5"
    with StoreLock(store, command="first", heartbeat=0):
        holder, _, _ = read_lock(store)
        assert (holder["host"], holder["pid"]) == (socket.gethostname(), os.getpid())
        assert holder["command"] == "first"
        with pytest.raises(StoreError, match=r"being written by another sporep-hpc process.*first"):
            StoreLock(store, heartbeat=0).acquire()
    assert read_lock(store) is None


@pytest.mark.parametrize(
    "holder, age, taken",
    [
        ({"host": socket.gethostname(), "pid": "DEAD"}, 0.0, True),  # the holder died on this host
        ({"host": socket.gethostname(), "pid": "SELF", "start": "1"}, 0.0, True),  # PID reused since
        ({"host": socket.gethostname(), "pid": "SELF"}, 0.0, False),  # alive
        ({"host": "elsewhere", "pid": 1}, 10.0, False),  # another host, recent heartbeat
        ({"host": "elsewhere", "pid": 1}, STALE_AFTER + 60, True),  # another host, no heartbeat
        ({}, 10.0, False),  # unreadable and young: maybe being written
        ({}, STALE_AFTER + 60, True),  # unreadable and old
    ],
)
def test_stale_locks_are_taken_over_and_live_ones_kept(tmp_path, holder, age, taken):
    store = tmp_path / "s.h5"
    holder = {k: {"DEAD": dead_pid(), "SELF": os.getpid()}.get(v, v) for k, v in holder.items()}
    if holder:
        write_lock(store, **holder)
    else:
        lock_path(store).write_text("{not json")
    mtime = lock_path(store).stat().st_mtime - age
    os.utime(lock_path(store), (mtime, mtime))
    lock = StoreLock(store, command="second", heartbeat=0)
    if taken:
        with lock:
            assert read_lock(store)[0]["command"] == "second"
    else:
        with pytest.raises(StoreError):
            lock.acquire()
        assert not lock.held and lock_path(store).exists()


def test_heartbeat_renews_the_lock(tmp_path):
    store = tmp_path / "s.h5"
    with StoreLock(store, heartbeat=0.05):
        old = lock_path(store).stat().st_mtime - 3600
        os.utime(lock_path(store), (old, old))
        for _ in range(100):  # the thread renews it within a few heartbeats
            if lock_path(store).stat().st_mtime > old + 1:
                break
            __import__("time").sleep(0.05)
        assert lock_path(store).stat().st_mtime > old + 1


@pytest.mark.parametrize(
    "command",
    [
        ["similarity", "{store}", "--fingerprint", "kinetic", "--metric", "cosine"],
        ["neighbours", "{store}", "-k", "1"],
        ["classify", "{store}", "--fingerprint", "kinetic", "--labels", "{labels}"],
    ],
)
def test_post_processing_refuses_while_a_run_holds_the_store(tmp_path, make_store, command, capsys):
    values = np.random.default_rng(0).uniform(size=(8, 16))
    store = make_store(tmp_path / "s.h5", values, np.linspace(0, 15, 16))
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"s{i},{'ab'[i % 2]}\n" for i in range(8)))
    argv = [a.format(store=store, labels=labels) for a in command]
    write_lock(store, host=socket.gethostname(), pid=os.getpid(), command="sporep-hpc run ...")
    assert main(argv) == 3
    assert "being written by another sporep-hpc process" in capsys.readouterr().err
    lock_path(store).unlink()
    assert main(argv) in (0, 4)
    assert not lock_path(store).exists()
