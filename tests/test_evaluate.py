import pytest
import torch
import torch.nn.functional as F

from gptcore.evaluate import sample_windows, split_loss, window_starts
from gptcore.models import GPT
from tests.conftest import small_config


def test_whole_split_loss_counts_every_token_once(device):
    model = GPT(small_config()).eval()
    data = torch.randint(0, 65, (16 * 5 + 7,))  # a final partial window
    got = split_loss(model.to(device), data, block_size=16, batch_size=2)
    model.cpu()
    total, count = 0.0, 0
    for s in window_starts(len(data), 16):
        chunk = data[s:s + 17]
        logits, _ = model(chunk[None, :-1])
        total += F.cross_entropy(logits[0], chunk[1:], reduction="sum").item()
        count += len(chunk) - 1
    assert count == len(data) - 1
    assert abs(got - total / count) < 1e-5


def test_sample_windows_is_a_fixed_subset():
    a = sample_windows(10_000, 16, 20, seed=1)
    assert a == sample_windows(10_000, 16, 20, seed=1)
    assert len(a) == 20 and set(a) <= set(window_starts(10_000, 16))


def test_nats_per_char_is_the_token_loss_for_characters_and_fair_for_bpe(corpus, corpus_text):
    from gptcore.config import TrainConfig
    from gptcore.data import Corpus
    from gptcore.evaluate import nats_per_char

    assert nats_per_char(2.5, corpus.val, corpus.tokenizer) == pytest.approx(2.5)
    bpe = Corpus.from_text(corpus_text, recipe=TrainConfig(tokenizer="bpe", bpe_vocab_size=400))
    # the split is made on the text: both tokenizers are evaluated on the same validation characters
    assert bpe.tokenizer.decode(bpe.val.tolist()) == corpus.tokenizer.decode(corpus.val.tolist())
    predicted_chars = len(bpe.tokenizer.decode(bpe.val[1:].tolist()))
    assert nats_per_char(2.0, bpe.val, bpe.tokenizer) == pytest.approx(2.0 * (len(bpe.val) - 1) / predicted_chars)


def test_the_unigram_loss_is_the_cross_entropy_of_training_frequencies():
    import math

    from gptcore.evaluate import unigram_loss

    train = torch.tensor([0, 0, 0, 1, 1, 2])  # targets (tokens 1..n-1): 0 twice, 1 twice, 2 once; +1 each
    val = torch.tensor([2, 0, 1, 1])  # targets: 0, 1, 1
    p = {0: 3 / 9, 1: 3 / 9, 2: 2 / 9, 3: 1 / 9}
    expected = -(math.log(p[0]) + 2 * math.log(p[1])) / 3
    assert unigram_loss(train, val, 4) == pytest.approx(expected)
    # a model that learns nothing beats no less than this: a uniform corpus gives log(vocab)
    uniform = torch.arange(8).repeat(50)
    assert unigram_loss(uniform, uniform, 8) == pytest.approx(math.log(8), abs=1e-3)
    with pytest.raises(Exception, match="at least 2"):
        unigram_loss(train, torch.tensor([1]), 4)


def test_the_unigram_loss_of_tiny_shakespeare_is_below_a_uniform_guess_and_above_a_bigram(corpus):
    import math

    from gptcore.evaluate import unigram_loss

    loss = unigram_loss(corpus.train, corpus.val, corpus.tokenizer.vocab_size)
    assert 2.5 < loss < math.log(corpus.tokenizer.vocab_size)
