import os
from pathlib import Path

import pytest
import torch

from gptcore import data
from gptcore.data import BatchSampler, Corpus, download_shakespeare, read_corpus, resolve_corpus
from gptcore.errors import DataUnavailableError, GptcoreError


def test_split_sizes(corpus):
    assert len(corpus.train) == 1_003_854
    assert len(corpus.val) == 111_540


def test_download_verifies_checksum(tmp_path):
    local = Path(os.environ["GPTCORE_DATA"])
    dest = download_shakespeare(tmp_path / "cache" / "ts.txt", url=local.resolve().as_uri())
    assert dest.read_bytes() == local.read_bytes()
    bad = tmp_path / "bad.txt"
    bad.write_text("not shakespeare")
    with pytest.raises(DataUnavailableError, match="does not match"):
        download_shakespeare(tmp_path / "x.txt", url=bad.as_uri())


def test_offline_message_says_how_to_provide_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("GPTCORE_DATA", raising=False)
    monkeypatch.setenv("GPTCORE_CACHE", str(tmp_path))
    monkeypatch.setattr(data, "SHAKESPEARE_URL", "http://127.0.0.1:9/input.txt")
    monkeypatch.setattr(data.download_shakespeare, "__defaults__", ("http://127.0.0.1:9/input.txt", 2.0))
    with pytest.raises(DataUnavailableError, match="--data PATH or the GPTCORE_DATA"):
        resolve_corpus()


def test_cached_copy_is_used_without_network(tmp_path, monkeypatch):
    local = Path(os.environ["GPTCORE_DATA"])
    monkeypatch.delenv("GPTCORE_DATA")
    monkeypatch.setenv("GPTCORE_CACHE", str(tmp_path))
    monkeypatch.setattr(data, "download_shakespeare", None)  # any download attempt would fail loudly
    (tmp_path / "tinyshakespeare.txt").write_bytes(local.read_bytes())
    assert resolve_corpus() == tmp_path / "tinyshakespeare.txt"


def test_missing_path_and_bad_encoding(tmp_path):
    with pytest.raises(DataUnavailableError, match="not found"):
        resolve_corpus(tmp_path / "nope.txt")
    binary = tmp_path / "latin1.txt"
    binary.write_bytes("café".encode("latin-1"))
    with pytest.raises(GptcoreError, match="not UTF-8"):
        read_corpus(binary)


def test_any_utf8_text_is_a_corpus(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("αβγ δεζ\n" * 50, encoding="utf-8")
    c = Corpus.load(path)
    assert c.tokenizer.vocab_size == 8
    assert len(c.train) + len(c.val) == 400


def test_batch_sampler_is_seeded_and_shifted(corpus):
    a = BatchSampler(corpus.train, 16, 4, seed=3)
    b = BatchSampler(corpus.train, 16, 4, seed=3)
    xa, ya = a.next_batch()
    xb, yb = b.next_batch()
    assert xa.shape == (4, 16) and torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(xa[:, 1:], ya[:, :-1])
    state = a.state()
    x1, _ = a.next_batch()
    a.set_state(state)
    assert torch.equal(a.next_batch()[0], x1)


def test_sampler_rejects_short_text():
    with pytest.raises(GptcoreError, match="longer than block_size"):
        BatchSampler(torch.arange(10), 16, 2, 0)


def test_a_split_one_token_longer_than_the_block_gives_full_windows_from_zero():
    data = torch.arange(17)
    sampler = BatchSampler(data, block_size=16, batch_size=8, seed=0)
    for _ in range(5):
        x, y = sampler.next_batch()
        assert x.shape == (8, 16) and torch.equal(x, data[:16].expand(8, 16)) and torch.equal(y, data[1:].expand(8, 16))


def test_a_bpe_recipe_learns_nothing_from_the_validation_text():
    from gptcore.config import TrainConfig
    from gptcore.tokenizers import BPETokenizer

    train_part = "the cat sat on the mat and the rat sat on the hat " * 40
    text = train_part + "zyxwzyxwzyxw " * 40  # a word only the last 10% holds
    text = text[:len(train_part) * 10 // 9]  # so that the split falls where the training part ends
    tokenizer = data.make_tokenizer(text, TrainConfig(tokenizer="bpe", bpe_vocab_size=300))
    cut = data.split_point(len(text))
    assert tokenizer.merges == BPETokenizer.train(text[:cut], 300).merges
    assert not any(b"zy" in tokenizer.token_bytes(i) for i in range(256, tokenizer.vocab_size))
