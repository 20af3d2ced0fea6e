"""``python app.py`` run as a real server on a free loopback port, for the tests and the benchmarks that drive
it from outside (gradio_client, a browser, a crowd of visitors)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def launched_app(env: dict, log: Path, timeout: float = 600.0) -> Iterator[str]:
    """The URL of ``launched_app_process``'s server."""
    with launched_app_process(env, log, timeout) as (url, _):
        yield url


@contextmanager
def launched_app_process(env: dict, log: Path, timeout: float = 600.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``python app.py`` (README's command) and yield its URL once the first page is served. The app runs
    in a process group of its own, ended whole afterwards, so a training process it started cannot outlive
    the test whatever happened. ``timeout`` only guards against a hang: a busy machine starts slowly."""
    url = f"http://127.0.0.1:{env['GRADIO_SERVER_PORT']}/"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_served(url, process, timeout, log=log)
            yield url, process
        finally:
            end_process_group(process)


def wait_until_served(url: str, process: subprocess.Popen, timeout: float, poll_s: float = 0.2,
                      log: Path | None = None) -> None:
    """Return once ``url`` answers HTTP 200; an error (with the app's log, if any) if the app exits first or
    has not answered within ``timeout`` seconds."""
    said = lambda: f":\n{log.read_text()}" if log else ""  # noqa: E731 - read only when there is an error
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}{said()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"app.py did not serve {url} within {timeout} s{said()}")
        time.sleep(poll_s)


def end_process_group(process: subprocess.Popen) -> None:
    """Terminate ``process`` and everything in its process group, killing what has not ended after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; its group may not be
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return
