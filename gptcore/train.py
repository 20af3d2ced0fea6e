"""Training loop: AdamW, warmup and decay, clipping, periodic evaluation, keep-the-best checkpointing.

A UI drives it through plain Python: ``Trainer.run(on_event=..., stop=threading.Event())`` calls
``on_event`` with a :class:`TrainEvent` after every step, evaluation and sample, and returns when
``max_iters`` or the time budget is reached or ``stop`` is set. ``on_backward(model, step)`` runs after
each backward pass, before clipping, so a study can measure raw gradients (e.g. of the first layer)
without the loop knowing what is measured. Every evaluation also saves the
optimizer and RNG state, so ``resume=True`` continues exactly where the run stopped.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from . import checkpoint as ckpt
from .config import RunConfig
from .data import BatchSampler, Corpus
from .draft import NgramDraft
from .evaluate import sample_windows, split_loss
from .models import build_model, count_parameters
from .muon import Muon
from .sample import SamplingParams, generate


@dataclass
class TrainEvent:
    """What a run reports. ``kind`` is "step", "eval", "sample" or "done"."""

    kind: str
    step: int
    max_iters: int
    elapsed: float
    train_loss: float | None = None
    val_loss: float | None = None
    lr: float | None = None
    tokens_per_sec: float | None = None
    text: str | None = None
    progress: float = 0.0


@dataclass
class TrainResult:
    out_dir: Path
    val_loss: float
    best_step: int
    steps: int
    tokens_seen: int
    wall_time: float
    stopped: bool
    params: int
    history: list[dict] = field(default_factory=list)


def learning_rate(step: int, progress: float, cfg) -> float:
    """Linear warmup over ``warmup_iters`` steps, then cosine or constant-then-linear decay to min_lr."""
    if step < cfg.warmup_iters:
        return cfg.lr * (step + 1) / cfg.warmup_iters
    min_lr = cfg.lr * cfg.min_lr_ratio
    progress = min(max(progress, 0.0), 1.0)
    if cfg.schedule == "cosine":
        return min_lr + (cfg.lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    start = 1.0 - cfg.warmdown_frac
    if progress <= start:
        return cfg.lr
    return cfg.lr + (min_lr - cfg.lr) * (progress - start) / max(cfg.warmdown_frac, 1e-9)


def make_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (never biases or norms); with ``optimizer="muon"``, the
    blocks' weight matrices move to Muon and AdamW keeps the embeddings, the head and the vectors.

    Every parameter group carries an ``lr_scale``: the loop sets ``lr = schedule(step) * lr_scale``.
    """
    named = list(model.named_parameters())
    hidden = [p for n, p in named if cfg.optimizer == "muon" and p.dim() == 2 and n.startswith("blocks.")]
    taken = {id(p) for p in hidden}
    decay = [p for n, p in named if p.dim() >= 2 and id(p) not in taken]
    no_decay = [p for n, p in named if p.dim() < 2]
    adamw = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
         {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0}],
        lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), foreach=True)
    if not hidden:
        return adamw
    muon = Muon([{"params": hidden, "lr_scale": cfg.muon_lr / cfg.lr}], lr=cfg.muon_lr,
                weight_decay=cfg.weight_decay)
    return OptimizerPair(adamw, muon)


class OptimizerPair:
    """Two optimizers stepped as one, with the interface the training loop and resume use."""

    def __init__(self, *optimizers: torch.optim.Optimizer):
        self.optimizers = optimizers

    @property
    def param_groups(self) -> list[dict]:
        # read afresh each time: load_state_dict replaces the optimizers' group dicts
        return [g for opt in self.optimizers for g in opt.param_groups]

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> list[dict]:
        return [opt.state_dict() for opt in self.optimizers]

    def load_state_dict(self, states: list[dict]) -> None:
        for opt, state in zip(self.optimizers, states):
            opt.load_state_dict(state)


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    autocast_dtype: torch.dtype,
    grad_clip: float,
    on_backward: Callable[[nn.Module], None] | None = None,
) -> float:
    """One optimisation step (forward under autocast, backward, clip, AdamW); returns the batch loss.

    The benchmark times this same function, so its figures are the trainer's speed.
    """
    with torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast_dtype != torch.float32):
        _, loss = model(x, y)
    loss.backward()
    if on_backward is not None:
        on_backward(model)
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


class Trainer:
    def __init__(self, config: RunConfig, corpus: Corpus, out_dir: str | Path, command: str = "", resume: bool = False):
        self.config = RunConfig(config.model, config.train)
        self.config.model.vocab_size = corpus.tokenizer.vocab_size
        self.config.model.validate()
        self.config.train.validate()
        self.corpus, self.out_dir, self.command, self.resume = corpus, Path(out_dir), command, resume

    def run(
        self,
        on_event: Callable[[TrainEvent], None] | None = None,
        stop: threading.Event | None = None,
        progress_bar: bool = False,
        on_backward: Callable[[nn.Module, int], None] | None = None,
    ) -> TrainResult:
        mc, tc = self.config.model, self.config.train
        if tc.threads:
            torch.set_num_threads(tc.threads)
        torch.manual_seed(tc.seed)
        model = build_model(mc)
        optimizer = make_optimizer(model, tc)
        sampler = BatchSampler(self.corpus.train, mc.block_size, tc.batch_size, tc.seed)
        eval_starts = None
        if tc.eval_windows is not None:
            eval_starts = sample_windows(len(self.corpus.val), mc.block_size, tc.eval_windows, tc.seed)
        autocast_dtype = torch.bfloat16 if tc.dtype == "bfloat16" else torch.float32
        emit = on_event or (lambda event: None)
        # fit once (~0.3 s on Shakespeare) and written once: it depends on the corpus, not on the weights
        draft = NgramDraft.fit(self.corpus.train, self.corpus.tokenizer.vocab_size)
        draft.save(self.out_dir / ckpt.DRAFT)

        step, best_val, best_step, tokens_seen, elapsed_before, history = 0, math.inf, -1, 0, 0.0, []
        state_path = self.out_dir / ckpt.TRAIN_STATE
        if self.resume and state_path.exists():
            state = ckpt.safe_torch_load(state_path)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            sampler.set_state(state["sampler_rng"])
            torch.set_rng_state(state["torch_rng"])
            step, best_val, best_step = state["step"], state["best_val"], state["best_step"]
            tokens_seen, elapsed_before, history = state["tokens_seen"], state["elapsed"], state["history"]

        bar = None
        if progress_bar:
            from tqdm import tqdm

            bar = tqdm(total=tc.max_iters, initial=step, unit="step", dynamic_ncols=True, mininterval=1.0)
        start = time.perf_counter()
        elapsed = lambda: elapsed_before + time.perf_counter() - start  # noqa: E731
        recent_losses: list[float] = []
        window_tokens, window_time = 0, 0.0
        stopped = False

        def evaluate_and_save() -> None:
            nonlocal best_val, best_step
            val = split_loss(model, self.corpus.val, mc.block_size, starts=eval_starts, dtype=autocast_dtype)
            train = sum(recent_losses) / len(recent_losses) if recent_losses else None
            recent_losses.clear()
            history.append({"step": step, "train_loss": train, "val_loss": val, "elapsed": round(elapsed(), 3),
                            "tokens_seen": tokens_seen})
            if val < best_val:
                best_val, best_step = val, step
                ckpt.save_checkpoint(self.out_dir, model, self.config, self.corpus.tokenizer,
                                     self._metrics(model, None, best_step, tokens_seen, elapsed(), history, "training"))
            ckpt.atomic_torch_save(state_path, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "sampler_rng": sampler.state(), "torch_rng": torch.get_rng_state(), "step": step,
                "best_val": best_val, "best_step": best_step, "tokens_seen": tokens_seen,
                "elapsed": elapsed(), "history": history,
            })
            emit(TrainEvent("eval", step, tc.max_iters, elapsed(), train_loss=train, val_loss=val,
                            progress=self._progress(step, elapsed())))

        model.train()
        while step < tc.max_iters:
            if (stop is not None and stop.is_set()) or (tc.time_budget and elapsed() >= tc.time_budget):
                stopped = True
                break
            t0 = time.perf_counter()
            lr = learning_rate(step, self._progress(step, elapsed()), tc)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["lr_scale"]
            x, y = sampler.next_batch()
            hook = None if on_backward is None else (lambda m: on_backward(m, step + 1))
            loss_value = train_step(model, optimizer, x, y, autocast_dtype, tc.grad_clip, hook)
            step += 1
            tokens_seen += x.numel()
            recent_losses.append(loss_value)
            window_tokens += x.numel()
            window_time += time.perf_counter() - t0
            tps = window_tokens / window_time if window_time else None
            if window_time > 2.0:  # a sliding estimate over the last couple of seconds
                window_tokens, window_time = 0, 0.0
            emit(TrainEvent("step", step, tc.max_iters, elapsed(), train_loss=loss_value, lr=lr,
                            tokens_per_sec=tps, progress=self._progress(step, elapsed())))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tps or 0:,.0f}")
            if step % tc.eval_interval == 0 or step == tc.max_iters:
                evaluate_and_save()
            if tc.sample_interval and step % tc.sample_interval == 0:
                text = generate(model, self.corpus.tokenizer, "\n",
                                SamplingParams(temperature=0.8, max_new_tokens=tc.sample_chars, seed=step), draft=draft)
                model.train()
                emit(TrainEvent("sample", step, tc.max_iters, elapsed(), text=text))
        if bar is not None:
            bar.close()
        if not history or history[-1]["step"] != step:
            evaluate_and_save()

        # the quoted number: the best weights, evaluated on the whole validation split in float32
        best = ckpt.load_checkpoint(self.out_dir)
        val_loss = split_loss(best.model, self.corpus.val, mc.block_size)
        wall = elapsed()
        metrics = self._metrics(best.model, val_loss, best_step, tokens_seen, wall, history,
                                "stopped" if stopped else "finished")
        ckpt.write_json(self.out_dir / ckpt.METRICS, metrics)
        emit(TrainEvent("done", step, tc.max_iters, wall, val_loss=val_loss, progress=1.0))
        return TrainResult(self.out_dir, val_loss, best_step, step, tokens_seen, wall, stopped,
                           count_parameters(best.model), history)

    def _progress(self, step: int, elapsed: float) -> float:
        tc = self.config.train
        progress = step / tc.max_iters
        if tc.time_budget:
            progress = max(progress, elapsed / tc.time_budget)
        return min(progress, 1.0)

    def _metrics(self, model, val_loss, best_step, tokens_seen, wall, history, status) -> dict:
        return {
            "val_loss": val_loss,
            "val_loss_definition": "mean cross-entropy over the whole validation split (last 10%), "
                                   "non-overlapping windows of block_size, float32",
            "params": count_parameters(model),
            "best_step": best_step,
            "steps": history[-1]["step"] if history else 0,
            "tokens_seen": tokens_seen,
            "wall_time_s": round(wall, 2),
            "tokens_per_sec": round(tokens_seen / wall, 1) if wall else None,
            "status": status,
            "command": self.command,
            "corpus": self.corpus.source,
            "torch": torch.__version__,
            "history": history,
            "config": self.config.to_dict(),
        }
