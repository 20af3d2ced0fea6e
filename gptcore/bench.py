"""Speed benchmark: every speed is a median of repeats and a ratio to a reference measured in the same run.

- training tokens/s at the write-up's config: the reference is the nanoGPT approach on a CPU (float32,
  ``scaled_dot_product_attention`` with its own dropout, ``nn.Dropout``); the fast path is ours
  (bfloat16 autocast, explicit attention, byte dropout);
- sampling characters/s at batch 1 with a full context: the reference recomputes the whole context for
  every token (as nanoGPT's ``generate`` does), ours uses the key-value cache; and time to first token;
- optionally, whole training commands timed from process start to exit (``--runs``), for time-to-loss.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dataclasses

import torch
import torch.nn as nn

from .checkpoint import load_checkpoint, write_json
from .config import ModelConfig, TrainConfig
from .data import BatchSampler, Corpus
from .evaluate import split_loss
from .models import build_model, count_parameters
from .models.dropout import ByteDropout
from .presets import WRITEUP_MODEL
from .sample import SamplingParams, stream_tokens
from .train import make_optimizer, train_step


def nanogpt_reference(model: nn.Module) -> nn.Module:
    """The same model with torch's own dropout (one Bernoulli draw per element) in place of byte dropout."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, ByteDropout):
                setattr(module, name, nn.Dropout(model.config.dropout))
    return model


def train_tokens_per_sec(model_config: ModelConfig, corpus: Corpus, batch_size: int, dtype: torch.dtype,
                         steps: int, repeats: int, reference: bool = False) -> list[float]:
    """Tokens/s of full training steps (forward, backward, clip, AdamW), one figure per repeat."""
    torch.manual_seed(0)
    model = build_model(model_config).train()
    if reference:
        model = nanogpt_reference(model)
    optimizer = make_optimizer(model, TrainConfig())
    sampler = BatchSampler(corpus.train, model_config.block_size, batch_size, seed=0)

    def step():
        train_step(model, optimizer, *sampler.next_batch(), dtype, grad_clip=1.0)

    for _ in range(2):  # warm-up: allocator and kernels
        step()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * batch_size * model_config.block_size / (time.perf_counter() - t0))
    return rates


@torch.no_grad()
def naive_generate(model, prompt_ids: list[int], n: int) -> list[int]:
    """The reference: crop to the last block_size tokens and run the whole context for every token (greedy)."""
    idx = torch.tensor([prompt_ids])
    out = []
    for _ in range(n):
        logits, _ = model(idx[:, -model.config.block_size:])
        token = logits[:, -1].argmax(-1, keepdim=True)
        idx = torch.cat([idx, token], dim=1)
        out.append(int(token))
    return out


def sampling_rates(checkpoint: str, n_tokens: int, repeats: int) -> dict:
    ck = load_checkpoint(checkpoint)
    model, block = ck.model, ck.config.model.block_size
    prompt = ck.tokenizer.encode((" the king is dead, long live the king\n" * 20)[:block], policy="replace")
    params = SamplingParams(temperature=0, max_new_tokens=n_tokens)
    cached, naive, first = [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        stream = stream_tokens(model, prompt, params, use_cache=True)
        next(stream)
        first.append(time.perf_counter() - t0)
        for _ in stream:
            pass
        cached.append(n_tokens / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        naive_generate(model, prompt, n_tokens)
        naive.append(n_tokens / (time.perf_counter() - t0))
    return {"checkpoint": checkpoint, "context": block, "new_tokens": n_tokens, "cached_chars_per_sec": cached,
            "naive_chars_per_sec": naive, "time_to_first_token_s": first}


def timed_command(args: list[str]) -> dict:
    """Run ``python -m gptcore ...`` from process start to exit; parse its JSON summary."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "gptcore", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return {"args": args, "error": proc.stderr.strip()[-300:]}
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"args": args, "wall_s": wall, "val_loss": summary.get("val_loss"), "steps": summary.get("steps")}


def shipped_model(checkpoint: str, corpus: Corpus) -> dict:
    """The checkpoint's whole-split validation loss and its largest file (Spaces want files under 10 MB)."""
    ck = load_checkpoint(checkpoint)
    files = [f for f in Path(checkpoint).iterdir() if f.is_file()]
    return {"checkpoint": checkpoint, "val_loss": split_loss(ck.model, corpus.val, ck.config.model.block_size),
            "params": count_parameters(ck.model), "largest_file_mb": max(f.stat().st_size for f in files) / 1e6}


def run_benchmark(checkpoint: str, data: str | None, repeats: int, quick: bool, runs: list[str]) -> dict:
    corpus = Corpus.load(data)
    model_config = ModelConfig(n_layer=1, n_head=2, n_embd=32, block_size=32) if quick else WRITEUP_MODEL
    steps = 2 if quick else 5
    reference_config = dataclasses.replace(model_config, attention="fused")
    fast_config = dataclasses.replace(model_config, attention="auto")
    ref = train_tokens_per_sec(reference_config, corpus, 32, torch.float32, steps, repeats, reference=True)
    fast = train_tokens_per_sec(fast_config, corpus, 32, torch.bfloat16, steps, repeats)
    result = {
        "machine": {"threads": torch.get_num_threads(), "torch": torch.__version__},
        "repeats": repeats,
        "train": {"config": model_config.__dict__, "batch_size": 32,
                  "reference": "float32, fused attention (SDPA with dropout_p), nn.Dropout",
                  "fast_path": "bfloat16 autocast, explicit attention, byte dropout",
                  "reference_float32_tokens_per_sec": ref, "fast_bfloat16_tokens_per_sec": fast,
                  "median_reference": statistics.median(ref), "median_fast": statistics.median(fast),
                  "ratio": statistics.median(fast) / statistics.median(ref)},
    }
    s = sampling_rates(checkpoint, 64 if quick else 500, repeats)
    s.update(median_cached=statistics.median(s["cached_chars_per_sec"]),
             median_naive=statistics.median(s["naive_chars_per_sec"]),
             median_first_token_s=statistics.median(s["time_to_first_token_s"]))
    s["ratio"] = s["median_cached"] / s["median_naive"]
    result["sampling"] = s
    result["shipped"] = shipped_model(checkpoint, corpus)
    result["runs"] = []
    for preset in runs:
        with tempfile.TemporaryDirectory() as tmp:
            result["runs"].append({"preset": preset, **timed_command(
                ["train", "--preset", preset, "--out", str(Path(tmp) / preset), "--quiet"]
                + (["--data", data] if data else []))})
    return result


def _mark(ok: bool) -> str:
    return "**met**" if ok else "not met"


def _run_cell(run: dict | None) -> str:
    if run is None:
        return "not run (add it to `--runs`)"
    if "error" in run:
        return f"failed: {run['error']}"
    return f"val loss {run['val_loss']:.4f} in {run['wall_s']:.1f} s"


def _run_ok(run: dict | None, max_loss: float, max_wall: float) -> bool:
    return run is not None and "error" not in run and run["val_loss"] <= max_loss and run["wall_s"] <= max_wall


def format_table(r: dict) -> str:
    """The Markdown table README shows: each goal of the speed issue, our figure beside its reference."""
    t, s, m = r["train"], r["sampling"], r["shipped"]
    runs = {run["preset"]: run for run in r["runs"]}
    quick = runs.get("nanogpt-quickstart")
    speedrun, fifteen = runs.get("speedrun"), runs.get("fifteen-minutes")
    rows = [
        "| goal | reference (same run unless said) | gptcore | target | |",
        "|---|---|---|---|---|",
        f"| training tokens/s, write-up config, batch 32x{t['config']['block_size']} | "
        f"{t['median_reference']:,.0f} (nanoGPT's approach: float32, fused attention, torch dropout) | "
        f"{t['median_fast']:,.0f} (bfloat16, explicit attention, byte dropout): **{t['ratio']:.2f}x** | "
        f"2x | {_mark(t['ratio'] >= 2)} |",
        f"| `train --preset speedrun`, process start to exit | nanoGPT's quick-start recipe in our code "
        f"(`nanogpt-quickstart`): {_run_cell(quick)} | {_run_cell(speedrun)} | val ≤ 1.886 in ≤ 20 s | "
        f"{_mark(_run_ok(speedrun, 1.886, 20))} |",
        f"| `train --preset fifteen-minutes`, process start to exit | the write-up's headline 1.55 (not re-run) | "
        f"{_run_cell(fifteen)} | val ≤ 1.55 in ≤ 900 s | {_mark(_run_ok(fifteen, 1.55, 900))} |",
        f"| shipped model `{m['checkpoint']}` | nanoGPT's 10.7M model on an A100: 1.47 (not re-run) | "
        f"val {m['val_loss']:.4f}, {m['params'] / 1e6:.2f}M params, largest file {m['largest_file_mb']:.1f} MB | "
        f"val ≤ 1.47, files < 10 MB | {_mark(m['val_loss'] <= 1.47 and m['largest_file_mb'] < 10)} |",
        f"| sampling chars/s, batch 1, full context of {s['context']} | {s['median_naive']:,.0f} (recompute the "
        f"context per token) | {s['median_cached']:,.0f} (KV cache): **{s['ratio']:.1f}x** | ≥ 500 and ≥ 10x | "
        f"{_mark(s['median_cached'] >= 500 and s['ratio'] >= 10)} |",
        f"| time to first token | | {s['median_first_token_s'] * 1000:.1f} ms | | |",
    ]
    return "\n".join(rows)


def run_from_args(args) -> int:
    result = run_benchmark(args.checkpoint, args.data, args.repeats, args.quick, args.runs or [])
    write_json(Path(args.out), result)
    print(format_table(result))
    print(f"\nwritten to {args.out}")
    return 0
