"""The training loop: warmup and decay, clipping, periodic evaluation, keep-the-best checkpointing, resume.

A UI drives it through plain Python: ``Trainer.run(on_event=..., stop=threading.Event())`` calls
``on_event`` with a :class:`TrainEvent` after every step, evaluation and sample, and returns when
``max_iters`` or the time budget is reached or ``stop`` is set. ``on_backward(model, step)`` runs after
each backward pass, before clipping, so a study can measure raw gradients (e.g. of the first layer)
without the loop knowing what is measured. Every evaluation also saves a :class:`TrainState`, so
``resume=True`` continues exactly where the run stopped.

On a GPU the loop never waits for a step to finish before queueing the next: it reads each step's loss
one step late, when the GPU has computed it anyway.
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
from torch.nn.parallel import DistributedDataParallel

from .. import checkpoint as ckpt
from .. import snapshots
from ..config import RunConfig
from ..data import BatchSampler, Corpus
from ..shards import ShardSet
from ..device import compute_dtype, describe, resolve_device, to_device
from ..errors import CheckpointError, GptcoreError, TrainingDivergedError
from ..memory import check_fits
from ..storage import check_output_dir
from ..evaluate import nats_per_char, sample_windows, split_loss, too_short_to_measure
from ..inference.draft import NgramDraft, fitting_order
from ..inference.sampling import SamplingParams, generate
from ..models import build_model, count_parameters
from .metrics import run_metrics
from .optimizers import make_optimizer
from .progress import ProgressBar
from .schedule import learning_rate
from .state import TrainState
from .distributed import join, leave
from .step import accumulated_step

PREVIEW_TEMPERATURE = 0.8
DRAFT_TOKENS = 4_000_000  # tokens of a prepared corpus the n-gram draft is fit on


class _NonFiniteLoss(Exception):
    def __init__(self, step: int, value: float):
        self.step, self.value = step, value


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
    val_nats_per_char: float | None = None


class _Speed:
    """Tokens per second over the last couple of seconds of steps."""

    def __init__(self):
        self.tokens, self.seconds = 0, 0.0

    def add(self, tokens: int, seconds: float) -> float | None:
        self.tokens += tokens
        self.seconds += seconds
        rate = self.tokens / self.seconds if self.seconds else None
        if self.seconds > 2.0:
            self.tokens, self.seconds = 0, 0.0
        return rate


class Trainer:
    def __init__(self, config: RunConfig, corpus: Corpus, out_dir: str | Path, command: str = "", resume: bool = False):
        # a copy with the corpus's tokenizer and vocabulary: the caller's config is left as it was
        self.config = config.with_overrides({"vocab_size": corpus.tokenizer.vocab_size,
                                             "tokenizer": corpus.tokenizer.type_name})
        self.corpus, self.out_dir, self.command, self.resume = corpus, Path(out_dir), command, resume
        # under torchrun this process is one of several (each with its own GPU, if any); else a group of one
        self.group, device = join(self.config.train.device)
        self.device = resolve_device(device)
        self.autocast_dtype = compute_dtype(self.device, self.config.train.dtype)
        self._check_inputs()

    def _check_inputs(self) -> None:
        """Everything that would otherwise fail after work has started: the splits' lengths, the output
        directory, and whether the run fits in memory."""
        block = self.config.model.block_size
        if len(self.corpus.train) <= block:
            raise GptcoreError(f"the training split ({len(self.corpus.train)} tokens) must be longer than "
                               f"block_size ({block}); use a longer text or a smaller block_size")
        if len(self.corpus.val) < 2:
            raise too_short_to_measure(len(self.corpus.val))
        if self.config.train.snapshot_interval and self.config.model.arch != "gpt":
            raise GptcoreError(f"snapshots record attention, and a {self.config.model.arch} model has none; "
                               "set snapshot_interval to 0")
        check_output_dir(self.out_dir)
        check_fits(self.config, self.device)

    @property
    def state_path(self) -> Path:
        return self.out_dir / ckpt.TRAIN_STATE

    def run(
        self,
        on_event: Callable[[TrainEvent], None] | None = None,
        stop: threading.Event | None = None,
        progress_bar: bool = False,
        on_backward: Callable[[nn.Module, int], None] | None = None,
    ) -> TrainResult:
        try:
            result = self._run(on_event, stop, progress_bar, on_backward)
            self.group.barrier()  # every process done before the group is taken down
            return result
        finally:
            leave(self.group)

    def _run(self, on_event, stop, progress_bar, on_backward) -> TrainResult:
        run = _Run(self, on_event or (lambda event: None), stop, progress_bar, on_backward)
        try:
            status = run.train_until_done()
        except _NonFiniteLoss as e:
            run.close_bar()
            raise self._diverged(run.st, e, run.elapsed(), run.emit) from None
        run.close_bar()
        if not run.st.history or run.st.history[-1]["step"] != run.st.step:
            run.evaluate_and_save()
        return self._finish(run.st, run.elapsed(), status, run.emit)

    def _diverged(self, st: TrainState, e: "_NonFiniteLoss", wall: float, emit) -> TrainingDivergedError:
        """The error that ends a run whose loss became non-finite, after marking its kept checkpoint."""
        if st.best_step < 0:
            return TrainingDivergedError(
                f"training stopped: the loss became non-finite ({e.value}) at step {e.step}, before any checkpoint "
                f"was saved; try a lower learning rate")
        result = self._finish(st, wall, "diverged", emit)
        return TrainingDivergedError(
            f"training stopped: the loss became non-finite ({e.value}) at step {e.step}; the last good checkpoint "
            f"(step {st.best_step}, validation loss {result.val_loss:.4f}) is kept in {self.out_dir}", result)

    def _fit_draft(self) -> NgramDraft:
        """The n-gram draft of the training split, written once: it depends on the corpus, not the weights."""
        train = self.corpus.train
        if isinstance(train, ShardSet):  # a prepared corpus can be any size: its first tokens are plenty
            train = train.head(DRAFT_TOKENS)
        vocab = self.corpus.tokenizer.vocab_size
        draft = NgramDraft.fit(train, vocab, fitting_order(vocab))
        ckpt.save_draft(self.out_dir, draft)
        return draft

    def _preview(self, model: nn.Module, draft: NgramDraft, step: int) -> str:
        """A short sample from the current weights, from a newline (or the first token of the vocabulary)."""
        text = generate(model, self.corpus.tokenizer, "", SamplingParams(
            temperature=PREVIEW_TEMPERATURE, max_new_tokens=self.config.train.sample_chars, seed=step), draft=draft)
        model.train()
        return text

    def _restore(self, model: nn.Module, optimizer, sampler: BatchSampler) -> TrainState:
        st = TrainState.load(self.state_path)
        g = self.group
        try:
            model.load_state_dict(st.model)
            optimizer.load_state_dict(st.optimizer)
            sampler.set_state(st.sampler_rng)
            if st.rank_rngs is not None and len(st.rank_rngs) == g.world_size:  # each process's own generators
                cpu, cuda = st.rank_rngs[g.rank]
                st.torch_rng, st.cuda_rng = cpu, cuda
            elif g.enabled:  # another number of processes: the same batches, freshly seeded dropout masks
                st.torch_rng = torch.Generator().manual_seed(self.config.train.seed + 1_000_003 * g.rank
                                                             + st.step).get_state()
                st.cuda_rng = None
            torch.set_rng_state(st.torch_rng)
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"cannot resume from {self.state_path}: it does not match this run's config "
                f"({str(e).strip().splitlines()[0][:200]})") from None
        if st.cuda_rng is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(st.cuda_rng, self.device)
        return st

    def _save_state(self, st: TrainState, model: nn.Module, optimizer, sampler: BatchSampler, elapsed: float) -> None:
        """Rank 0 writes the state; with several processes it holds every process's generators."""
        st.sampler_rng, st.torch_rng, st.elapsed = sampler.state(), torch.get_rng_state(), elapsed
        st.cuda_rng = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        st.rank_rngs = self.group.gather((st.torch_rng, st.cuda_rng)) if self.group.enabled else None
        if not self.group.is_main:
            return
        st.model, st.optimizer = model.state_dict(), optimizer.state_dict()
        st.save(self.state_path)
        st.model, st.optimizer = {}, {}  # the live objects hold them; don't keep a second reference

    def _finish(self, st: TrainState, wall: float, status: str, emit) -> TrainResult:
        """The quoted number: the best weights, evaluated on the whole validation split in float32, by rank 0
        (the other processes wait for its result). ``status`` is "finished", "stopped" or "diverged"."""
        g = self.group
        result = self._final_result(st, wall, status, emit) if g.is_main else None
        return g.broadcast(result)

    def _final_result(self, st: TrainState, wall: float, status: str, emit) -> TrainResult:
        best = ckpt.load_checkpoint(self.out_dir, self.device)
        val = self.corpus.val
        limit = self.config.train.final_eval_tokens
        if limit is not None and len(val) > limit:  # a huge validation split: its first tokens, as metrics say
            val = val.head(limit) if isinstance(val, ShardSet) else val[:limit]
        val_loss = split_loss(best.model, val, self.config.model.block_size)
        per_char = nats_per_char(val_loss, val, self.corpus.tokenizer)
        metrics = self._metrics(best.model, val_loss, st, wall, status, per_char)
        metrics["val_tokens_evaluated"] = len(val)
        ckpt.save_metrics(self.out_dir, metrics)
        emit(TrainEvent("done", st.step, self.config.train.max_iters, wall, val_loss=val_loss, progress=1.0))
        return TrainResult(self.out_dir, val_loss, st.best_step, st.step, st.tokens_seen, wall, status == "stopped",
                           count_parameters(best.model), st.history, per_char)

    def _progress(self, step: int, elapsed: float) -> float:
        tc = self.config.train
        progress = step / tc.max_iters
        if tc.time_budget:
            progress = max(progress, elapsed / tc.time_budget)
        return min(progress, 1.0)

    def _metrics(self, model: nn.Module, val_loss: float | None, st: TrainState, wall: float, status: str,
                 val_nats_per_char: float | None = None) -> dict:
        return run_metrics(model, self.config, val_loss=val_loss, best_step=st.best_step, tokens_seen=st.tokens_seen,
                           wall=wall, history=st.history, status=status, command=self.command,
                           corpus=self.corpus.source, device=describe(self.device), val_nats_per_char=val_nats_per_char)


class _Run:
    """One call of :meth:`Trainer.run`: the live model, optimizer and batch stream, the :class:`TrainState`
    they advance, and a run's steps as methods: start (or resume), step, evaluate and keep the best. The
    trainer's own methods restore, save and finish; this holds what changes from step to step."""

    def __init__(self, trainer: "Trainer", emit: Callable[[TrainEvent], None], stop: threading.Event | None,
                 progress_bar: bool, on_backward: Callable[[nn.Module, int], None] | None):
        self.trainer, self.emit, self.stop, self.on_backward = trainer, emit, stop, on_backward
        self.mc, self.tc, self.g = trainer.config.model, trainer.config.train, trainer.group
        self._build()
        sampler = self.sampler
        if trainer.resume and trainer.state_path.exists():
            self.st = trainer._restore(self.model, self.optimizer, sampler)
        else:
            self.st = TrainState(model={}, optimizer={}, sampler_rng=sampler.state(), torch_rng=torch.get_rng_state())
        g, tc = self.g, self.tc
        self.share = range(g.rank * tc.grad_accum, (g.rank + 1) * tc.grad_accum)  # this process's micro-batches
        self.bar = (ProgressBar(tc.max_iters, tc.time_budget, self.st.step, self.st.elapsed)
                    if progress_bar and g.is_main else None)
        self.started, self.elapsed_before = time.perf_counter(), self.st.elapsed
        self.recent_losses: list[float] = []
        self.speed = _Speed()
        self.pending: tuple | None = None  # (step, loss tensor, lr, tokens, seconds) not yet reported
        self.snapshots = self._snapshots() if tc.snapshot_interval and g.is_main else None

    def _build(self) -> None:
        """The model (wrapped for several processes, compiled if asked), its optimizer, the batch stream, the
        evaluation windows and the n-gram draft for previews, made in an order that fixes the random streams."""
        t, mc, tc, g = self.trainer, self.mc, self.tc, self.g
        if tc.threads:
            torch.set_num_threads(tc.threads)
        torch.manual_seed(tc.seed)
        self.model = build_model(mc).to(t.device)
        step_model = self.model
        if g.enabled:  # gradients averaged across the processes; each draws its own dropout masks
            step_model = DistributedDataParallel(self.model, device_ids=[t.device.index]
                                                 if t.device.type == "cuda" else None)
            torch.manual_seed(tc.seed + 1_000_003 * g.rank)
        # the compiled module shares its parameters with ``model``, which is what gets saved and evaluated
        self.step_model = torch.compile(step_model) if tc.compile else step_model
        self.optimizer = make_optimizer(self.model, tc)
        self.sampler = BatchSampler(t.corpus.train, mc.block_size, tc.batch_size, tc.seed)
        self.eval_starts = None
        if tc.eval_windows is not None:
            self.eval_starts = sample_windows(len(t.corpus.val), mc.block_size, tc.eval_windows, tc.seed)
        self.draft = t._fit_draft() if g.is_main else None

    def _snapshots(self) -> snapshots.Snapshots:
        """The run's snapshots: those of the run being resumed, up to its saved step, else new ones; the
        one due at the current step taken at once (step 0 of a new run)."""
        t = self.trainer
        if t.resume and t.state_path.exists() and snapshots.exists(t.out_dir):
            kept = snapshots.Snapshots.load(t.out_dir)
            kept.drop_after(self.st.step)
        else:
            kept = snapshots.begin(self.model, t.corpus.tokenizer, t.corpus.val, self.tc.snapshot_interval)
        kept.take(self.model, self.st.step)
        kept.save(t.out_dir)
        return kept

    def take_snapshot(self) -> None:
        if self.snapshots is not None and self.snapshots.take(self.model, self.st.step):
            self.snapshots.save(self.trainer.out_dir)

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.started

    def report_pending(self) -> None:
        """Report the last step's loss, read only now so that a GPU never waits for it; stop on a non-finite one."""
        if self.pending is None:
            return
        step, loss, lr, tokens, seconds = self.pending
        self.pending = None
        value = self.g.mean(loss).item()  # every process sees the same value, so all stop on a NaN together
        tps = self.speed.add(tokens, seconds)
        self.emit(TrainEvent("step", step, self.tc.max_iters, self.elapsed(), train_loss=value, lr=lr,
                             tokens_per_sec=tps, progress=self.trainer._progress(step, self.elapsed())))
        if not math.isfinite(value):
            raise _NonFiniteLoss(step, value)
        self.recent_losses.append(value)
        if self.bar is not None:
            self.bar.update(step, self.elapsed(), value, tps)

    def evaluate_and_save(self) -> None:
        """Evaluate, keep the checkpoint if it is the best so far, and save the state a resume starts from."""
        t, st = self.trainer, self.st
        val = split_loss(self.model, t.corpus.val, self.mc.block_size, starts=self.eval_starts,
                         dtype=t.autocast_dtype)
        train = sum(self.recent_losses) / len(self.recent_losses) if self.recent_losses else None
        self.recent_losses.clear()
        st.history.append({"step": st.step, "train_loss": train, "val_loss": val,
                           "elapsed": round(self.elapsed(), 3), "tokens_seen": st.tokens_seen})
        if val < st.best_val:
            st.best_val, st.best_step = val, st.step
            if self.g.is_main:
                ckpt.save_checkpoint(t.out_dir, self.model, t.config, t.corpus.tokenizer,
                                     t._metrics(self.model, None, st, self.elapsed(), "training"))
        t._save_state(st, self.model, self.optimizer, self.sampler, self.elapsed())
        self.emit(TrainEvent("eval", st.step, self.tc.max_iters, self.elapsed(), train_loss=train, val_loss=val,
                             progress=t._progress(st.step, self.elapsed())))

    def train_until_done(self) -> str:
        """Step until ``max_iters``, the time budget or a stop request: "finished" or "stopped"."""
        self.model.train()
        while self.st.step < self.tc.max_iters:
            # one clock and one stop request for every process (a time budget paces the learning rate)
            now, asked = self.g.agree(self.elapsed(), self.stop is not None and self.stop.is_set(),
                                      self.trainer.device)
            if asked or (self.tc.time_budget and now >= self.tc.time_budget):
                self.report_pending()
                return "stopped"
            self.step(now)
        self.report_pending()
        return "finished"

    def step(self, now: float) -> None:
        """One optimizer step over the step's global batch, then the evaluation or preview it is due for."""
        t, tc, g, st = self.trainer, self.tc, self.g, self.st
        t0 = time.perf_counter()
        lr = learning_rate(st.step, t._progress(st.step, now), tc)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        batches = self._batches()
        hook = None if self.on_backward is None else (lambda m, s=st.step + 1: self.on_backward(self.model, s))
        loss = accumulated_step(self.step_model, self.optimizer, batches, t.autocast_dtype, tc.grad_clip, hook)
        self.report_pending()  # the previous step's loss: reading it now does not stall the GPU
        tokens = sum(x.numel() for x, _ in batches) * g.world_size
        st.step += 1
        st.tokens_seen += tokens
        self.pending = (st.step, loss, lr, tokens, time.perf_counter() - t0)
        self.take_snapshot()
        at_eval = st.step % tc.eval_interval == 0 or st.step == tc.max_iters
        at_sample = bool(tc.sample_interval) and st.step % tc.sample_interval == 0
        if at_eval or at_sample:
            self.report_pending()
        if at_eval:
            self.evaluate_and_save()
        if at_sample and g.is_main:
            self.emit(TrainEvent("sample", st.step, tc.max_iters, self.elapsed(),
                                 text=t._preview(self.model, self.draft, st.step)))

    def _batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This process's micro-batches: the step's global batch is world_size x grad_accum micro-batches of
        one shared stream, and each process keeps its own share."""
        batches = []
        for k in range(self.g.world_size * self.tc.grad_accum):
            batch = self.sampler.next_batch(keep=k in self.share)
            if batch is not None:
                batches.append(tuple(to_device(x, self.trainer.device) for x in batch))
        return batches

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
