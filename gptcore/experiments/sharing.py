"""Processes that share a results directory: two studies side by side, or one study in two processes.

A run in training is claimed by the process training it (``in_progress.json`` in its work directory: host
and pid), so another process that reaches the same run (the base model is an arm of five studies) waits
for its result instead of training it twice; a claim whose process has died is ignored. A results file is
read, merged and rewritten under :func:`results_dir_lock`, so neither process drops the other's runs.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import GptcoreError
from ..storage import read_json, write_json

LOCK_FILE = "in_progress.json"  # in a run's work directory: the process training it (host, pid)
IN_PROGRESS_STALE_S = 30 * 60.0  # a claim from another host not touched for this long is abandoned


def claim_run(work_dir: Path) -> None:
    """Mark the run in ``work_dir`` as being trained by this process."""
    work_dir.mkdir(parents=True, exist_ok=True)
    write_json(work_dir / LOCK_FILE, {"host": socket.gethostname(), "pid": os.getpid()})


@contextmanager
def results_dir_lock(out_dir: Path):
    """An exclusive lock (POSIX ``flock`` on the results directory itself, so it leaves no file behind), held
    while a results file is read, merged and rewritten: two processes running the same study never drop
    each other's runs. Without ``fcntl`` (Windows) there is no lock: run one process per study there."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _process_alive(pid) -> bool:
    try:
        if int(pid) <= 0:  # kill(0) and kill(-n) signal process groups: never a lock holder
            return False
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    except (TypeError, ValueError, OverflowError):  # not a pid
        return False
    return True


def locked_elsewhere(work: Path, key: str) -> bool:
    """Whether another live process is training the run ``key`` in some study's work directory: its lock
    names a live process on this host, or, from another host (a shared disk), was written to recently."""
    me = (socket.gethostname(), os.getpid())
    for lock in work.glob(f"*-{key}/{LOCK_FILE}"):
        try:
            owner = read_json(lock)
            newest = max(p.stat().st_mtime for p in lock.parent.iterdir())
        except (GptcoreError, OSError, ValueError):
            continue
        if (owner.get("host"), owner.get("pid")) == me:
            continue
        if owner.get("host") == me[0] and _process_alive(owner.get("pid")):
            return True
        if owner.get("host") != me[0] and time.time() - newest < IN_PROGRESS_STALE_S:
            return True
    return False
