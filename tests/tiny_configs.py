"""The tiny model and training budget every test that trains starts from: one factory, overridden per test."""

from __future__ import annotations

from gptcore.config import ModelConfig, TrainConfig

TINY_MODEL = dict(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.0)
TINY_TRAIN = dict(batch_size=8, max_iters=20, lr=3e-3, warmup_iters=3, eval_interval=5, eval_windows=8,
                  sample_interval=0, dtype="float32", threads=1)


def tiny_model(**overrides) -> ModelConfig:
    """A model small enough to train in a second on one core (not validated: tests pass bad values too)."""
    return ModelConfig(**{**TINY_MODEL, **overrides})


def tiny_train(**overrides) -> TrainConfig:
    """A budget of a few steps at float32 on one thread, evaluating often on a few windows (not validated)."""
    return TrainConfig(**{**TINY_TRAIN, **overrides})
