"""Speed benchmark: every speed is a median of repeats and a ratio to a reference measured in the same run.

- training tokens/s at the original write-up's config: the reference is the nanoGPT approach on a CPU (float32,
  ``scaled_dot_product_attention`` with its own dropout, ``nn.Dropout``); the fast path is ours
  (bfloat16 autocast, explicit attention, byte dropout);
- sampling characters/s at batch 1 with a full context: the reference recomputes the whole context for
  every token (as nanoGPT's ``generate`` does), ours uses the key-value cache and checks the n-gram
  draft's guesses (``gptcore.inference.draft``); the cache alone and sampling at the app's temperature are
  reported beside it; and time to first token;
- the byte-level BPE tokenizer: training a 1,024-token vocabulary on the whole corpus, and encoding it
  with a freshly loaded tokenizer (its chunk cache empty) and again (cache full), beside the character
  tokenizer's encoding as the reference; pure Python, so one core;
- optionally, whole training commands timed from process start to exit (``--runs``), for time-to-loss;
- on a GPU, a section of its own (``gpu``): training tokens/s at nanoGPT's Shakespeare-char "baby GPT"
  config against nanoGPT's approach on a GPU (bfloat16, flash attention, torch dropout, fused AdamW), both
  in the same run, and sampling on the GPU with and without the cache. The CPU figures keep their meaning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dataclasses

import torch
import torch.nn as nn

from ..checkpoint import checkpoint_files, load_checkpoint
from ..config import ModelConfig, TrainConfig
from ..data import BatchSampler, Corpus, read_corpus, resolve_corpus
from ..device import available_devices, describe, resolve_device, synchronize, to_device
from ..errors import GptcoreError
from ..evaluate import nats_per_char, split_loss
from .flops import matmul_peak, training_flops_per_token
from ..inference.draft import NgramDraft
from ..inference.sampling import SamplingParams, stream_tokens
from ..models import build_model, count_parameters
from ..models.dropout import Dropout
from ..presets import NANOGPT_BABY_MODEL, WRITEUP_MODEL, get_preset
from ..storage import check_output_file, write_json
from ..tokenizers import BPETokenizer, CharTokenizer, tokenizer_from_dict
from ..training import make_optimizer, train_step


def nanogpt_reference(model: nn.Module) -> nn.Module:
    """The same model with torch's own dropout modules in place of ours (byte dropout on a CPU)."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, Dropout):
                setattr(module, name, nn.Dropout(model.config.dropout))
    return model


def train_tokens_per_sec(model_config: ModelConfig, corpus: Corpus, batch_size: int, dtype: torch.dtype,
                         steps: int, repeats: int, reference: bool = False,
                         device: torch.device = torch.device("cpu"), compile: bool = False,
                         warmup: dict | None = None) -> list[float]:
    """Tokens/s of full training steps (forward, backward, clip, AdamW), one figure per repeat.

    The warm-up steps (kernels, allocator, and with ``compile`` the compilation) are not in the figures;
    their wall time goes into ``warmup["seconds"]`` when a dict is given."""
    torch.manual_seed(0)
    model = build_model(model_config).to(device).train()
    if reference:
        model = nanogpt_reference(model)
    optimizer = make_optimizer(model, TrainConfig())
    step_model = torch.compile(model) if compile else model
    sampler = BatchSampler(corpus.train, model_config.block_size, batch_size, seed=0)

    def step():
        x, y = (to_device(t, device) for t in sampler.next_batch())
        train_step(step_model, optimizer, x, y, dtype, grad_clip=1.0)

    t0 = time.perf_counter()
    for _ in range(3 if compile else 2):  # warm-up: allocator, kernels, compilation
        step()
    synchronize(device)
    if warmup is not None:
        warmup["seconds"] = time.perf_counter() - t0
    rates = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        rates.append(steps * batch_size * model_config.block_size / (time.perf_counter() - t0))
    return rates


@torch.no_grad()
def naive_generate(model, prompt_ids: list[int], n: int) -> list[int]:
    """The reference: crop to the last block_size tokens and run the whole context for every token (greedy)."""
    idx = torch.tensor([prompt_ids], device=next(model.parameters()).device)
    out = []
    for _ in range(n):
        logits, _ = model(idx[:, -model.config.block_size:])
        token = logits[:, -1].argmax(-1, keepdim=True)
        idx = torch.cat([idx, token], dim=1)
        out.append(int(token))
    return out


class _threads:
    """Run a block with a given number of torch threads, then restore the previous number."""

    def __init__(self, n: int):
        self.n, self.before = n, torch.get_num_threads()

    def __enter__(self):
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)


APP_TEMPERATURE = 0.8  # the Sample tab's and the CLI's default


def _cached_run(model, prompt: list[int], params: SamplingParams, draft: NgramDraft | None) -> tuple[float, float]:
    """(chars/s, seconds to the first token) of one cached generation."""
    t0 = time.perf_counter()
    stream = stream_tokens(model, prompt, params, use_cache=True, draft=draft)
    next(stream)
    first = time.perf_counter() - t0
    for _ in stream:
        pass
    return params.max_new_tokens / (time.perf_counter() - t0), first


def sampling_rates(checkpoint: str, text: str, n_tokens: int, repeats: int) -> dict:
    """Batch-1 generation after a full context: the first ``block_size`` characters of ``text``, at 1
    thread and at all threads.

    Ours: the KV cache with the checkpoint's n-gram draft; also the cache alone, and both sampling at the
    app's temperature, where fewer guesses are kept. The reference recomputes the context for every token.
    The headline is greedy, where all paths give the same text; each side's faster thread count makes
    the ratio.
    """
    ck, prompt, greedy, naive_tokens = _sampling_setup(checkpoint, text, n_tokens, torch.device("cpu"))
    if ck.draft is None:
        raise GptcoreError(f"{checkpoint} has no draft.pt: run `python -m gptcore draft --checkpoint {checkpoint}`")
    counts = sorted({1, torch.get_num_threads()})
    names = ("cached", "cache_only", "sampled", "sampled_cache_only", "naive")
    runs: dict[str, dict[int, list[float]]] = {name: {n: [] for n in counts} for name in names}
    first: dict[int, list[float]] = {n: [] for n in counts}
    for repeat in range(repeats):
        sampled = SamplingParams(temperature=APP_TEMPERATURE, max_new_tokens=n_tokens, seed=repeat)
        for n in counts:
            with _threads(n):
                _sampling_round(ck, prompt, greedy, sampled, naive_tokens, {k: v[n] for k, v in runs.items()},
                                first[n])
    out = {"checkpoint": checkpoint, "context": len(prompt), "new_tokens": n_tokens,
           "sampled_temperature": APP_TEMPERATURE, "draft_contexts": len(ck.draft), "draft_order": ck.draft.order}
    for name in names:
        best = max(counts, key=lambda n: statistics.median(runs[name][n]))
        out[f"{name}_by_threads"] = {str(n): values for n, values in runs[name].items()}
        out[f"{name}_threads"] = best
        out[f"median_{name}"] = statistics.median(runs[name][best])
    # time to first token at the headline's setting
    out["first_by_threads"] = {str(n): values for n, values in first.items()}
    out["first_threads"] = out["cached_threads"]
    out["median_first"] = statistics.median(first[out["cached_threads"]])
    out["median_one_thread_cached"] = statistics.median(runs["cached"][1])
    for name in ("cached", "cache_only", "sampled", "sampled_cache_only"):
        out[f"{name}_ratio"] = out[f"median_{name}"] / out["median_naive"]
    return out


def tokenizer_speed(text: str, vocab_size: int, repeats: int) -> dict:
    """Seconds to train BPE on ``text``; MB/s to encode it cold (a tokenizer just loaded from its JSON)
    and warm (the same object again); the character tokenizer's MB/s as the reference."""
    megabytes = len(text.encode("utf-8")) / 1e6
    train_s, cold, warm, char = [], [], [], []
    char_tokenizer = CharTokenizer.from_text(text)
    for _ in range(repeats):
        start = time.perf_counter()
        trained = BPETokenizer.train(text, vocab_size)
        train_s.append(time.perf_counter() - start)
        fresh = tokenizer_from_dict(trained.to_dict())
        for rates, tokenizer in ((cold, fresh), (warm, fresh), (char, char_tokenizer)):
            start = time.perf_counter()
            tokenizer.encode(text)
            rates.append(megabytes / (time.perf_counter() - start))
    return {"vocab_size": trained.vocab_size, "megabytes": round(megabytes, 3), "train_s": train_s,
            "encode_cold_mb_s": cold, "encode_warm_mb_s": warm, "char_encode_mb_s": char,
            "median_train_s": statistics.median(train_s), "median_cold": statistics.median(cold),
            "median_warm": statistics.median(warm), "median_char": statistics.median(char),
            "chars_per_token": round(len(text) / len(trained.encode(text)), 3)}


def timed_command(args: list[str]) -> dict:
    """Run ``python -m gptcore ...`` from process start to exit; parse its JSON summary."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gptcore", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"args": args, "error": proc.stderr.strip()[-300:]}
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"args": args, "wall_s": wall, "val_loss": summary.get("val_loss"), "steps": summary.get("steps")}


def shipped_model(checkpoint: str, text: str) -> dict:
    """The checkpoint's whole-split validation loss (the corpus ``text`` in its own tokens) and its largest
    file (Spaces want files under 10 MB)."""
    ck = load_checkpoint(checkpoint)
    val = Corpus.from_text(text, tokenizer=ck.tokenizer).val
    loss = split_loss(ck.model, val, ck.config.model.block_size)
    files = checkpoint_files(checkpoint)
    return {"checkpoint": checkpoint, "val_loss": loss, "val_nats_per_char": nats_per_char(loss, val, ck.tokenizer),
            "params": count_parameters(ck.model), "largest_file_mb": max(f.stat().st_size for f in files) / 1e6}


def _medians_and_ratio(reference: list[float], fast: list[float]) -> dict:
    median_reference, median_fast = statistics.median(reference), statistics.median(fast)
    return {"median_reference": median_reference, "median_fast": median_fast, "ratio": median_fast / median_reference}


def _sampling_setup(checkpoint: str, text: str, n_tokens: int, device: torch.device):
    """The checkpoint on ``device``, a full context of ``text`` as the prompt, greedy settings, and how many
    tokens the reference makes (every reference step costs the same, so fewer suffice)."""
    ck = load_checkpoint(checkpoint, device)
    prompt = ck.tokenizer.encode(text[:ck.config.model.block_size], policy="replace")
    return ck, prompt, SamplingParams(temperature=0, max_new_tokens=n_tokens), max(8, n_tokens // 5)


def _sampling_round(ck, prompt: list[int], greedy: SamplingParams, sampled: SamplingParams | None,
                    naive_tokens: int, runs: dict[str, list[float]], first: list[float] | None,
                    device: torch.device | None = None) -> None:
    """One measurement of each path: the cache with the draft (and its first token's seconds), the cache
    alone, both again at ``sampled``'s temperature when given, and the reference that recomputes."""
    rate, seconds = _cached_run(ck.model, prompt, greedy, ck.draft)
    runs["cached"].append(rate)
    if first is not None:
        first.append(seconds)
    runs["cache_only"].append(_cached_run(ck.model, prompt, greedy, None)[0])
    if sampled is not None:
        runs["sampled"].append(_cached_run(ck.model, prompt, sampled, ck.draft)[0])
        runs["sampled_cache_only"].append(_cached_run(ck.model, prompt, sampled, None)[0])
    if device is not None:
        synchronize(device)
    t0 = time.perf_counter()
    naive_generate(ck.model, prompt, naive_tokens)
    runs["naive"].append(naive_tokens / (time.perf_counter() - t0))


def device_sampling_rates(checkpoint: str, text: str, n_tokens: int, repeats: int, device: torch.device) -> dict:
    """Greedy batch-1 generation on ``device`` after a full context: cache with the draft, cache alone, and
    the reference that recomputes the context per token (threads do not apply)."""
    ck, prompt, greedy, naive_tokens = _sampling_setup(checkpoint, text, n_tokens, device)
    runs: dict[str, list[float]] = {"cached": [], "cache_only": [], "naive": []}
    _cached_run(ck.model, prompt, greedy, ck.draft)  # warm-up: kernels and allocator
    for _ in range(repeats):
        _sampling_round(ck, prompt, greedy, None, naive_tokens, runs, None, device)
    out = {"checkpoint": checkpoint, "context": len(prompt), "new_tokens": n_tokens, "has_draft": ck.draft is not None}
    for name, values in runs.items():
        out[f"{name}_chars_per_sec"] = values
        out[f"median_{name}"] = statistics.median(values)
    for name in ("cached", "cache_only"):
        out[f"{name}_ratio"] = out[f"median_{name}"] / out["median_naive"]
    return out


def gpu_section(device: torch.device, corpus: Corpus, checkpoint: str, repeats: int, quick: bool) -> dict:
    """Training tokens/s at nanoGPT's Shakespeare-char "baby GPT" config on ``device``: nanoGPT's approach
    (its model as it runs on a GPU: bfloat16 autocast, flash attention, torch's dropout modules, fused
    AdamW) against ours, eager and compiled, in the same run; and sampling on the device."""
    from ..device import compute_dtype

    config = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=32, bias=False, tie_embeddings=True) if quick \
        else NANOGPT_BABY_MODEL
    batch, steps = (4, 2) if quick else (64, 20)
    dtype = compute_dtype(device, "bfloat16")
    reference_config = dataclasses.replace(config, attention="fused")
    out = {"device": describe(device), "config": dataclasses.asdict(config), "batch_size": batch, "dtype": str(dtype),
           "reference": "nanoGPT's approach: bfloat16 autocast, flash attention (SDPA), nn.Dropout, fused AdamW",
           "fast_path": "gptcore's training step as the trainer runs it on this device"}
    for compiled in ((False,) if quick else (False, True)):
        key = "compiled" if compiled else "eager"
        ref_warmup, fast_warmup = {}, {}
        ref = train_tokens_per_sec(reference_config, corpus, batch, dtype, steps, repeats, reference=True,
                                   device=device, compile=compiled, warmup=ref_warmup)
        fast = train_tokens_per_sec(config, corpus, batch, dtype, steps, repeats, device=device, compile=compiled,
                                    warmup=fast_warmup)
        out[key] = {"reference_tokens_per_sec": ref, "fast_tokens_per_sec": fast, **_medians_and_ratio(ref, fast),
                    # with compile, the warm-up is mostly compilation: the price a run pays once
                    "reference_warmup_s": ref_warmup["seconds"], "fast_warmup_s": fast_warmup["seconds"],
                    "median_reference_ms_per_step": batch * config.block_size / statistics.median(ref) * 1000,
                    "median_fast_ms_per_step": batch * config.block_size / statistics.median(fast) * 1000}
    val_text = corpus.tokenizer.decode(corpus.val.tolist())
    out["sampling"] = device_sampling_rates(checkpoint, val_text, 64 if quick else 500, repeats, device)
    return out


def _share_of_peak(config: ModelConfig, tokens_per_sec: list[float], peak: dict) -> dict:
    """Training's FLOP/s (by ``training_flops_per_token``) and its share of the matmul peak of the same run."""
    per_token = training_flops_per_token(config)
    achieved = statistics.median(tokens_per_sec) * per_token
    return {"flops_per_token": per_token, "achieved_flops": achieved, "share_of_peak": achieved / peak["peak_flops"]}


def run_benchmark(checkpoint: str, data: str | None, repeats: int, quick: bool, runs: list[str],
                  device: torch.device | None = None) -> dict:
    """The CPU figures always; the GPU section too when ``device`` is a GPU (``bench --device auto`` picks one
    when there is one)."""
    corpus = Corpus.load(data)
    model_config = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=32) if quick else WRITEUP_MODEL
    steps = 2 if quick else 5
    reference_config = dataclasses.replace(model_config, attention="fused")
    fast_config = dataclasses.replace(model_config, attention="auto")
    ref = train_tokens_per_sec(reference_config, corpus, 32, torch.float32, steps, repeats, reference=True)
    fast = train_tokens_per_sec(fast_config, corpus, 32, torch.bfloat16, steps, repeats)
    no_dropout = dataclasses.replace(model_config, dropout=0.0)
    ref0 = train_tokens_per_sec(dataclasses.replace(no_dropout, attention="fused"), corpus, 32, torch.float32,
                                steps, repeats, reference=True)
    fast0 = train_tokens_per_sec(no_dropout, corpus, 32, torch.bfloat16, steps, repeats)
    peak = matmul_peak(sizes=(256,) if quick else (1024, 2048, 4096))
    result = {
        "machine": {"threads": torch.get_num_threads(), "torch": torch.__version__,
                    "devices": [describe(resolve_device(d)) for d in available_devices()]},
        "repeats": repeats,
        "train": {"config": model_config.__dict__, "batch_size": 32,
                  "reference": "float32, fused attention (SDPA with dropout_p), nn.Dropout",
                  "fast_path": "bfloat16 autocast, explicit attention, byte dropout",
                  "reference_float32_tokens_per_sec": ref, "fast_bfloat16_tokens_per_sec": fast,
                  **_medians_and_ratio(ref, fast),
                  "without_dropout": {"reference_tokens_per_sec": ref0, "fast_tokens_per_sec": fast0,
                                      **_medians_and_ratio(ref0, fast0), **_share_of_peak(no_dropout, fast0, peak)}},
        "matmul_peak": peak,
    }
    # the prompt comes from the validation split: text the model has not trained on
    val_text = corpus.tokenizer.decode(corpus.val.tolist())
    result["sampling"] = sampling_rates(checkpoint, val_text, 64 if quick else 500, repeats)
    text = read_corpus(resolve_corpus(data))
    result["shipped"] = shipped_model(checkpoint, text)
    result["tokenizer"] = tokenizer_speed(text[:50_000] if quick else text, 300 if quick else 1024, repeats)
    if device is not None and device.type != "cpu":
        result["gpu"] = gpu_section(device, corpus, checkpoint, repeats, quick)
    result["runs"] = []
    for preset in runs:
        # a preset made for a device keeps it; the others run on the CPU, where their figures were set
        pinned = get_preset(preset).train.device != "auto"
        with tempfile.TemporaryDirectory() as tmp:
            result["runs"].append({"preset": preset, **timed_command(
                ["train", "--preset", preset, "--out", str(Path(tmp) / preset), "--quiet"]
                + ([] if pinned else ["--device", "cpu"]) + (["--data", data] if data else []))})
    return result


def _mark(ok: bool) -> str:
    return "**met**" if ok else "not met"


def summarize_runs(runs: list[dict]) -> dict[str, dict]:
    """Per preset (a preset named N times in ``--runs`` runs N times): median wall time and loss, and the
    worst of each, so a goal is met only if every run met it."""
    by_preset: dict[str, list[dict]] = {}
    for run in runs:
        by_preset.setdefault(run["preset"], []).append(run)
    out = {}
    for preset, group in by_preset.items():
        ok = [run for run in group if "error" not in run]
        if len(ok) < len(group):
            out[preset] = {"error": next(run["error"] for run in group if "error" in run)}
            continue
        walls, losses = [run["wall_s"] for run in ok], [run["val_loss"] for run in ok]
        out[preset] = {"n": len(ok), "wall_s": statistics.median(walls), "val_loss": statistics.median(losses),
                       "max_wall_s": max(walls), "max_val_loss": max(losses)}
    return out


def _run_cell(run: dict | None) -> str:
    if run is None:
        return "not run (add it to `--runs`)"
    if "error" in run:
        return f"failed: {run['error']}"
    cell = f"val loss {run['val_loss']:.4f} in {run['wall_s']:.1f} s"
    if run["n"] > 1:
        cell += f" (median of {run['n']} runs; worst {run['max_val_loss']:.4f}, {run['max_wall_s']:.1f} s)"
    return cell


def run_verdict(run: dict | None, max_loss: float, max_wall: float) -> str:
    """A time-to-loss goal's mark: met only if the worst run met both limits; "not run" without runs."""
    if run is None:
        return "not run"
    return _mark("error" not in run and run["max_val_loss"] <= max_loss and run["max_wall_s"] <= max_wall)


def _peak_rows(r: dict) -> list[str]:
    """The share of the machine's matmul peak that training without dropout reaches (results that have it)."""
    if "matmul_peak" not in r:
        return []
    peak, t0 = r["matmul_peak"], r["train"]["without_dropout"]
    sizes = ", ".join(peak["flops_by_size"])
    return [f"| the same, share of this machine's {peak['dtype']} matrix-multiply peak | {peak['peak_flops'] / 1e9:,.0f} "
            f"GFLOP/s (best n x n product, n = {sizes}; {peak['threads']} threads) | {t0['achieved_flops'] / 1e9:,.0f} "
            f"GFLOP/s (6 FLOPs a multiplied parameter a token, plus attention): **{t0['share_of_peak']:.0%}** | "
            f"≥ 75% | {_mark(t0['share_of_peak'] >= 0.75)} |"]


# the CPU goals the table marks: nanoGPT's quick-start loss (its README's CPU recipe) in 10 s, process start to
# exit; sampling against the recompute-per-token reference, greedy and at the app's temperature; the first token
SPEEDRUN_LOSS, SPEEDRUN_SECONDS = 1.886, 10
GREEDY_RATIO, SAMPLED_RATIO, FIRST_TOKEN_MS = 40, 30, 10


def format_table(r: dict) -> str:
    """The Markdown table of docs/speed.md: each speed goal, our figure beside its reference."""
    t, s, m = r["train"], r["sampling"], r["shipped"]
    t0 = t["without_dropout"]
    runs = summarize_runs(r["runs"])
    quick = runs.get("nanogpt-quickstart")
    speedrun, fifteen = runs.get("speedrun"), runs.get("fifteen-minutes")
    rows = [
        "| goal | reference (same run unless said) | gptcore | target | |",
        "|---|---|---|---|---|",
        f"| training tokens/s, write-up config (dropout {t['config']['dropout']}), batch 32x{t['config']['block_size']} | "
        f"{t['median_reference']:,.0f} (nanoGPT's approach: float32, fused attention, torch dropout) | "
        f"{t['median_fast']:,.0f} (bfloat16, explicit attention, byte dropout): **{t['ratio']:.2f}x** | "
        f"2x | {_mark(t['ratio'] >= 2)} |",
        f"| the same without dropout | {t0['median_reference']:,.0f} | {t0['median_fast']:,.0f}: "
        f"**{t0['ratio']:.2f}x** | | |",
        *_peak_rows(r),
        f"| `train --preset speedrun`, process start to exit | nanoGPT's quick-start recipe in our code "
        f"(`nanogpt-quickstart`): {_run_cell(quick)} | {_run_cell(speedrun)} | val ≤ {SPEEDRUN_LOSS} in ≤ "
        f"{SPEEDRUN_SECONDS} s | {run_verdict(speedrun, SPEEDRUN_LOSS, SPEEDRUN_SECONDS)} |",
        f"| `train --preset fifteen-minutes`, process start to exit | the original write-up's headline 1.55 (not re-run) | "
        f"{_run_cell(fifteen)} | val ≤ 1.55 in ≤ 900 s | {run_verdict(fifteen, 1.55, 900)} |",
        f"| shipped model `{m['checkpoint']}` | nanoGPT's 10.7M model on an A100: 1.47 (not re-run) | "
        f"val {m['val_loss']:.4f}, {m['params'] / 1e6:.2f}M params, largest file {m['largest_file_mb']:.1f} MB | "
        f"val ≤ 1.47, files < 10 MB | {_mark(m['val_loss'] <= 1.47 and m['largest_file_mb'] < 10)} |",
        f"| sampling chars/s, batch 1, full context of {s['context']}, greedy | {s['median_naive']:,.0f} (recompute "
        f"the context per token; {s['naive_threads']} thread(s), its faster setting) | {s['median_cached']:,.0f} "
        f"(KV cache and n-gram draft; {s['cached_threads']} thread(s), its faster setting; 1 thread: "
        f"{s['median_one_thread_cached']:,.0f}): **{s['cached_ratio']:.1f}x** | ≥ {GREEDY_RATIO}x | "
        f"{_mark(s['cached_ratio'] >= GREEDY_RATIO)} |",
        f"| the same, KV cache alone | | {s['median_cache_only']:,.0f}: {s['cache_only_ratio']:.1f}x | | |",
        f"| the same, sampling at temperature {s['sampled_temperature']} | | {s['median_sampled']:,.0f} with the draft: "
        f"**{s['sampled_ratio']:.1f}x**; {s['median_sampled_cache_only']:,.0f} without: "
        f"{s['sampled_cache_only_ratio']:.1f}x | ≥ {SAMPLED_RATIO}x | {_mark(s['sampled_ratio'] >= SAMPLED_RATIO)} |",
        f"| time to first token, after the full context | | {s['median_first'] * 1000:.1f} ms | ≤ {FIRST_TOKEN_MS} ms | "
        f"{_mark(s['median_first'] * 1000 <= FIRST_TOKEN_MS)} |",
    ]
    if "tokenizer" in r:
        k = r["tokenizer"]
        rows += [
            f"| BPE: learn a {k['vocab_size']:,}-token vocabulary from the corpus ({k['megabytes']:.1f} MB) | | "
            f"{k['median_train_s']:.2f} s | ≤ 10 s | {_mark(k['median_train_s'] <= 10)} |",
            f"| BPE: encode the corpus, one core, a tokenizer just loaded (cache empty) | {k['median_char']:.1f} MB/s "
            f"(the character tokenizer) | **{k['median_cold']:.2f} MB/s** ({k['median_warm']:.1f} MB/s again, "
            f"chunks cached); {k['chars_per_token']:.2f} characters per token | ≥ 5 MB/s | "
            f"{_mark(k['median_cold'] >= 5)} |",
        ]
    if "gpu" in r:
        rows += gpu_rows(r["gpu"], runs)
    return "\n".join(rows)


def gpu_rows(g: dict, runs: dict[str, dict]) -> list[str]:
    """The GPU section's rows: training speed against nanoGPT's approach, the GPU preset, sampling."""
    c, s = g["config"], g["sampling"]
    shape = f"{c['n_layer']}x{c['n_head']}x{c['n_embd']}, batch {g['batch_size']}x{c['block_size']}"
    rows = []
    for key in ("eager", "compiled"):
        if key in g:
            t = g[key]
            first = f"; first 3 steps with compilation {t['fast_warmup_s']:.1f} s" if key == "compiled" else ""
            rows.append(f"| {g['device']}: training step, nanoGPT's baby GPT ({shape}), {key} | "
                        f"{t['median_reference_ms_per_step']:.1f} ms ({t['median_reference']:,.0f} tokens/s, "
                        f"nanoGPT's approach) | {t['median_fast_ms_per_step']:.1f} ms ({t['median_fast']:,.0f} tokens/s"
                        f"{first}): **{t['ratio']:.2f}x** | ≥ 1x | {_mark(t['ratio'] >= 1)} |")
    gpu_run = runs.get("gpu-speedrun")
    rows.append(f"| `train --preset gpu-speedrun` on {g['device']}, process start to exit | nanoGPT's best checkpoint: "
                f"1.4641 after about 45 s (quoted) | {_run_cell(gpu_run)} | val ≤ 1.46 in ≤ 20 s | "
                f"{run_verdict(gpu_run, 1.46, 20)} |")
    rows.append(f"| {g['device']}: sampling chars/s, batch 1, context {s['context']}, greedy | {s['median_naive']:,.0f} "
                f"(recompute per token) | {s['median_cached']:,.0f} with the cache and draft "
                f"({s['cached_ratio']:.1f}x); {s['median_cache_only']:,.0f} cache alone ({s['cache_only_ratio']:.1f}x) | | |")
    return rows


@dataclass(frozen=True)
class BenchOptions:
    """What ``gptcore bench`` asks for, as typed values (the CLI builds it from its arguments)."""

    checkpoint: str = "checkpoints/shakespeare-char"
    data: str | None = None
    repeats: int = 5
    out: str = "bench/results.json"
    quick: bool = False
    runs: tuple[str, ...] = ()
    device: str = "auto"

    def check(self) -> torch.device:
        """Everything that can be checked before the (long) benchmark starts: the repeats, every preset named
        in ``runs``, the checkpoint, the output path and the device."""
        if self.repeats < 1:
            raise GptcoreError(f"--repeats must be at least 1, got {self.repeats}")
        for preset in self.runs:
            get_preset(preset)
        load_checkpoint(self.checkpoint)
        check_output_file(self.out)
        return resolve_device(self.device)


def run_bench(options: BenchOptions) -> int:
    """``gptcore bench``: check, measure, write the JSON and print the table."""
    device = options.check()
    result = run_benchmark(options.checkpoint, options.data, options.repeats, options.quick, list(options.runs), device)
    write_json(Path(options.out), result)
    print(format_table(result))
    print(f"\nwritten to {options.out}")
    return 0
