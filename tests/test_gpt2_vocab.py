"""GPT-2's vocabulary files read as our BPE tokenizer, and a nanoGPT GPT-2-style checkpoint imported with them.

There are no GPT-2 files on this machine (no network), so the tests write files in GPT-2's exact format
(its byte-to-character table, encoder.json, vocab.bpe with a version line) from a BPE we train, with the
byte ids shuffled so nothing relies on our own numbering."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from gptcore.cli import main
from gptcore.config import ModelConfig
from gptcore.errors import CheckpointError
from gptcore.interop.gpt2 import bytes_to_unicode, read_gpt2_vocab
from gptcore.interop.nanogpt import import_nanogpt
from gptcore.models import GPT
from gptcore.tokenizers import BPETokenizer, load_tokenizer
from test_nanogpt import nanogpt_forward

TEXT = "the king and the queen walked to the castle, where the king's daughter waited.\n"


def write_gpt2_files(directory: Path, tok: BPETokenizer, seed: int = 0) -> list[int]:
    """``tok`` in GPT-2's file format, its bytes numbered by a shuffled order; returns that order."""
    table = bytes_to_unicode()
    order = list(range(256))
    random.Random(seed).shuffle(order)  # order[b] is byte b's id
    string = lambda token: "".join(table[b] for b in tok.token_bytes(token))  # noqa: E731
    encoder = {table[b]: order[b] for b in range(256)}
    lines = ["#version: 0.2"]
    for rank, (a, b) in enumerate(tok.merges):
        encoder[string(a) + string(b)] = 256 + rank
        lines.append(f"{string(a)} {string(b)}")
    encoder["<|endoftext|>"] = 256 + len(tok.merges)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    (directory / "vocab.bpe").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return order


@pytest.fixture(scope="module")
def ours(corpus_text) -> BPETokenizer:
    return BPETokenizer.train(corpus_text[:200_000], 300)


def test_gpt2_files_read_as_the_same_tokenizer_with_gpt2s_ids(ours, tmp_path, corpus_text):
    order = write_gpt2_files(tmp_path / "gpt2", ours)
    loaded = read_gpt2_vocab(tmp_path / "gpt2", vocab_size=320)
    assert loaded.vocab_size == 320 and loaded.piece(300) == "<|endoftext|>" and loaded.piece(319) == ""
    text = "".join(c for c in corpus_text[-20_000:] if not c.isdigit()) + " naïve 😀"
    expected = [order[i] if i < 256 else i for i in ours.encode(text)]
    assert loaded.encode(text) == expected
    assert loaded.decode(loaded.encode(text)) == text
    loaded.save(tmp_path / "tok.json")  # the byte order, size and specials survive a checkpoint
    again = load_tokenizer(tmp_path / "tok.json")
    assert again.encode(text) == expected and again.vocab_size == 320 and again.piece(300) == "<|endoftext|>"


def test_bad_gpt2_files_are_clear_errors(ours, tmp_path):
    with pytest.raises(CheckpointError, match="needs encoder.json"):
        read_gpt2_vocab(tmp_path / "nothing")
    write_gpt2_files(tmp_path / "g", ours)
    lines = (tmp_path / "g" / "vocab.bpe").read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]  # merges out of order: ids no longer follow GPT-2's layout
    (tmp_path / "g" / "vocab.bpe").write_text("\n".join(lines))
    with pytest.raises(CheckpointError, match="not GPT-2's layout"):
        read_gpt2_vocab(tmp_path / "g")
    (tmp_path / "g" / "encoder.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="should map token strings"):
        read_gpt2_vocab(tmp_path / "g")


def nanogpt_state(model: GPT) -> dict:
    """gptcore weights under nanoGPT's parameter names."""
    renames = [("tok_emb.", "transformer.wte."), ("pos_emb.", "transformer.wpe."), ("ln_f.", "transformer.ln_f."),
               ("blocks.", "transformer.h."), (".ln1.", ".ln_1."), (".ln2.", ".ln_2."), (".attn.qkv.", ".attn.c_attn."),
               (".attn.proj.", ".attn.c_proj."), (".mlp.fc.", ".mlp.c_fc."), (".mlp.proj.", ".mlp.c_proj.")]
    out = {}
    for name, tensor in model.state_dict().items():
        for old, new in renames:
            name = name.replace(old, new)
        out[name] = tensor.clone()
    return out


def test_a_gpt2_style_nanogpt_checkpoint_imports_and_samples(ours, tmp_path, capsys):
    write_gpt2_files(tmp_path / "gpt2", ours)
    args = {"n_layer": 2, "n_head": 2, "n_embd": 16, "block_size": 32, "bias": False, "vocab_size": 320, "dropout": 0.0}
    torch.manual_seed(0)
    model = GPT(ModelConfig(**args, tie_embeddings=True))
    torch.save({"model": nanogpt_state(model), "model_args": args, "iter_num": 5, "best_val_loss": torch.tensor(3.0)},
               tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError, match="--gpt2-vocab"):
        import_nanogpt(tmp_path / "ckpt.pt", tmp_path / "nope")
    assert main(["import-nanogpt", str(tmp_path / "ckpt.pt"), "--gpt2-vocab", str(tmp_path / "gpt2"),
                 "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    from gptcore.checkpoint import load_checkpoint

    ck = load_checkpoint(tmp_path / "out")
    idx = torch.tensor([ck.tokenizer.encode(TEXT)[:32]])
    with torch.no_grad():
        expected = nanogpt_forward(nanogpt_state(model), args, idx)
        assert (ck.model(idx)[0] - expected).abs().max().item() < 1e-5
    assert main(["sample", "--checkpoint", str(tmp_path / "out"), "--prompt", "the king", "--max-new-tokens", "20",
                 "--seed", "1"]) == 0
    assert capsys.readouterr().out.startswith("the king")
