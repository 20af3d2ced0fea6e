"""Looking inside a model: per-position predictions, surprise, the logit lens and switching heads off."""

import pytest
import torch

from gptcore.interpret import (each_head_off, embedding_pca, heads_off, logit_lens, position_similarity, read_text,
                               rope_wavelengths, surprise)
from gptcore.models import GPT
from tests.conftest import small_config


def next_token_probs(model, ids):
    return read_text(model, ids)[0]


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT(small_config(n_layer=3, n_head=4, n_embd=32)).eval()


def test_surprise_is_the_per_token_loss(model):
    ids = torch.randint(0, 65, (12,))
    s = surprise(model, ids)
    with torch.no_grad():
        _, loss = model(ids[None, :-1], ids[None, 1:])
    assert s.shape == (11,) and float(s.mean()) == pytest.approx(float(loss), abs=1e-5)
    probs = next_token_probs(model, ids)
    assert probs.shape == (12, 65) and torch.allclose(probs.sum(-1), torch.ones(12))
    assert torch.allclose(-probs[torch.arange(11), ids[1:]].log(), s, atol=1e-5)


def test_the_logit_lens_ends_in_the_models_prediction(model):
    ids = torch.randint(0, 65, (10,))
    lens = logit_lens(model, ids)
    assert lens.shape == (3 + 1, 10, 65)
    assert torch.allclose(lens[-1], next_token_probs(model, ids), atol=1e-5)
    manual = model.lm_head(model.ln_f(model.tok_emb(ids) + model.pos_emb(torch.arange(10)))).softmax(-1)
    assert torch.allclose(lens[0], manual, atol=1e-5)  # row 0: the embeddings alone


def test_switching_heads_off_zeroes_their_output_and_is_undone(model):
    ids = torch.randint(0, 65, (16,))
    before = next_token_probs(model, ids)
    with heads_off(model, [(0, 1), (2, 3)]):
        changed = next_token_probs(model, ids)
        assert model.blocks[0].attn.head_mask.tolist() == [1, 0, 1, 1]
    assert not torch.allclose(before, changed) and torch.equal(next_token_probs(model, ids), before)
    assert all(b.attn.head_mask is None for b in model.blocks)
    with heads_off(model, []):
        assert torch.equal(next_token_probs(model, ids), before)
    with pytest.raises(ValueError, match="no head 5 in layer 1"):
        with heads_off(model, [(0, 4)]):
            pass
    baseline = float(surprise(model, ids).mean())
    with heads_off(model, [(0, 0), (0, 1), (0, 2), (0, 3)]):  # a whole layer off changes the text's loss
        assert float(surprise(model, ids).mean()) != pytest.approx(baseline)


def test_a_head_switched_off_equals_its_value_weights_zeroed(model):
    """The mask's meaning, checked another way: zeroing head h's value projection removes its output too."""
    ids = torch.randint(0, 65, (16,))
    with heads_off(model, [(1, 2)]):
        masked = next_token_probs(model, ids)
    C, hd = 32, 8
    with torch.no_grad():
        w, b = model.blocks[1].attn.qkv.weight, model.blocks[1].attn.qkv.bias
        rows = slice(2 * C + 2 * hd, 2 * C + 3 * hd)
        w[rows] = 0
        b[rows] = 0
    assert torch.allclose(next_token_probs(model, ids), masked, atol=1e-6)


def test_sampling_respects_switched_off_heads(model):
    from gptcore.inference.sampling import SamplingParams, stream_tokens

    params = SamplingParams(temperature=0.0, max_new_tokens=20)
    normal = list(stream_tokens(model, [1, 2, 3], params))
    with heads_off(model, [(0, 0), (1, 1), (2, 2)]):
        off = list(stream_tokens(model, [1, 2, 3], params))
        uncached = list(stream_tokens(model, [1, 2, 3], params, use_cache=False))
    assert off == uncached and len(off) == 20  # the cached decode sees the switched-off heads too
    assert normal == list(stream_tokens(model, [1, 2, 3], params))  # and they are back on afterwards


def test_embedding_pca_finds_a_plane_the_embeddings_lie_in(model):
    """Embeddings built on a 2-D plane: the two directions explain everything, distances are kept."""
    torch.manual_seed(1)
    plane = torch.linalg.qr(torch.randn(32, 2)).Q  # orthonormal columns
    points = torch.randn(model.config.vocab_size, 2) * torch.tensor([3.0, 1.0])
    with torch.no_grad():
        model.tok_emb.weight.copy_(points @ plane.T + 0.5)
    coords, explained = embedding_pca(model)
    assert coords.shape == (model.config.vocab_size, 2)
    assert explained.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert explained[0] > explained[1]
    distances = lambda x: (x[:, None] - x[None]).norm(dim=-1)  # noqa: E731
    assert torch.allclose(distances(coords), distances(points), atol=1e-4)
    assert (coords.gather(0, coords.abs().argmax(0, keepdim=True)) > 0).all()  # signed: no flip between calls


def test_position_similarity_is_a_cosine_matrix(model):
    sim = position_similarity(model)
    assert sim.shape == (model.config.block_size,) * 2
    assert torch.allclose(sim.diagonal(), torch.ones(model.config.block_size), atol=1e-5)
    assert torch.allclose(sim, sim.T)
    assert rope_wavelengths(model) is None


def test_rotary_models_have_wavelengths_and_no_position_table():
    rope = GPT(small_config(n_layer=1, n_head=2, n_embd=32, pos_emb="rope")).eval()
    assert position_similarity(rope) is None
    wavelengths = rope_wavelengths(rope)
    assert wavelengths.shape == (8,)  # head_dim 16: 8 rotating pairs
    assert wavelengths[0].item() == pytest.approx(2 * torch.pi)  # the fastest pair turns once a radian
    assert (wavelengths.diff() > 0).all()


def test_each_head_off_in_one_batch_equals_switching_them_off_one_by_one(model):
    ids = torch.randint(0, 65, (14,))
    baseline, losses = each_head_off(model, ids)
    assert losses.shape == (3, 4) and baseline == pytest.approx(float(surprise(model, ids).mean()), abs=1e-6)
    for layer in range(3):
        for head in range(4):
            with heads_off(model, [(layer, head)]):
                assert float(losses[layer, head]) == pytest.approx(float(surprise(model, ids).mean()), abs=1e-5)
    assert all(block.attn.head_mask is None for block in model.blocks)  # restored
    with pytest.raises(ValueError, match="at least two tokens"):
        each_head_off(model, [3])
