import collections
import random

import pytest
import torch

from gptcore.inference.draft import NgramDraft
from gptcore.errors import CheckpointError


def reference_next(ids: list[int], context: list[int], order: int) -> int | None:
    """Brute force: the most frequent follower of the longest suffix of ``context`` seen in ``ids``."""
    for n in range(min(order, len(context)), 0, -1):
        suffix = context[len(context) - n:]
        followers = collections.Counter(ids[i + n] for i in range(len(ids) - n) if ids[i:i + n] == suffix)
        if followers:
            best = max(followers.values())
            return min(t for t, c in followers.items() if c == best)
    return None


def test_guesses_match_a_brute_force_n_gram_model():
    rng = random.Random(0)
    # a text with structure (repeated words) and noise, so that every context length matters
    words = [[1, 2, 3], [1, 2, 4, 5], [6, 2, 3, 3], [7], [4, 5, 1]]
    ids = [t for _ in range(300) for t in (rng.choice(words) if rng.random() < 0.8 else [rng.randrange(9)])]
    draft = NgramDraft.fit(torch.tensor(ids), vocab_size=9, order=3)
    for _ in range(300):
        context = [rng.randrange(9) for _ in range(rng.randrange(1, 6))]
        assert draft.propose(context, 1) == [reference_next(ids, context, 3)], context


def test_guesses_chain_on_their_own_guesses():
    ids = [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]
    draft = NgramDraft.fit(torch.tensor(ids), vocab_size=4, order=2)
    assert draft.propose([3, 0], 6) == [1, 2, 3, 0, 1, 2]
    assert draft.propose([2], 0) == []


def test_unseen_tokens_give_no_guess():
    draft = NgramDraft.fit(torch.tensor([0, 1, 0, 1]), vocab_size=5, order=2)
    assert draft.propose([4], 3) == []  # token 4 never appears, so nothing follows it


def test_redundant_long_contexts_are_not_stored():
    # every context predicts the same next token as its one-token suffix: only order 1 is needed
    ids = [0, 1] * 50
    draft = NgramDraft.fit(torch.tensor(ids), vocab_size=2, order=4)
    assert len(draft) == 2


def test_round_trip_and_damage(tmp_path):
    ids = torch.randint(0, 7, (500,), generator=torch.Generator().manual_seed(0))
    draft = NgramDraft.fit(ids, vocab_size=7, order=4)
    draft.save(tmp_path / "draft.pt")
    loaded = NgramDraft.load(tmp_path / "draft.pt")
    assert (loaded.order, loaded.vocab_size, len(loaded)) == (4, 7, len(draft))
    for start in range(0, 400, 7):
        context = ids[start:start + 5].tolist()
        assert loaded.propose(context, 4) == draft.propose(context, 4)
    data = (tmp_path / "draft.pt").read_bytes()
    (tmp_path / "draft.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        NgramDraft.load(tmp_path / "draft.pt")


def test_bad_arguments():
    with pytest.raises(ValueError, match="order"):
        NgramDraft.fit(torch.tensor([0, 1, 2]), vocab_size=3, order=0)
    with pytest.raises(ValueError, match="vocab_size"):
        NgramDraft.fit(torch.tensor([0, 1, 5]), vocab_size=3, order=2)


def test_the_trainer_fits_a_draft_for_any_vocabulary(tmp_path, corpus):
    """A large BPE vocabulary would overflow an order-5 table's codes: the trainer shortens the order."""
    from gptcore.data import Corpus
    from gptcore.inference.draft import fitting_order
    from gptcore.presets import get_preset
    from gptcore.training import Trainer

    assert fitting_order(65) == 5 and fitting_order(2048) == 4 and fitting_order(50_304) == 2
    config = get_preset("tiny").with_overrides({"tokenizer": "bpe", "bpe_vocab_size": 2048, "max_iters": 4})
    text = corpus.tokenizer.decode(corpus.train.tolist()[:300_000])
    Trainer(config, Corpus.from_text(text, recipe=config.train), tmp_path / "big").run()
    from gptcore.checkpoint import load_checkpoint
    assert load_checkpoint(tmp_path / "big").draft.order == 4
