"""Importing a nanoGPT checkpoint: its ``ckpt.pt`` (and ``meta.pkl`` vocabulary, or GPT-2's) as a gptcore checkpoint.

nanoGPT's model is gptcore's with learned positions, pre-norm blocks, GELU, a tied output head, and
biases switched by ``bias``: the import is a renaming of tensors, checked against nanoGPT's own logits in
the tests. Nothing in the files is executed: ``ckpt.pt`` loads with ``weights_only=True``, and
``meta.pkl`` (a pickle, which can carry code) is read by an unpickler that builds only dicts, lists,
tuples, strings and numbers and refuses anything else.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
from pathlib import Path

import torch

from ..bounded import check_plain, cut, short_repr
from ..checkpoint import check_finite, load_checkpoint, save_checkpoint
from ..config import ModelConfig, RunConfig, TrainConfig
from ..errors import CheckpointError, ConfigError
from ..memory import check_fits
from ..models import build_model
from ..storage import safe_torch_load
from ..tokenizers import CharTokenizer
from .gpt2 import read_gpt2_vocab

PREFIX = "_orig_mod."  # what torch.compile puts before every parameter name
GPT2_VOCAB_SIZES = (50257, 50304)  # GPT-2's vocabulary, and nanoGPT's padded copy of it
META_MAX_BYTES = 10 * 2**20
META_MAX_DEPTH, META_MAX_VALUES = 8, 1_000_000  # nanoGPT's meta.pkl: a dict of two tables and a size
MAX_MODEL_ARGS_VALUES = 1_000  # nanoGPT's model_args: eight numbers and flags


class _PlainUnpickler(pickle.Unpickler):
    """Builds plain data only: any class or function the pickle names (the way pickles run code) is refused."""

    def find_class(self, module: str, name: str):
        raise CheckpointError(f"meta.pkl names {module}.{name}: only plain data (dicts, lists, strings, numbers) "
                              f"is accepted, nothing that could run code")

    def persistent_load(self, pid):
        raise CheckpointError("meta.pkl refers to outside objects: only plain data is accepted")


def read_meta(path: str | os.PathLike) -> CharTokenizer:
    """nanoGPT's character vocabulary (``itos``: id -> character) from its meta.pkl, without running code."""
    path = Path(path)
    try:
        payload = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e.strerror}") from None
    if len(payload) > META_MAX_BYTES:
        raise CheckpointError(f"{path} is {len(payload):,} bytes: too large for a vocabulary")
    try:
        meta = _PlainUnpickler(io.BytesIO(payload)).load()
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any malformed pickle is a bad file, never a crash
        raise CheckpointError(f"{path} is not a readable pickle ({type(e).__name__}: {cut(str(e), 160)})") from None
    # building shared references is cheap for the unpickler; walking them is what a crafted file makes
    # endless, so the walk counts every value it reaches and stops past a limit
    check_plain(meta, str(path), max_depth=META_MAX_DEPTH, max_nodes=META_MAX_VALUES)
    itos = meta.get("itos") if isinstance(meta, dict) else None
    if not isinstance(itos, dict) or set(itos) != set(range(len(itos))):
        raise CheckpointError(f"{path} has no 'itos' table of ids 0..n-1 (nanoGPT's character vocabulary)")
    try:
        return CharTokenizer([itos[i] for i in range(len(itos))])
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None


def model_config(model_args: dict) -> ModelConfig:
    """gptcore's config for nanoGPT's ``model_args``, refused if it could not fit in memory (checked on the
    sizes alone, before anything is allocated)."""
    check_plain(model_args, "model_args", max_depth=4, max_nodes=MAX_MODEL_ARGS_VALUES)
    try:
        config = ModelConfig(vocab_size=int(model_args["vocab_size"]), block_size=int(model_args["block_size"]),
                             n_layer=int(model_args["n_layer"]), n_head=int(model_args["n_head"]),
                             n_embd=int(model_args["n_embd"]), dropout=float(model_args.get("dropout", 0.0)),
                             bias=bool(model_args.get("bias", True)), tie_embeddings=True, attention="auto")
        config.validate()
    except (KeyError, TypeError, ValueError, OverflowError, ConfigError) as e:
        raise CheckpointError(f"model_args {short_repr(model_args, 200)} do not describe a nanoGPT model "
                              f"({cut(str(e), 200)})") from None
    try:
        check_fits(config, training=False)
    except ConfigError as e:
        raise CheckpointError(f"model_args describe a model too large to load: {e}") from None
    return config


def convert_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """nanoGPT's parameter names as gptcore's (``_orig_mod.`` prefixes dropped; attention masks skipped)."""
    renames = {"transformer.wte.": "tok_emb.", "transformer.wpe.": "pos_emb.", "transformer.ln_f.": "ln_f.",
               "transformer.h.": "blocks.", ".ln_1.": ".ln1.", ".ln_2.": ".ln2.", ".attn.c_attn.": ".attn.qkv.",
               ".attn.c_proj.": ".attn.proj.", ".mlp.c_fc.": ".mlp.fc.", ".mlp.c_proj.": ".mlp.proj."}
    out = {}
    for name, tensor in state.items():
        name = name.removeprefix(PREFIX)
        if name.endswith(".attn.bias"):  # old nanoGPT versions keep the causal mask as a buffer
            continue
        for old, new in renames.items():
            name = name.replace(old, new)
        out[name] = tensor.float()
    return out


def import_nanogpt(ckpt_path: str | os.PathLike, out_dir: str | os.PathLike,
                   meta_path: str | os.PathLike | None = None, gpt2_vocab: str | os.PathLike | None = None) -> Path:
    """Write a gptcore checkpoint for nanoGPT's ``ckpt_path`` into ``out_dir`` and return it.

    The vocabulary: ``meta_path`` (default: a meta.pkl beside the checkpoint) for a character model, or
    ``gpt2_vocab``, a directory with GPT-2's encoder.json and vocab.bpe, for nanoGPT's GPT-2 runs."""
    ckpt_path, out_dir = Path(ckpt_path), Path(out_dir)
    raw = safe_torch_load(ckpt_path)
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict) or not isinstance(raw.get("model_args"), dict):
        raise CheckpointError(f"{ckpt_path} is not a nanoGPT checkpoint: it needs 'model' and 'model_args'")
    config = model_config(raw["model_args"])
    meta_path = Path(meta_path) if meta_path else ckpt_path.with_name("meta.pkl")
    if gpt2_vocab is not None:
        tokenizer = read_gpt2_vocab(gpt2_vocab, config.vocab_size)
        source_vocab = Path(gpt2_vocab)
    elif meta_path.is_file():
        tokenizer, source_vocab = read_meta(meta_path), meta_path
    elif config.vocab_size in GPT2_VOCAB_SIZES:
        raise CheckpointError(
            f"{ckpt_path} is a GPT-2 BPE model ({config.vocab_size} tokens) and has no meta.pkl: it needs GPT-2's "
            f"vocabulary, encoder.json and vocab.bpe in a directory (--gpt2-vocab DIR); a character model needs "
            f"the meta.pkl that nanoGPT's prepare.py wrote (--meta PATH)")
    else:
        raise CheckpointError(f"no vocabulary: {meta_path} not found; give nanoGPT's meta.pkl (--meta PATH) for a "
                              f"character model, or GPT-2's encoder.json and vocab.bpe (--gpt2-vocab DIR)")
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(f"{source_vocab} has {tokenizer.vocab_size} tokens but the model has "
                              f"{config.vocab_size} token ids: they are not the same vocabulary")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in raw["model"].items()):
        raise CheckpointError(f"{ckpt_path}: 'model' should map parameter names to tensors")
    state = convert_state_dict(raw["model"])
    check_finite(state, ckpt_path)
    if not torch.equal(state.get("lm_head.weight", torch.empty(0)), state.get("tok_emb.weight", torch.empty(1))):
        config = dataclasses.replace(config, tie_embeddings=False)  # a fork that does not tie them
    model = build_model(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{ckpt_path}: its weights do not fit the model its model_args describe "
                              f"({str(e).splitlines()[0]})") from None
    source = {"file": ckpt_path.name, "sha256": hashlib.sha256(ckpt_path.read_bytes()).hexdigest(),
              "iter_num": _plain_number(raw.get("iter_num")), "best_val_loss": _plain_number(raw.get("best_val_loss")),
              "model_args": {k: _plain_number(v) for k, v in raw["model_args"].items()}}
    metrics = {"val_loss": None, "status": "imported", "imported_from": {"nanogpt": source},
               "command": f"gptcore import-nanogpt {ckpt_path.name}",
               "note": "nanoGPT's best_val_loss is an estimate on random batches; `gptcore eval` gives the "
                       "whole-split loss"}
    save_checkpoint(out_dir, model, RunConfig(config, TrainConfig(save_dtype="float32")), tokenizer, metrics)
    load_checkpoint(out_dir)  # what was written loads back
    return out_dir


def _plain_number(value):
    """A JSON-ready copy of a value of nanoGPT's checkpoint (its best_val_loss is a 0-d tensor)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value if isinstance(value, (int, float, str, bool, type(None))) else short_repr(value, 200)
