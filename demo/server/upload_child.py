"""Uploads are checked and converted in a child process with a memory limit and a time limit.

The loaders already bound what a file can ask for (sizes checked against the memory estimate before
anything is allocated, a bounded unpickler, bounded JSON). This is the second line of defence, for what
those bounds miss: whatever an upload makes the checking code do, it happens in a process of its own that
cannot allocate more than ``Limits.upload_check_memory_bytes`` or run past ``Limits.upload_check_seconds``,
at a lower priority than the server, and that is killed past its time. The server only reads the verdict.

Children come from multiprocessing's fork server, which has imported torch once: a check starts in
milliseconds, not the seconds a fresh interpreter takes (where there is no fork server, as on Windows, a
fresh interpreter it is).
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
from pathlib import Path

from gptcore.errors import GptcoreError
from gptcore.memory import human_bytes

from .settings import Limits
from .uploads import UploadError, add_model

_OUT_OF_MEMORY = "out of memory"


@functools.cache
def _context() -> multiprocessing.context.BaseContext:
    """The fork server's context (set up once), or spawn's where there is none."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])  # torch and the loaders, imported once in the fork server
    return context


def add_model_in_child(files: list[str | os.PathLike], name: str | None, dest_root: Path, limits: Limits) -> Path:
    """``uploads.add_model`` run in a bounded child process; returns the stored model's folder, or raises
    ``UploadError`` with one sentence (the child's own refusal, or which limit it ran into)."""
    context = _context()
    receive, send = context.Pipe(duplex=False)
    request = {"files": [str(f) for f in files or []], "name": name, "dest_root": str(dest_root),
               "max_bytes": limits.max_model_upload_bytes, "memory_bytes": limits.upload_check_memory_bytes,
               "cpu_seconds": math.ceil(limits.upload_check_seconds)}
    child = context.Process(target=_check, args=(request, send), daemon=True)
    child.start()
    send.close()  # the child holds its own end
    verdict = _receive(receive, limits.upload_check_seconds)
    if verdict is None:
        child.kill()
        child.join()
        raise UploadError(f"checking the upload took longer than {limits.upload_check_seconds:g} s: refused")
    child.join()
    return _folder_or_refusal(verdict, child.exitcode or 0, limits)


def _receive(receive, seconds: float) -> dict | None:
    """The child's verdict; {} if it died without one, None if it had none within ``seconds``."""
    try:
        return receive.recv() if receive.poll(seconds) else None
    except EOFError:
        return {}
    finally:
        receive.close()


def _folder_or_refusal(verdict: dict, returncode: int, limits: Limits) -> Path:
    if "folder" in verdict:
        return Path(verdict["folder"])
    memory = human_bytes(limits.upload_check_memory_bytes)
    if verdict.get("error") == _OUT_OF_MEMORY:
        raise UploadError(f"checking the upload needed more than {memory} of memory: refused")
    if returncode < 0 and "error" not in verdict:  # killed: by the kernel, or past its CPU time
        raise UploadError(f"checking the upload was stopped at the server's limits ({memory} of memory, "
                          f"{limits.upload_check_seconds:g} s): refused")
    raise UploadError(verdict.get("error") or f"checking the upload stopped unexpectedly (exit code {returncode})")


def _limit_self(memory_bytes: int, cpu_seconds: int) -> None:
    """Lower this process's own limits before the upload is read (where the platform has them)."""
    if hasattr(os, "nice"):
        os.nice(19)  # the server's visitors come first
    try:
        import resource
    except ImportError:  # Windows: the parent's time limit still holds
        return
    # RLIMIT_DATA counts the heap and anonymous mappings (every tensor), not the mapped libraries
    resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))


def _verdict(request: dict) -> dict:
    try:
        folder = add_model(request["files"], request["name"], Path(request["dest_root"]), request["max_bytes"])
        return {"folder": str(folder)}
    except GptcoreError as e:
        return {"error": str(e)[:500]}
    except MemoryError:
        return {"error": _OUT_OF_MEMORY}
    except (RuntimeError, OSError, ValueError, KeyError, TypeError, IndexError, RecursionError) as e:
        if "can't allocate memory" in str(e):  # torch's allocator under the limit
            return {"error": _OUT_OF_MEMORY}
        return {"error": f"the upload is not a usable model ({type(e).__name__})"}


def _check(request: dict, send) -> None:
    """The child: limit itself, check the upload, send the verdict."""
    _limit_self(request["memory_bytes"], request["cpu_seconds"])
    send.send(_verdict(request))
    send.close()
