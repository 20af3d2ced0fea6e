"""One training run at a time, in a separate process, reported to every visitor.

``torch.set_num_threads`` is process-wide, so training runs in a child process (``spawn``) with one torch
thread and a lower priority: the web server keeps the other core and stays responsive for sampling.
The child forwards :class:`gptcore.training.TrainEvent`s through a queue (step losses averaged over short
windows so the queue stays small); a multiprocessing Event asks it to stop, and gptcore's Trainer then keeps
the best weights so far. A thread in the server drains the queue into a snapshot that status calls read.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gptcore.config import RunConfig
from gptcore.errors import GptcoreError

STEP_REPORT_INTERVAL = 0.25  # seconds between averaged step reports from the child
# after Stop, the child may use this much CPU time to finish its step and save before it is terminated; a
# child at the lowest priority on a busy machine gets little CPU, and is slow rather than stuck, so the wall
# clock alone would end a healthy run. Where a process's CPU time cannot be read, the wall clock it is.
STOP_GRACE_CPU_S = 30.0
STOP_GRACE_WALL_S = 600.0  # however little CPU it got: the longest a run may take


class RunInProgressError(GptcoreError):
    """A second Start while a run is active."""


class NotYourRunError(GptcoreError):
    """A visitor asked to stop a run that another visitor started."""


@dataclass
class TrainJobSpec:
    """Everything the child needs: the config, the corpus (a path, or text for uploads) and where to save."""

    config: RunConfig
    out_dir: Path
    corpus_path: str | None = None
    corpus_text: str | None = None
    corpus_label: str = "Tiny Shakespeare"
    label: str = ""


def _cpu_seconds(pid: int) -> float | None:
    """The CPU time a process has used so far (Linux's /proc), or None where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def stop_overdue(cpu_now: float | None, cpu_at_stop: float | None, wall_since_stop: float) -> bool:
    """Whether a child asked to stop has had its chance: STOP_GRACE_CPU_S of CPU time since, or (CPU time
    unknown) that many seconds of wall clock, and in any case STOP_GRACE_WALL_S."""
    if wall_since_stop > STOP_GRACE_WALL_S:
        return True
    if cpu_now is None or cpu_at_stop is None:
        return wall_since_stop > STOP_GRACE_CPU_S
    return cpu_now - cpu_at_stop > STOP_GRACE_CPU_S


def _worker(spec: TrainJobSpec, events: "mp.Queue", stop: "mp.synchronize.Event") -> None:
    """Child process body: train, forwarding events as plain dicts; errors become an 'error' event."""
    try:
        os.nice(19)  # the lowest priority: the server answering visitors comes first
    except (OSError, AttributeError):
        pass
    window: list[float] = []
    last_sent = 0.0

    def on_event(event) -> None:
        nonlocal last_sent
        if event.kind == "step":
            window.append(event.train_loss)
            now = time.monotonic()
            if now - last_sent < STEP_REPORT_INTERVAL:
                return
            last_sent = now
            event = dataclasses.replace(event, train_loss=sum(window) / len(window))
            window.clear()
        events.put(dataclasses.asdict(event))

    try:
        from gptcore.data import Corpus
        from gptcore.training import Trainer

        if spec.corpus_text is not None:
            corpus = Corpus.from_text(spec.corpus_text, source=spec.corpus_label, recipe=spec.config.train)
        else:
            corpus = Corpus.load(spec.corpus_path, recipe=spec.config.train)
        events.put({"kind": "started"})
        Trainer(spec.config, corpus, spec.out_dir, command=f"gptcore app: {spec.label}").run(
            on_event=on_event, stop=stop)
    except (GptcoreError, ValueError, OSError) as e:
        events.put({"kind": "error", "message": str(e)})
    except BaseException as e:  # noqa: BLE001 - the server must hear about any failure, not hang
        events.put({"kind": "error", "message": f"training failed: {type(e).__name__}: {e}"})


@dataclass
class RunStatus:
    """A snapshot of the current (or last) run, safe to hand to any visitor."""

    state: str = "idle"  # idle, starting, running, stopping, finished, stopped, failed
    label: str = ""
    corpus: str = ""
    out_dir: str = ""
    step: int = 0
    max_iters: int = 0
    time_budget: float | None = None
    elapsed: float = 0.0
    eta: float | None = None
    tokens_per_sec: float | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    best_val_loss: float | None = None
    final_val_loss: float | None = None
    sample: str = ""
    sample_step: int | None = None
    message: str = ""
    train_curve: list[tuple[int, float]] = field(default_factory=list)
    val_curve: list[tuple[int, float]] = field(default_factory=list)
    version: int = 0

    @property
    def active(self) -> bool:
        return self.state in ("starting", "running", "stopping")

    def to_dict(self) -> dict:
        """What an API caller sees: the run's model by the name the pickers give it, never its server path."""
        d = dataclasses.asdict(self)
        d.pop("out_dir")
        d["model"] = f"trained/{Path(self.out_dir).name}" if self.out_dir else ""
        d["active"] = self.active
        return d


def duration(seconds: float | None, unknown: str = "–") -> str:
    """``m:ss``, or ``unknown`` (a run's time left is unknown until its first steps)."""
    if seconds is None:
        return unknown
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _minutes(seconds: float | None) -> str:
    return duration(seconds, unknown="10 minutes (the longest a run may take)")


class TrainingManager:
    """Starts, watches and stops the single training process of this server.

    The worker is started with multiprocessing's "spawn", which re-imports the ``__main__`` module: a script
    that uses the manager must keep its top-level code under ``if __name__ == "__main__":`` (app.py does).
    """

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._status = RunStatus()
        self._process = None
        self._stop = None
        self._stop_requested_at: float | None = None
        self._stop_cpu_at: float | None = None
        self._owner: str | None = None  # who started the run: only they may stop it (None: anyone)

    def status(self) -> RunStatus:
        with self._lock:
            return dataclasses.replace(self._status, train_curve=list(self._status.train_curve),
                                       val_curve=list(self._status.val_curve))

    def start(self, spec: TrainJobSpec, owner: str | None = None) -> RunStatus:
        """Launch a run that only ``owner`` may stop (anyone, if None); RunInProgressError if one is active,
        saying whose it is and when the trainer is free again."""
        with self._lock:
            if self._status.active:
                st = self._status
                if self._owner is not None and owner != self._owner:
                    raise RunInProgressError(
                        f"a run is already in progress, started by another visitor (step {st.step}); the trainer "
                        f"is free again in about {_minutes(st.eta)}: try again then")
                raise RunInProgressError(f"a run is already in progress ({st.label}, step {st.step}); "
                                         "wait for it to finish or press Stop")
            spec.config.train.threads = 1
            events = self._ctx.Queue()
            stop = self._ctx.Event()
            process = self._ctx.Process(target=_worker, args=(spec, events, stop), daemon=True,
                                        name="gptcore-train")
            tc = spec.config.train
            self._status = RunStatus(state="starting", label=spec.label, corpus=spec.corpus_label,
                                     out_dir=str(spec.out_dir), max_iters=tc.max_iters, time_budget=tc.time_budget,
                                     message="starting the training process…", version=self._status.version + 1)
            self._process, self._stop, self._stop_requested_at, self._owner = process, stop, None, owner
            process.start()
        threading.Thread(target=self._drain, args=(process, events), daemon=True, name="train-drain").start()
        return self.status()

    def stop(self, visitor: str | None = None, force: bool = False) -> RunStatus:
        """Ask the run to stop; it saves the best weights so far and ends within about a second. Only its
        owner may (NotYourRunError for anyone else), when it has one, or the server itself (``force``)."""
        with self._lock:
            if self._status.active and self._owner is not None and visitor != self._owner and not force:
                raise NotYourRunError(f"only the visitor who started this run can stop it; it ends by itself in "
                                      f"about {_minutes(self._status.eta)}")
            if self._status.active and self._stop is not None:
                self._stop.set()
                if self._status.state != "stopping":
                    self._stop_requested_at = time.monotonic()
                    self._stop_cpu_at = _cpu_seconds(self._process.pid) if self._process else None
                    self._update(state="stopping", message="stopping: saving the best weights so far…")
        return self.status()

    def owned_by(self, visitor: str | None) -> bool:
        """Whether ``visitor`` may stop the current run (its owner, or anyone for a run without one)."""
        with self._lock:
            return self._owner is None or visitor == self._owner

    def wait(self, timeout: float) -> RunStatus:
        """Block until the run is no longer active (or ``timeout`` seconds pass); for tests and scripts."""
        deadline = time.monotonic() + timeout
        while self.status().active and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.status()

    # internals -------------------------------------------------------------------------------------

    def _update(self, **changes) -> None:
        for k, v in changes.items():
            setattr(self._status, k, v)
        self._status.version += 1

    def _drain(self, process, events) -> None:
        """Apply the child's events to the snapshot until it exits; notice a child that dies silently."""
        finished = False
        while True:
            try:
                event = events.get(timeout=0.1)
            except queue.Empty:
                event = None
            if event is not None:
                with self._lock:
                    finished = self._apply(event) or finished
                continue
            if not process.is_alive():
                break
            with self._lock:
                asked, cpu_then = self._stop_requested_at, self._stop_cpu_at
            if asked is not None and stop_overdue(_cpu_seconds(process.pid), cpu_then, time.monotonic() - asked):
                process.terminate()
        process.join(timeout=5)
        with self._lock:
            if not finished and self._status.state not in ("failed",):
                self._update(state="failed", eta=None,
                             message=f"the training process ended unexpectedly (exit code {process.exitcode}); "
                                     "the best weights saved so far are kept")

    def _apply(self, e: dict) -> bool:
        """Fold one event into the snapshot; True once the run is over."""
        s = self._status
        kind = e.get("kind")
        if kind == "error":
            self._update(state="failed", eta=None, message=e.get("message", "training failed"))
            return True
        if kind == "started":
            self._update(state="running" if s.state == "starting" else s.state, message="")
            return False
        step, elapsed = e.get("step", s.step), e.get("elapsed", s.elapsed)
        changes: dict = {"step": step, "elapsed": elapsed}
        progress = e.get("progress") or 0.0
        if 0 < progress < 1:
            changes["eta"] = elapsed * (1 - progress) / progress
        if kind == "step":
            changes.update(train_loss=e["train_loss"], tokens_per_sec=e.get("tokens_per_sec") or s.tokens_per_sec)
            s.train_curve.append((step, e["train_loss"]))
        elif kind == "eval":
            val = e["val_loss"]
            best = val if s.best_val_loss is None or val < s.best_val_loss else s.best_val_loss
            changes.update(val_loss=val, best_val_loss=best)
            s.val_curve.append((step, val))
        elif kind == "sample":
            changes.update(sample=e.get("text") or "", sample_step=step)
        elif kind == "done":
            state = "stopped" if s.state == "stopping" else "finished"
            final = e.get("val_loss")
            loss_text = f"; whole-split validation loss {final:.3f}" if isinstance(final, float) else ""
            msg = (f"{state} after {step} steps{loss_text}. The best weights are saved as "
                   f"trained/{Path(s.out_dir).name}: pick it in the Sample and Attention tabs.")
            changes.update(state=state, final_val_loss=final, eta=0.0, message=msg)
            self._update(**changes)
            return True
        if s.state == "starting":
            changes["state"] = "running"
        self._update(**changes)
        return False
