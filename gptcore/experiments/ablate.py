"""Ablation studies: the original write-up's tables and untested claims, rerun with seeds on one shared budget.

``python -m gptcore ablate --study NAME|all`` trains every arm of a study once per seed with the real
:class:`~gptcore.training.Trainer` (:mod:`gptcore.experiments.run_record`), each run in a work directory
that is deleted once the run is recorded, and rewrites ``<out>/<study>.json`` atomically after every run. Rerunning the command keeps the runs
already in the file (same arm, seed and full config) and trains only what is missing, so a study can
be interrupted at any point. A run whose exact config (architecture, recipe and seed) was already
trained by another study in the same directory is copied, marked ``reused_from``, instead of being
trained twice: the base model appears in five studies. Studies may run side by side, and one study in
two processes (:mod:`gptcore.experiments.sharing`).

Studies are data (:class:`Study`, :class:`Arm`), so tests can run a tiny study through the same code.
The schema of the results file lives in ``gptcore.experiments.ablation_results`` and docs/ablations.md.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig, RunConfig, TrainConfig, device_kind
from ..data import Corpus
from ..device import resolve_device
from ..errors import ConfigError, GptcoreError
from ..evaluate import unigram_loss
from ..presets import WRITEUP_MODEL
from ..storage import check_output_dir, write_json
from ..training import TrainEvent
from .arm_models import find_model, keep_model, model_dir, too_big_to_keep
from .run_identity import config_key as _config_key, normalized as _normalized, run_key as _run_key
from .run_record import DIVERGE_NATS, SPIKE_NATS, train_run
from .sharing import claim_run, locked_elsewhere, results_dir_lock
from .ablation_results import (NOISE_RULE, SCHEMA_VERSION, Comparison, arm_stats, compare_arms,  # noqa: F401 (re-exported)
                               load_results, read_step_costs, summarize, validate_results)

# The one budget knob: optimisation steps per run (of batch_size x block_size tokens). 150 steps keeps all six
# studies x 3 seeds short enough for a CPU (estimate_seconds says how long; docs/ablations.md, what it took).
DEFAULT_MAX_ITERS = 150
BASE_SEED = 1337  # seed i of a study is BASE_SEED + i, so seed 0 matches the presets' default
BASE_TOKENS_PER_SEC = 8000.0  # measured training speed of the original write-up model on this machine (bfloat16)
DEFAULT_OUT = Path("checkpoints/ablations")
WORK_DIR = ".work"  # inside a results directory: runs in progress, so an interrupted one resumes
IN_PROGRESS_POLL_S = 60.0  # how often a study waiting for another's run looks again


def default_budget(max_iters: int = DEFAULT_MAX_ITERS) -> TrainConfig:
    """The shared recipe of every run: the original write-up's optimiser settings, scaled to ``max_iters`` steps.

    Warmup is 10% of the run and the cosine decays to 10% of the peak; the periodic (estimated) loss is
    taken six times per run on 32 fixed windows, while the number a study reports is the whole-split loss.
    """
    if max_iters < 1:
        raise ConfigError(f"--max-iters must be at least 1, got {max_iters}")
    return TrainConfig(batch_size=32, max_iters=max_iters, lr=1e-3, warmup_iters=max(1, max_iters // 10),
                       schedule="cosine", min_lr_ratio=0.1, weight_decay=0.1, grad_clip=1.0, dtype="bfloat16",
                       eval_interval=max(1, max_iters // 6), eval_windows=32, sample_interval=0,
                       seed=BASE_SEED).validate()


@dataclass(frozen=True)
class Arm:
    """One setting of a study: ``overrides`` are config fields (model or train) applied to the base."""

    name: str
    label: str
    value: Any
    overrides: dict = field(default_factory=dict)
    writeup_val_loss: float | None = None
    writeup_params: str | None = None


@dataclass(frozen=True)
class Study:
    """A question about one design choice: its arms, the base they vary, and the comparisons to report."""

    name: str
    description: str
    claim: str
    arms: tuple[Arm, ...]
    base_model: ModelConfig = field(default_factory=lambda: dataclasses.replace(WRITEUP_MODEL))
    comparisons: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        names = [a.name for a in self.arms]
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"study {self.name!r} needs arms with distinct names, got {names}")
        for a, b in self.comparisons:
            if a not in names or b not in names:
                raise ConfigError(f"study {self.name!r} compares unknown arms {a!r} and {b!r}")


def _norm_arms() -> tuple[Arm, ...]:
    arms = []
    for lr in (1e-3, 3e-3, 1e-2):
        for norm in ("pre", "post"):
            arms.append(Arm(f"{norm}-lr{lr:g}", f"{norm}-norm, lr {lr:g}", {"norm": norm, "lr": lr},
                            {"norm": norm, "lr": lr}))
    return tuple(arms)


STUDIES: dict[str, Study] = {s.name: s for s in (
    Study("heads", "number of attention heads at width 256",
          "Most gains come from 1→4 heads; 4→8 heads only gets you 0.6%, so 4 heads is enough.",
          tuple(Arm(str(h), f"{h} head{'s' if h > 1 else ''}", h, {"n_head": h}, wu)
                for h, wu in ((1, 1.7172), (2, 1.6691), (4, 1.6393), (8, 1.6288))),
          comparisons=(("2", "1"), ("4", "2"), ("8", "4"), ("4", "1"))),
    Study("depth", "number of transformer layers",
          "Depth keeps helping without overfitting: adding layers consistently improves performance.",
          tuple(Arm(str(n), f"{n} layers", n, {"n_layer": n}, wu, p)
                for n, wu, p in ((2, 1.6960, "1.6M"), (4, 1.6422, "3.2M"), (6, 1.6331, "4.8M"),
                                 (8, 1.6056, "6.4M"))),
          comparisons=(("4", "2"), ("6", "4"), ("8", "6"), ("8", "2"))),
    Study("residual", "residual connections on or off, at 6 layers",
          "Residual connections are essential for training deep networks; without them gradients vanish.",
          (Arm("on", "with residuals", True, {"residual": True}),
           Arm("off", "without residuals", False, {"residual": False})),
          base_model=dataclasses.replace(WRITEUP_MODEL, n_layer=6),
          comparisons=(("off", "on"),)),
    Study("norm", "LayerNorm before (pre) or after (post) each sublayer, at three learning rates",
          "Pre-norm (normalizing before attention) is more stable than post-norm.",
          _norm_arms(),
          comparisons=(("post-lr0.001", "pre-lr0.001"), ("post-lr0.003", "pre-lr0.003"),
                       ("post-lr0.01", "pre-lr0.01"))),
    Study("posemb", "learned position embeddings, rotary positions (RoPE) or none",
          "Positional embeddings are necessary: transformers have no inherent sense of sequence order.",
          (Arm("learned", "learned positions", "learned", {"pos_emb": "learned"}),
           Arm("none", "no positions", "none", {"pos_emb": "none"}),
           Arm("rope", "rotary positions", "rope", {"pos_emb": "rope"})),
          comparisons=(("none", "learned"), ("rope", "learned"))),
    Study("baseline", "the bigram baseline against the base GPT",
          "The GPT gets validation loss down to 1.55 vs 3.62 for the bigram baseline (57% improvement).",
          (Arm("gpt", "GPT (write-up model)", "gpt", {"arch": "gpt"}, 1.55),
           # the bigram is a 65x65 table: at the GPT's lr it barely moves in 150 steps, so it gets the
           # lr that brings it to its optimum; the second arm, at 150 steps, shows an under-trained bigram
           Arm("bigram", "bigram, lr 0.1", "bigram",
               {"arch": "bigram", "lr": 0.1, "weight_decay": 0.0}, 3.62),
           Arm("bigram-lr0.01", "bigram, lr 0.01", "bigram",
               {"arch": "bigram", "lr": 0.01, "weight_decay": 0.0})),
          comparisons=(("gpt", "bigram"),)),
)}


def resolve_studies(name: str) -> list[Study]:
    """``all`` or one study name; anything else is a ConfigError that lists the choices."""
    if name == "all":
        return list(STUDIES.values())
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}; choose one of: {', '.join(STUDIES)}, or all")
    return [STUDIES[name]]


def arm_config(study: Study, arm: Arm, budget: TrainConfig, seed: int, vocab_size: int) -> RunConfig:
    """The exact config of one run: the study's base model and the budget, the arm's overrides, the seed."""
    base = RunConfig(dataclasses.replace(study.base_model, vocab_size=vocab_size),
                     dataclasses.replace(budget, seed=seed))
    return base.with_overrides(arm.overrides)


def budget_dict(budget: TrainConfig, base_model: ModelConfig) -> dict:
    """What every arm shares, as written into the results (a resumed study must match it exactly)."""
    keys = ("max_iters", "batch_size", "lr", "schedule", "warmup_iters", "min_lr_ratio", "weight_decay",
            "beta1", "beta2", "grad_clip", "dtype", "eval_interval", "eval_windows")
    out = {k: getattr(budget, k) for k in keys}
    out["block_size"] = base_model.block_size
    out["tokens_per_run"] = budget.max_iters * budget.batch_size * base_model.block_size
    out["final_eval"] = "best checkpoint (by the periodic estimate), whole validation split, float32"
    return out


def relative_cost(model: ModelConfig) -> float:
    """Training FLOPs per token relative to the original write-up model: 6N for the weights plus attention."""
    def flops(m: ModelConfig) -> float:
        if m.arch == "bigram":
            return 6.0 * m.vocab_size
        weights = 12 * m.n_layer * m.n_embd ** 2 + m.n_embd * m.vocab_size
        return 6.0 * weights + 12.0 * m.n_layer * m.block_size * m.n_embd

    return flops(model) / flops(dataclasses.replace(WRITEUP_MODEL, vocab_size=model.vocab_size))


def estimate_seconds(configs: list[RunConfig], val_tokens: int, tokens_per_sec: float = BASE_TOKENS_PER_SEC,
                     step_seconds: list[float | None] | None = None) -> float:
    """A rough wall-time estimate for training ``configs``, from FLOPs relative to the measured base speed,
    or, for a config whose ``step_seconds`` entry is given, its measured seconds per training step.

    Evaluation (the periodic estimates plus the final whole-split pass, forward only in float32) is counted
    at half the cost of a training token; checkpoint I/O is ignored.
    """
    total = 0.0
    for cfg, measured in zip(configs, step_seconds or [None] * len(configs)):
        tc, mc = cfg.train, cfg.model
        train_tokens = tc.max_iters * tc.batch_size * mc.block_size
        n_evals = math.ceil(tc.max_iters / tc.eval_interval)
        eval_tokens = val_tokens + n_evals * (tc.eval_windows or 0) * mc.block_size
        seconds_per_token = relative_cost(mc) / tokens_per_sec
        train = train_tokens * seconds_per_token if measured is None else tc.max_iters * measured
        total += train + 0.5 * eval_tokens * seconds_per_token
    return total


def measured_step_seconds(out_dir: Path, study: Study, budget: TrainConfig) -> dict[str, float] | None:
    """The study's arms' seconds per step as ``ablate --step-cost`` measured them in ``out_dir``, when they
    were measured at the budget's threads on its kind of device (and the default budget's batch); else None."""
    cost = read_step_costs(out_dir, study.name)
    if cost is None or cost.get("threads") != budget.threads or cost.get("batch_size", budget.batch_size) != \
            budget.batch_size or str(cost.get("device", "")).split(" ")[0] != device_kind(budget.device):
        return None
    try:
        return {name: float(arm["seconds_per_step"]) for name, arm in cost["arms"].items()}
    except (TypeError, KeyError, ValueError):
        return None


@dataclass
class StudyReport:
    """What one call of :func:`run_study` did: the results it wrote and how each run was obtained."""

    path: Path
    results: dict
    trained: int = 0
    kept: int = 0
    reused: int = 0
    models_kept: int = 0  # first seeds whose weights were kept (--keep-models)
    models_trained: int = 0  # of them, runs trained again only to keep their weights


def _existing_runs(path: Path, budget: dict) -> dict[tuple[str, int], dict]:
    """Runs already in ``path``, by (arm, seed); the file must have been made with the same budget."""
    if not path.exists():
        return {}
    try:
        old = load_results(path)
    except GptcoreError as e:
        raise GptcoreError(f"cannot resume from {path}: {e}. Move or delete it to start the study over") from None
    if old["budget"] != budget:
        changed = sorted(k for k in set(old["budget"]) | set(budget) if old["budget"].get(k) != budget.get(k))
        detail = ", ".join(f"{k} {old['budget'].get(k)!r} → {budget.get(k)!r}" for k in changed)
        raise GptcoreError(f"{path} was made with a different budget ({detail}); all runs of a study must share "
                           f"one budget. Use another --out directory, or delete the file to start over")
    return {(arm["name"], run["seed"]): run for arm in old["arms"] for run in arm["runs"]}


def _sibling_runs(out_dir: Path, exclude: Path) -> dict[str, tuple[str, dict]]:
    """Runs of the other studies in ``out_dir``, by exact config, for reuse. Unreadable files are ignored."""
    found: dict[str, tuple[str, dict]] = {}
    for path in sorted(out_dir.glob("*.json")):
        if path.resolve() == exclude.resolve():
            continue
        try:
            data = load_results(path)
        except GptcoreError:
            continue
        for arm in data["arms"]:
            for run in arm["runs"]:
                if "config" in run and "reused_from" not in run:
                    found.setdefault(_config_key(run["config"]), (f"{data['study']}/{arm['name']}", run))
    return found


REFERENCES = {"unigram_val_loss": "the whole-split validation loss of predicting each token from its frequency in "
                                    "the training split alone (add-one smoothed; gptcore.evaluate.unigram_loss)"}


def build_results(study: Study, budget: dict, base_model: ModelConfig, runs: dict[str, list[dict]],
                  command: str, corpus_source: str, references: dict[str, float] | None = None) -> dict:
    """The results document (schema version 1) for the runs gathered so far; ``references``: losses on the
    same validation split that need no training (:data:`REFERENCES`), to read the arms' losses against."""
    arms = []
    for arm in study.arms:
        arm_runs = sorted(runs[arm.name], key=lambda r: r["seed"])
        mean, std = arm_stats(arm_runs)
        arms.append({"name": arm.name, "label": arm.label, "value": arm.value, "overrides": dict(arm.overrides),
                     "writeup_val_loss": arm.writeup_val_loss, "writeup_params": arm.writeup_params,
                     "runs": arm_runs, "n_seeds": len(arm_runs), "mean_val_loss": mean, "std_val_loss": std})
    trained = [r for a in arms for r in a["runs"] if "reused_from" not in r]
    return {
        "schema_version": SCHEMA_VERSION,
        "study": study.name,
        "description": study.description,
        "claim": study.claim,
        "budget": budget,
        "base_config": dataclasses.asdict(base_model),
        "arms": arms,
        "comparisons": [list(c) for c in study.comparisons],
        "noise_rule": NOISE_RULE,
        "measurements": {
            "val_loss": "whole-split validation loss of the run's best checkpoint (float32)",
            "std_val_loss": "sample standard deviation (n-1) over seeds; null with one seed",
            "final_train_loss": "mean training loss of the last 10 steps",
            "loss_spikes": f"steps after warmup whose loss exceeds the best loss so far by > {SPIKE_NATS} nats",
            "diverged": f"a non-finite loss, or a final training loss > {DIVERGE_NATS} nats above the best",
            "grad_norm_first_layer": "mean over steps of the raw (pre-clip) gradient norm of blocks.0",
            "grad_norm_ratio": "grad_norm_first_layer / the same for the last block",
            **{f"references.{name}": what for name, what in REFERENCES.items()},
        },
        **({"references": references} if references else {}),
        "total_train_time_s": round(sum(r.get("elapsed_s", r["wall_time_s"]) for r in trained), 1),
        "created_by": command,
        "corpus": corpus_source,
        "torch": torch.__version__,
    }


def run_study(study: Study, corpus: Corpus, out_dir: str | Path = DEFAULT_OUT, seeds: int = 3,
              budget: TrainConfig | None = None, command: str = "", quiet: bool = False,
              reuse: bool = True, arm_seeds: dict[str, int] | None = None, keep_models: bool = False) -> StudyReport:
    """Run every (arm, seed) of ``study`` not already in ``<out_dir>/<study>.json``; rewrite it after each run.

    Seeds go in the outer loop, so an interrupted study has every arm at the same number of seeds.
    ``arm_seeds`` asks some arms for more seeds than ``seeds`` (see :func:`unclear_arms`). ``keep_models``
    keeps the weights of every arm's first seed (:mod:`.arm_models`), training that seed again where the
    study recorded it without keeping them.
    """
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    run = _StudyRun(study, corpus, Path(out_dir), budget or default_budget(), command, reuse, keep_models)
    todo = run.plan(seeds, arm_seeds or {})
    if not quiet:
        print(run.estimate(todo), flush=True)
    return run.execute(todo, quiet)


class _StudyRun:
    """One call of :func:`run_study`, as plan (what is recorded, what is left), estimate and execute. Another
    process may run the same study, or a study sharing runs, at the same time: the results file is read
    again before every run and merged under a lock at every write."""

    def __init__(self, study: Study, corpus: Corpus, out_dir: Path, budget: TrainConfig, command: str,
                 reuse: bool, keep_models: bool = False):
        self.study, self.corpus, self.out_dir, self.budget = study, corpus, out_dir, budget
        self.command, self.reuse, self.keep_models = command, reuse, keep_models
        self.models_todo: list[tuple[Arm, RunConfig]] = []  # first seeds whose weights are still to keep
        self.path = out_dir / f"{study.name}.json"
        self.vocab = corpus.tokenizer.vocab_size
        self.base_model = dataclasses.replace(study.base_model, vocab_size=self.vocab)
        self.shared = budget_dict(budget, self.base_model)
        self.arms_by_name = {arm.name: arm for arm in study.arms}
        self.references = {"unigram_val_loss": round(unigram_loss(corpus.train, corpus.val, self.vocab), 4)}
        self.runs: dict[str, list[dict]] = {arm.name: [] for arm in study.arms}
        self.report = StudyReport(self.path, {})
        self.siblings: dict = {}

    def _defined(self, existing: dict[tuple[str, int], dict]) -> dict[tuple[str, int], dict]:
        """The runs of ``existing`` whose arm, seed and config match the study's definition; every one is
        kept, even of seeds beyond --seeds."""
        return {(name, seed): run for (name, seed), run in existing.items()
                if name in self.arms_by_name and _normalized(run.get("config")) == _normalized(
                    arm_config(self.study, self.arms_by_name[name], self.budget, seed, self.vocab).to_dict())}

    def _recorded(self) -> dict[tuple[str, int], dict]:
        """The study's runs in the results file, read now: another process may run this study too."""
        return self._defined(_existing_runs(self.path, self.shared))

    def plan(self, seeds: int, arm_seeds: dict[str, int]) -> list[tuple[Arm, RunConfig]]:
        """The (arm, config) pairs left to run; refuses a results file holding runs the study no longer
        defines (rewriting it would drop them)."""
        existing = _existing_runs(self.path, self.shared)
        matching = self._defined(existing)
        stale = [f"{name} seed {seed}" for name, seed in existing if (name, seed) not in matching]
        if stale:
            raise GptcoreError(
                f"{self.path} holds {len(stale)} run(s) the study no longer defines, or defines with another "
                f"config ({', '.join(stale[:4])}{', ...' if len(stale) > 4 else ''}); rewriting it would lose "
                f"them. Move the file away to start the study over, or give another --out")
        self.siblings = _sibling_runs(self.out_dir, self.path) if self.reuse and self.out_dir.is_dir() else {}
        for (name, _), run in matching.items():
            self.runs[name].append(run)
        wanted = {arm.name: max(seeds, arm_seeds.get(arm.name, seeds)) for arm in self.study.arms}
        todo = []
        for i in range(max(wanted.values())):
            for arm in self.study.arms:
                if i >= wanted[arm.name]:
                    continue
                if any(r["seed"] == BASE_SEED + i for r in self.runs[arm.name]):
                    self.report.kept += 1
                else:
                    todo.append((arm, arm_config(self.study, arm, self.budget, BASE_SEED + i, self.vocab)))
        if self.keep_models:
            self.models_todo = self._models_to_keep()
        return todo

    def _models_to_keep(self) -> list[tuple[Arm, RunConfig]]:
        """The arms whose first seed's weights are not kept yet; an arm too big to keep is named and left."""
        todo = []
        for arm in self.study.arms:
            config = arm_config(self.study, arm, self.budget, BASE_SEED, self.vocab)
            reason = too_big_to_keep(config)
            if reason is not None:
                print(f"{self.study.name}: the {arm.label} arm's model is not kept: {reason}", flush=True)
            elif find_model(self.out_dir, config) is None:
                todo.append((arm, config))
        return todo

    def estimate(self, todo: list[tuple[Arm, RunConfig]]) -> str:
        """One line: how many runs, how many are done or reusable, and how long the rest should take."""
        to_train = [(arm, c) for arm, c in todo if _config_key(c.to_dict()) not in self.siblings]
        measured = measured_step_seconds(self.out_dir, self.study, self.budget)
        seconds = estimate_seconds([c for _, c in to_train], len(self.corpus.val), step_seconds=[
            measured.get(arm.name) for arm, _ in to_train] if measured else None)
        basis = (f"from the seconds per step measured at {self.budget.threads} thread(s)" if measured else
                 f"at {BASE_TOKENS_PER_SEC:,.0f} tokens/s for the base model")
        models = [(arm, c) for arm, c in self.models_todo if (arm, c) not in to_train]
        seconds += estimate_seconds([c for _, c in models], len(self.corpus.val), step_seconds=[
            measured.get(arm.name) for arm, _ in models] if measured else None)
        keeping = f", {len(models)} trained again to keep their weights" if models else ""
        return (f"{self.study.name}: {len(todo) + self.report.kept} runs ({self.report.kept} already done, "
                f"{len(todo) - len(to_train)} reusable from other studies, {len(to_train)} to train{keeping}; "
                f"estimated {seconds / 60:.1f} min {basis})")

    def execute(self, todo: list[tuple[Arm, RunConfig]], quiet: bool) -> StudyReport:
        """Run ``todo`` in order, writing the results file after each run; a run another study is training
        waits at the back of the queue."""
        from tqdm import tqdm

        bar = tqdm(total=len(todo) + self.report.kept, initial=self.report.kept, unit="run", desc=self.study.name,
                   disable=quiet, dynamic_ncols=True)
        queue = deque(todo)
        try:
            while queue:
                arm, config = queue.popleft()
                bar.set_postfix_str(f"{arm.name} seed {config.train.seed}")
                if self._obtain(arm, config, bar, queue):
                    bar.update(1)
            for arm, config in self.models_todo:
                bar.set_postfix_str(f"{arm.name} seed {config.train.seed}, to keep its weights")
                self._keep_model(arm, config)
        finally:
            bar.close()
            try:
                (self.out_dir / WORK_DIR).rmdir()  # only when no run is left in progress
            except OSError:
                pass
        if not self.report.results:  # no run recorded by this call: the file stays as it is
            self.report.results = load_results(self.path) if self.path.exists() else self._save()
        return self.report

    def _obtain(self, arm: Arm, config: RunConfig, bar, queue: deque) -> bool:
        """One run: recorded meanwhile by another process, reused from a sibling study, or trained here.
        False when another study is training it (it goes back in ``queue``)."""
        done = self._recorded().get((arm.name, config.train.seed))
        if done is not None:  # another process running this study recorded it meanwhile
            self.runs[arm.name].append(done)
            self.report.kept += 1
            return True
        if self.reuse and self.out_dir.is_dir():  # read again: a study running beside this one may have made it
            self.siblings = _sibling_runs(self.out_dir, self.path)
        hit = self.siblings.get(_config_key(config.to_dict()))
        key = _run_key(config)
        if hit is None and self.reuse and locked_elsewhere(self.out_dir / WORK_DIR, key):
            queue.append((arm, config))  # another study is training it: the others first, then its result
            if all(locked_elsewhere(self.out_dir / WORK_DIR, _run_key(c)) for _, c in queue):
                time.sleep(IN_PROGRESS_POLL_S)
            return False
        work_dir = None
        if hit is not None:
            run = dict(hit[1], reused_from=hit[0])
            self.report.reused += 1
        else:
            def on_eval(event: TrainEvent) -> None:
                bar.set_postfix_str(f"{arm.name} seed {config.train.seed} step {event.step}/{event.max_iters} "
                                    f"val {event.val_loss:.3f}")

            work_dir = self.out_dir / WORK_DIR / f"{arm.name}-seed{config.train.seed}-{key}"
            claim_run(work_dir)
            run = train_run(config, self.corpus, self.command, on_eval, work_dir)
            self.report.trained += 1
            if any(c == config for _, c in self.models_todo):
                self._store_model(work_dir, arm, config, run["val_loss"])
        self.runs[arm.name].append(run)
        self.report.results = self._save()
        if work_dir is not None:
            shutil.rmtree(work_dir, ignore_errors=True)  # recorded: its checkpoint is no longer needed
        return True

    def _keep_model(self, arm: Arm, config: RunConfig) -> None:
        """Train the arm's first seed again, when no process has kept its weights meanwhile, and keep them;
        the study's record of the run stays as it is."""
        if find_model(self.out_dir, config) is not None:
            return
        key = _run_key(config)
        work_dir = self.out_dir / WORK_DIR / f"{arm.name}-seed{config.train.seed}-{key}-model"
        claim_run(work_dir)
        recorded = self._recorded().get((arm.name, config.train.seed)) or {}
        train_run(config, self.corpus, self.command, None, work_dir)
        self._store_model(work_dir, arm, config, recorded.get("val_loss"))
        self.report.models_trained += 1
        shutil.rmtree(work_dir, ignore_errors=True)

    def _store_model(self, work_dir: Path, arm: Arm, config: RunConfig, recorded_val_loss: float | None) -> None:
        keep_model(work_dir, model_dir(self.out_dir, self.study.name, arm.name), self.corpus, recorded_val_loss,
                   self.command)
        self.report.models_kept += 1

    def _save(self) -> dict:
        with results_dir_lock(self.out_dir):  # read, merge and write as one step against the other process
            for (name, seed), run in self._recorded().items():
                if not any(r["seed"] == seed for r in self.runs[name]):
                    self.runs[name].append(run)
            results = validate_results(build_results(self.study, self.shared, self.base_model, self.runs,
                                                     self.command, self.corpus.source, self.references))
            write_json(self.path, results)
        return results


# Welch's p in [CLEAR_P, UNCLEAR_P): too close to the 0.05 line, on either side, for one seed more or less not
# to change the verdict, so more seeds may settle it. Below 0.01 the difference is clear; from 0.2 the seeds
# say the difference, if any, is smaller than this budget of seeds can see.
CLEAR_P, UNCLEAR_P = 0.01, 0.2


def unclear_arms(results: dict) -> set[str]:
    """The arms of the study's comparisons whose verdict is not yet clear (Welch's p in [0.01, 0.2))."""
    out: set[str] = set()
    for a, b in results.get("comparisons") or []:
        c = compare_arms(results, a, b)
        if c.p_value is not None and CLEAR_P <= c.p_value < UNCLEAR_P:
            out |= {a, b}
    return out


@dataclass(frozen=True)
class AblateOptions:
    """What ``gptcore ablate`` asks for, as typed values (the CLI builds it from its arguments)."""

    study: str
    seeds: int = 3
    out: str = str(DEFAULT_OUT)
    data: str | None = None
    max_iters: int | None = None
    threads: int | None = None
    max_seeds: int | None = None
    quiet: bool = False
    device: str = "auto"
    keep_models: bool = False

    def check_counts(self) -> None:
        """--seeds, --max-seeds and --threads as counts, refused before any work (step costs included)."""
        if self.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {self.seeds}")
        if self.max_seeds is not None and self.max_seeds < self.seeds:
            raise ConfigError(f"--max-seeds must be at least --seeds ({self.seeds}), got {self.max_seeds}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")

    def command(self, study: str) -> str:
        """The command line that reruns one study, for its results file."""
        parts = ["python -m gptcore ablate", f"--study {study}", f"--seeds {self.seeds}"]
        if self.max_iters is not None:
            parts.append(f"--max-iters {self.max_iters}")
        if self.max_seeds:
            parts.append(f"--max-seeds {self.max_seeds}")
        if self.keep_models:
            parts.append("--keep-models")
        return " ".join(parts)


def run_ablations(options: AblateOptions) -> int:
    """``gptcore ablate``: validate everything before the first (slow) run, then run each study, adding a seed
    at a time to the arms of unsettled comparisons up to ``max_seeds``."""
    studies = resolve_studies(options.study)
    options.check_counts()
    check_output_dir(options.out)
    budget = default_budget(options.max_iters if options.max_iters is not None else DEFAULT_MAX_ITERS)
    budget = dataclasses.replace(budget, device=str(resolve_device(options.device)), threads=options.threads)
    budget.validate()
    corpus = Corpus.load(options.data)
    seeds, max_seeds = options.seeds, options.max_seeds or options.seeds
    for study in studies:
        run = functools.partial(run_study, study, corpus, options.out, seeds=seeds, budget=budget,
                                command=options.command(study.name), quiet=options.quiet,
                                keep_models=options.keep_models)
        report = run()
        arm_seeds: dict[str, int] = {}
        while unclear := {a for a in unclear_arms(report.results) if arm_seeds.get(a, seeds) < max_seeds}:
            for arm in unclear:
                arm_seeds[arm] = arm_seeds.get(arm, seeds) + 1
            report = run(arm_seeds=arm_seeds)
        if not options.quiet:
            print(summarize(report.results))
        models = f", {report.models_kept} models kept" if options.keep_models else ""
        print(f"{report.path}: {report.trained} trained, {report.kept} kept, {report.reused} reused{models}",
              flush=True)
    return 0
