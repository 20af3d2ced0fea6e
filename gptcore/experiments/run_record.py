"""One run of an ablation study, and the record the results file keeps of it.

:func:`train_run` trains a run with the real Trainer and returns its record: the whole-split validation
loss of its best checkpoint, its curve, where it ran, and what the Trainer's result does not carry, which
:class:`RunMonitor` measures from the Trainer's hooks: loss spikes, divergence, and the gradient norms of the
first and last blocks (do gradients vanish toward the input?).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..config import RunConfig
from ..data import Corpus
from ..device import describe
from ..errors import GptcoreError, TrainingDivergedError
from ..models import build_model, count_parameters
from ..storage import atomic_write_bytes, read_json
from ..training import Trainer, TrainEvent

SPIKE_NATS = 0.5  # a step's loss this far above the best loss so far counts as a spike
DIVERGE_NATS = 1.0  # a run whose final loss ends this far above its best loss has diverged


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _grad_norm(module: nn.Module) -> float:
    norms = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)).item() if norms else 0.0


MONITOR_FILE = "monitor.json"  # in a run's work dir: the monitor's measurements up to the last checkpoint


def _drop_from(items: list, step: int, step_of: Callable) -> None:
    """Remove the trailing items of step ``step`` or later: a resumed run trains them again."""
    while items and step_of(items[-1]) >= step:
        items.pop()


class RunMonitor:
    """What a run's TrainResult does not carry: per-step losses (stability) and per-block gradient norms.

    Fed by the Trainer's ``on_event`` and ``on_backward`` hooks. Gradient norms are of the raw gradients
    (before clipping) of all parameters of the first and the last transformer block. With a ``state_path``
    the measurements are saved at every evaluation (just after the Trainer's checkpoint) and read back when
    the monitor is created, so a resumed run reports its whole run, not only the steps trained after the
    resume; steps the resumed run trains again replace the saved ones.
    """

    def __init__(self, config: RunConfig, on_eval: Callable[[TrainEvent], None] | None = None,
                 state_path: Path | None = None):
        self.warmup = config.train.warmup_iters
        self.max_iters = config.train.max_iters
        self.on_eval = on_eval
        self.state_path = state_path
        self.losses: list[tuple[int, float]] = []  # (step, training loss)
        self.evals: list[dict] = []
        self.grads: list[tuple[int, float, float]] = []
        self.trained = 0  # steps trained since this monitor was created
        self._restore()

    def _restore(self) -> None:
        if self.state_path is None or not self.state_path.is_file():
            return
        try:  # Python's JSON (NaN allowed): a diverged step's loss is a measurement too
            state = read_json(self.state_path)
            losses = [(int(s), float(v)) for s, v in state["losses"]]
            grads = [(int(s), float(f), float(l)) for s, f, l in state["grads"]]
            evals = [dict(e, step=int(e["step"])) for e in state["evals"]]
        except (GptcoreError, ValueError, KeyError, TypeError, OverflowError):
            return  # unreadable: measure what this call trains, as without a saved state
        self.losses, self.grads, self.evals = losses, grads, evals

    def _save(self) -> None:
        if self.state_path is not None:
            state = {"losses": self.losses, "grads": self.grads, "evals": self.evals}
            atomic_write_bytes(self.state_path, json.dumps(state).encode("utf-8"))

    def on_event(self, event: TrainEvent) -> None:
        if event.kind == "step":
            _drop_from(self.losses, event.step, lambda item: item[0])
            _drop_from(self.evals, event.step, lambda item: item["step"])
            self.losses.append((event.step, event.train_loss))
            self.trained += 1
        elif event.kind == "eval":
            _drop_from(self.evals, event.step, lambda item: item["step"])
            self.evals.append({"step": event.step, "train_loss": _finite(event.train_loss),
                               "val_loss": _finite(event.val_loss)})
            self._save()
            if self.on_eval is not None:
                self.on_eval(event)

    def on_backward(self, model: nn.Module, step: int) -> None:
        _drop_from(self.grads, step, lambda item: item[0])
        blocks = getattr(model, "blocks", None)
        if blocks:
            self.grads.append((step, _grad_norm(blocks[0]), _grad_norm(blocks[-1])))

    def stability(self) -> dict:
        """Non-finite steps, loss spikes after warmup, the largest jump, the final loss and a divergence flag."""
        nonfinite = sum(1 for _, x in self.losses if not math.isfinite(x))
        best, spikes, max_jump = math.inf, 0, 0.0
        for step, loss in self.losses:
            if not math.isfinite(loss):
                continue
            if step > self.warmup and best < math.inf:
                jump = loss - best
                max_jump = max(max_jump, jump)
                spikes += jump > SPIKE_NATS
            best = min(best, loss)
        tail = [x for _, x in self.losses[-10:]]
        final = sum(tail) / len(tail) if tail and all(math.isfinite(x) for x in tail) else None
        # (no measured steps at all, a saved state lost, is not evidence of divergence)
        diverged = nonfinite > 0 or (final is not None and final > best + DIVERGE_NATS)
        return {"final_train_loss": final, "min_train_loss": _finite(best), "loss_spikes": spikes,
                "max_loss_jump": round(max_jump, 4), "nonfinite_steps": nonfinite, "diverged": diverged}

    def gradient_summary(self) -> dict:
        if not self.grads:
            return {}
        finite = [(s, f, l) for s, f, l in self.grads if math.isfinite(f) and math.isfinite(l)]
        first = sum(f for _, f, _ in finite) / len(finite) if finite else None
        last = sum(l for _, _, l in finite) / len(finite) if finite else None
        every = max(1, len(self.grads) // 50)
        return {"grad_norm_first_layer": first, "grad_norm_last_layer": last,
                "grad_norm_ratio": first / last if first is not None and last else None,
                "grad_norm_curve": [{"step": s, "first": _finite(f), "last": _finite(l)}
                                    for s, f, l in self.grads if s % every == 0 or s == self.max_iters]}


def train_run(config: RunConfig, corpus: Corpus, command: str = "",
              on_eval: Callable[[TrainEvent], None] | None = None, work_dir: Path | None = None) -> dict:
    """Train one run and return its results record. In ``work_dir`` (kept until the run is recorded), a run
    that was interrupted continues from its last evaluation, as ``train --resume`` does; without one, in a
    temporary directory. The monitor's measurements (spikes, gradient norms) cover the whole run: they are
    saved in ``work_dir`` with each checkpoint and restored with it."""
    monitor = RunMonitor(config, on_eval, None if work_dir is None else Path(work_dir) / MONITOR_FILE)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gptcore-ablate-") as tmp:
        trainer = Trainer(config, corpus, work_dir or tmp, command=command, resume=work_dir is not None)
        try:
            result = trainer.run(
                on_event=monitor.on_event, on_backward=monitor.on_backward)
        except TrainingDivergedError as e:
            # the loss became non-finite: the run stopped; its kept checkpoint (if any) was evaluated
            result = e.result
    elapsed = time.perf_counter() - started
    steps = monitor.trained
    record = {
        "seed": config.train.seed,
        "val_loss": _finite(result.val_loss) if result else None,
        "params": result.params if result else count_parameters(build_model(config.model)),
        "tokens_seen": result.tokens_seen if result else steps * config.train.batch_size * config.model.block_size,
        "wall_time_s": round(result.wall_time if result else elapsed, 2),
        "curve": ([{"step": h["step"], "train_loss": _finite(h["train_loss"]), "val_loss": _finite(h["val_loss"])}
                   for h in result.history] if result else monitor.evals),
        "steps": steps,
        "best_step": result.best_step if result else None,
        "elapsed_s": round(elapsed, 2),
        "device": describe(trainer.device),
        "torch": torch.__version__,
    }
    record.update(monitor.stability())
    record.update(monitor.gradient_summary())
    record["config"] = config.to_dict()
    return record
