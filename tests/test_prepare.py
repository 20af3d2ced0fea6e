"""gptcore prepare and token shards: the text survives, the split is deterministic, an interrupted prepare
continues, a damaged shard is caught, and training reads shards exactly as it reads a tensor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gptcore import prepare as prepare_module
from gptcore.cli import main
from gptcore.data import BatchSampler, Corpus
from gptcore.errors import CheckpointError, GptcoreError
from gptcore.evaluate import nats_per_char, split_loss, unigram_loss
from gptcore.models import GPT
from gptcore.prepare import VAL_EVERY, PrepareConfig, input_files, piece_size, prepare, text_pieces
from gptcore.shards import open_splits
from tests.conftest import small_config


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory, corpus_text) -> Path:
    root = tmp_path_factory.mktemp("texts")
    (root / "sub").mkdir()
    (root / "a.txt").write_text(corpus_text[:150_000], encoding="utf-8")
    (root / "sub" / "b.txt").write_text(corpus_text[150_000:300_000] + "naïve 😀 end", encoding="utf-8")
    return root


def decoded(split, tokenizer) -> str:
    return tokenizer.decode(split.read(0, len(split)).tolist())


def test_the_text_survives_and_the_split_is_every_twentieth_piece(text_dir, tmp_path):
    manifest = prepare(PrepareConfig((str(text_dir),), "char", shard_tokens=30_000), tmp_path / "p", progress=False)
    assert manifest["complete"] and manifest["dtype"] == "uint16"
    train, val, _ = open_splits(tmp_path / "p")
    corpus = Corpus.load(tmp_path / "p")
    files = input_files([str(text_dir)])
    pieces = [t for t, _ in text_pieces(files, piece_size(sum(f.stat().st_size for f in files)))]
    assert decoded(val, corpus.tokenizer) == "".join(p for i, p in enumerate(pieces) if i % VAL_EVERY == VAL_EVERY - 1)
    assert decoded(train, corpus.tokenizer) == "".join(p for i, p in enumerate(pieces) if i % VAL_EVERY != VAL_EVERY - 1)
    assert "".join(pieces) == (text_dir / "a.txt").read_text() + (text_dir / "sub" / "b.txt").read_text()
    assert len(manifest["shards"]) > 2 and train.chars + val.chars == len("".join(pieces))
    assert 0.03 < len(val) / (len(train) + len(val)) < 0.07


def test_a_vocabulary_past_65536_ids_is_stored_as_uint32(tmp_path):
    text = "".join(chr(c) for c in range(0x4E00, 0x4E00 + 30_000)) + "".join(chr(c) for c in range(0x20000, 0x20000 + 40_000))
    (tmp_path / "t.txt").write_text(text * 2, encoding="utf-8")
    manifest = prepare(PrepareConfig((str(tmp_path / "t.txt"),), "char"), tmp_path / "p", progress=False)
    assert manifest["dtype"] == "uint32" and manifest["vocab_size"] == 70_000
    train, val, _ = open_splits(tmp_path / "p")
    assert int(train.read(0, len(train)).max()) >= 65_536


def test_an_interrupted_prepare_continues_to_the_same_shards(text_dir, tmp_path, monkeypatch):
    config = PrepareConfig((str(text_dir),), "bpe", 300, shard_tokens=20_000)
    clean = prepare(config, tmp_path / "clean", progress=False)
    real_write, writes = prepare_module.write_json, []

    def crash_after_two(path, data):
        real_write(path, data)
        writes.append(path)
        if len(writes) == 3:  # the first manifest, then two shards' worth
            raise KeyboardInterrupt

    monkeypatch.setattr(prepare_module, "write_json", crash_after_two)
    with pytest.raises(KeyboardInterrupt):
        prepare(config, tmp_path / "cut", progress=False)
    monkeypatch.setattr(prepare_module, "write_json", real_write)
    partial = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    assert not partial["complete"] and partial["pieces_done"] > 0
    with pytest.raises(GptcoreError, match="only partly prepared"):
        Corpus.load(tmp_path / "cut")
    resumed = prepare(config, tmp_path / "cut", progress=False)
    assert [s["sha256"] for s in resumed["shards"]] == [s["sha256"] for s in clean["shards"]]
    with pytest.raises(GptcoreError, match="other inputs or settings"):
        prepare(PrepareConfig((str(text_dir),), "char"), tmp_path / "cut", progress=False)


def test_a_damaged_shard_is_caught_by_its_checksum(text_dir, tmp_path, capsys):
    prepare(PrepareConfig((str(text_dir / "a.txt"),), "char", shard_tokens=20_000), tmp_path / "p", progress=False)
    shard = tmp_path / "p" / "train-00001.bin"
    data = bytearray(shard.read_bytes())
    data[100] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="train-00001.bin failed its checksum"):
        Corpus.load(tmp_path / "p")
    assert main(["train", "--preset", "tiny", "--data", str(tmp_path / "p"), "--out", str(tmp_path / "r")]) == 1
    assert "failed its checksum" in capsys.readouterr().err


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(GptcoreError, match="no such file"):
        prepare(PrepareConfig((str(tmp_path / "nothing*.txt"),), "char"), tmp_path / "p", progress=False)
    (tmp_path / "tiny.txt").write_text("just a few words\n")
    with pytest.raises(GptcoreError, match="too small for a validation split"):
        prepare(PrepareConfig((str(tmp_path / "tiny.txt"),), "char"), tmp_path / "q", progress=False)


def test_shards_give_the_same_batches_and_losses_as_a_tensor(text_dir, tmp_path):
    prepare(PrepareConfig((str(text_dir),), "char", shard_tokens=10_000), tmp_path / "p", progress=False)
    corpus = Corpus.load(tmp_path / "p")
    as_tensor = torch.from_numpy(corpus.train.read(0, len(corpus.train)).astype(np.int64))
    a, b = BatchSampler(corpus.train, 64, 16, seed=3), BatchSampler(as_tensor, 64, 16, seed=3)
    for _ in range(5):  # windows that cross shard boundaries included
        (xa, ya), (xb, yb) = a.next_batch(), b.next_batch()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    val = torch.from_numpy(corpus.val.read(0, len(corpus.val)).astype(np.int64))
    model = GPT(small_config(vocab_size=corpus.tokenizer.vocab_size)).eval()
    loss = split_loss(model, corpus.val, 16)
    assert loss == pytest.approx(split_loss(model, val, 16), abs=1e-6)
    assert nats_per_char(loss, corpus.val, corpus.tokenizer) == pytest.approx(nats_per_char(loss, val, corpus.tokenizer))
    vocab = corpus.tokenizer.vocab_size
    assert unigram_loss(corpus.train, corpus.val, vocab) == pytest.approx(unigram_loss(as_tensor, val, vocab))


def test_the_cli_prepares_trains_and_evaluates(text_dir, tmp_path, capsys):
    assert main(["prepare", "--input", str(text_dir / "*.txt"), str(text_dir / "sub"), "--tokenizer", "bpe",
                 "--vocab-size", "300", "--out", str(tmp_path / "p"), "--quiet"]) == 0
    prepared = json.loads(capsys.readouterr().out)
    assert prepared["tokenizer"] == "bpe" and prepared["train_tokens"] > 10 * prepared["val_tokens"] > 0
    assert main(["train", "--preset", "tiny", "--data", str(tmp_path / "p"), "--out", str(tmp_path / "r"),
                 "--max-iters", "10", "--quiet", "--set", "final_eval_tokens=2000"]) == 0
    trained = json.loads(capsys.readouterr().out)
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["val_tokens_evaluated"] == 2000 and metrics["tokenizer"] == "bpe"
    assert main(["eval", "--checkpoint", str(tmp_path / "r"), "--data", str(tmp_path / "p")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["val_tokens"] == prepared["val_tokens"] and evaluated["val_nats_per_char"] < evaluated["val_loss"]
    assert trained["val_loss"] > 0


def test_a_dataset_is_streamed_through_the_datasets_library(tmp_path, corpus_text, monkeypatch):
    """The hub path, offline: a local directory of JSON-lines files is a dataset to ``datasets.load_dataset``."""
    pytest.importorskip("datasets", reason="the optional datasets library is not installed")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    data = tmp_path / "ds"
    data.mkdir()
    lines = corpus_text[:400_000].split("\n\n")
    with open(data / "part-0.jsonl", "w", encoding="utf-8") as f:
        for paragraph in lines:
            f.write(json.dumps({"text": paragraph, "id": 1}) + "\n")
    manifest = prepare(PrepareConfig((f"hf:{data}",), "char", shard_tokens=50_000), tmp_path / "p", progress=False)
    train, val, _ = open_splits(tmp_path / "p")
    assert manifest["complete"] and len(train) + len(val) == sum(len(p) + 1 for p in lines)
    with pytest.raises(GptcoreError, match="no text field 'body'"):
        prepare(PrepareConfig((f"hf:{data}",), "char", hf_field="body"), tmp_path / "q", progress=False)
    with pytest.raises(GptcoreError, match="cannot stream dataset"):
        prepare(PrepareConfig((f"hf:{tmp_path / 'missing'}",), "char"), tmp_path / "r", progress=False)


def test_prepare_learns_bpe_from_the_training_pieces_only(tmp_path, corpus_text):
    from gptcore.prepare import _is_val
    from gptcore.tokenizers import BPETokenizer, load_tokenizer

    (tmp_path / "c.txt").write_text(corpus_text[:200_000], encoding="utf-8")
    prepare(PrepareConfig((str(tmp_path / "c.txt"),), "bpe", bpe_vocab_size=400), tmp_path / "p", progress=False)
    files = input_files([str(tmp_path / "c.txt")])
    pieces = [t for t, _ in text_pieces(files, piece_size(files[0].stat().st_size))]
    training = BPETokenizer.train([p for i, p in enumerate(pieces) if not _is_val(i)], 400).merges
    assert training != BPETokenizer.train(pieces, 400).merges  # the validation pieces would change them
    assert load_tokenizer(tmp_path / "p" / "tokenizer.json").merges == training
