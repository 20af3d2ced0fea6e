"""Named run configurations. Each preset's docstring-like note says what it is for."""

from __future__ import annotations

import dataclasses

from .config import ModelConfig, RunConfig, TrainConfig
from .errors import ConfigError

# The original write-up's model: n_embd 256, n_head 4, n_layer 4, block 128, dropout 0.2 (3.2M parameters).
WRITEUP_MODEL = ModelConfig(n_layer=4, n_head=4, n_embd=256, block_size=128, dropout=0.2)
# nanoGPT's Shakespeare-char "baby GPT": 6 layers, 6 heads, width 384, block 256, dropout 0.2, no biases,
# the token embedding tied to the output head: 10.75M parameters (nanoGPT reports 10.65M, leaving out the
# position embeddings)
NANOGPT_BABY_MODEL = ModelConfig(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, bias=False,
                                 tie_embeddings=True)


def _budgeted_muon(time_budget: float, lr: float, muon_lr: float, **settings) -> TrainConfig:
    """The time-budgeted recipe of the speed presets: Muon for the blocks' matrices, AdamW at ``lr`` for the
    rest, a constant rate then a linear warm-down that ends with the budget (steps are not the limit), no
    samples while training. ``settings`` are the other TrainConfig fields a preset sets."""
    return TrainConfig(max_iters=100_000, time_budget=time_budget, lr=lr, optimizer="muon", muon_lr=muon_lr,
                       schedule="linear", sample_interval=0, **settings)


PRESETS: dict[str, tuple[str, RunConfig]] = {
    "bigram": (
        "the bigram baseline: a 65x65 table of next-character logits",
        RunConfig(
            ModelConfig(arch="bigram", block_size=128, dropout=0.0),
            TrainConfig(batch_size=32, max_iters=3000, lr=1e-2, warmup_iters=0, weight_decay=0.0,
                        dtype="float32", eval_interval=500, sample_interval=0),
        ),
    ),
    "seed": (
        "the original write-up's model (4 layers, 4 heads, width 256, block 128, dropout 0.2), 5000 steps of 32x128",
        RunConfig(WRITEUP_MODEL, TrainConfig(batch_size=32, max_iters=5000, lr=1e-3, warmup_iters=200)),
    ),
    "tiny": (
        "trains in seconds: for tests and demos",
        RunConfig(
            ModelConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, dropout=0.0),
            TrainConfig(batch_size=16, max_iters=60, lr=3e-3, warmup_iters=5, eval_interval=30,
                        eval_windows=20, sample_interval=30, sample_chars=40, dtype="float32"),
        ),
    ),
    "nanogpt-quickstart": (
        "nanoGPT's CPU quick-start recipe (0.8M params, 4x128, block 64, batch 12, 2000 steps, lr 1e-3), "
        "float32 and fused attention as nanoGPT runs on a CPU: the reference for time-to-loss",
        RunConfig(
            ModelConfig(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, attention="fused"),
            TrainConfig(batch_size=12, max_iters=2000, lr=1e-3, warmup_iters=100, dtype="float32",
                        eval_interval=250, eval_windows=200, sample_interval=0),
        ),
    ),
    "speedrun": (
        "aims at a validation loss under nanoGPT's quick-start 1.886 in under 10 s on 2 CPU cores, process "
        "start to exit (met on a host with AMX: docs/speed.md): 2 layers of width 128, a context of 32, Muon, "
        "QK-norm, a 7 s budget that paces a linear warm-down",
        RunConfig(
            ModelConfig(n_layer=2, n_head=4, n_embd=128, block_size=32, dropout=0.0, qk_norm=True),
            _budgeted_muon(7.0, lr=1e-2, muon_lr=0.05, batch_size=64, warmup_iters=30, warmdown_frac=0.6,
                          eval_interval=100_000),
        ),
    ),
    "fifteen-minutes": (
        "the original write-up's model to its headline loss (1.55) within 15 minutes on 2 CPU cores: "
        "Muon, QK-norm, dropout 0.1, an 880 s budget that paces a linear warm-down",
        RunConfig(
            dataclasses.replace(WRITEUP_MODEL, dropout=0.1, qk_norm=True),
            _budgeted_muon(880.0, lr=1e-2, muon_lr=0.05, batch_size=32, warmup_iters=100, warmdown_frac=0.5,
                          eval_interval=500),
        ),
    ),
    "rope": (
        "the original write-up's model and recipe (as `seed`) with rotary position embeddings instead of a learned "
        "table of absolute positions",
        RunConfig(dataclasses.replace(WRITEUP_MODEL, pos_emb="rope"),
                  TrainConfig(batch_size=32, max_iters=5000, lr=1e-3, warmup_iters=200)),
    ),
    "bpe": (
        "the original write-up's model and recipe (as `seed`) on byte-level BPE tokens: a vocabulary of 1,024 learned "
        "from the training split, so the context of 128 tokens covers about 300 characters",
        RunConfig(WRITEUP_MODEL, TrainConfig(batch_size=32, max_iters=5000, lr=1e-3, warmup_iters=200,
                                             tokenizer="bpe", bpe_vocab_size=1024)),
    ),
    "nanogpt-baby": (
        "nanoGPT's Shakespeare-char recipe in our code (its config/train_shakespeare_char.py): the 10.65M "
        "baby GPT, batch 64x256, AdamW 1e-3 with a cosine decay to 1e-4 over 5000 steps; a GPU job",
        RunConfig(
            NANOGPT_BABY_MODEL,
            TrainConfig(batch_size=64, max_iters=5000, lr=1e-3, min_lr_ratio=0.1, warmup_iters=100, beta2=0.99,
                        weight_decay=0.1, grad_clip=1.0, eval_interval=250, eval_windows=200, sample_interval=0),
        ),
    ),
    "gpu-speedrun": (
        "our GPU preset: the baby GPT's shape with QK-norm and Muon, dropout 0.1, a 14 s budget that paces a "
        "linear warm-down; aims at a whole-split loss <= 1.46 in under 20 s from process start on one "
        "H100-class GPU (not yet measured on one: docs/speed.md#on-a-gpu)",
        RunConfig(
            dataclasses.replace(NANOGPT_BABY_MODEL, dropout=0.1, qk_norm=True),
            _budgeted_muon(14.0, lr=3e-3, muon_lr=0.02, batch_size=64, warmup_iters=50, warmdown_frac=0.5,
                          eval_interval=200, eval_windows=50, device="cuda"),
        ),
    ),
    "shakespeare-char": (
        "the shipped model: the original write-up's architecture with a context of 256 and QK-norm, dropout 0.2, "
        "Muon at lower rates than the speedrun's, batch 16x256, a 70-minute budget on 2 CPU cores, float16 weights",
        RunConfig(
            dataclasses.replace(WRITEUP_MODEL, block_size=256, qk_norm=True),
            _budgeted_muon(4200.0, lr=3e-3, muon_lr=0.02, batch_size=16, warmup_iters=100, warmdown_frac=0.5,
                          eval_interval=500, save_dtype="float16"),
        ),
    ),
}


def get_preset(name: str) -> RunConfig:
    """A fresh copy of a preset, so callers may change it freely."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name][1].copy()
