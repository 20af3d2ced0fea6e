import math

import pytest
import torch

from gptcore.config import ModelConfig
from gptcore.errors import ConfigError
from gptcore.models import GPT, Bigram, build_model, count_parameters
from tests.conftest import small_config


def test_logits_shape_and_loss():
    model = GPT(small_config())
    idx = torch.randint(0, 65, (3, 16))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 16, 65)
    assert loss.ndim == 0


@pytest.mark.parametrize("overrides", [{}, {"norm": "post"}, {"residual": False}, {"pos_emb": "none"},
                                       {"pos_emb": "rope"}, {"attention": "explicit"}, {"attention": "auto"}])
def test_causality(overrides, device):
    model = GPT(small_config(**overrides)).eval().to(device)
    idx = torch.randint(0, 65, (1, 16), device=device)
    changed = idx.clone()
    changed[0, 10:] = (changed[0, 10:] + 7) % 65
    a, _ = model(idx)
    b, _ = model(changed)
    assert torch.allclose(a[0, :10], b[0, :10], atol=1e-6)
    assert not torch.allclose(a[0, 10:], b[0, 10:], atol=1e-3)


@pytest.mark.parametrize("grad", [True, False])
def test_explicit_fused_and_auto_attention_agree(grad, device):
    fused = GPT(small_config(attention="fused", n_head=4, n_embd=64)).eval().to(device)
    explicit = GPT(small_config(attention="explicit", n_head=4, n_embd=64)).eval().to(device)
    auto = GPT(small_config(attention="auto", n_head=4, n_embd=64)).eval().to(device)
    explicit.load_state_dict(fused.state_dict())
    auto.load_state_dict(fused.state_dict())
    idx = torch.randint(0, 65, (4, 16), device=device)
    with torch.set_grad_enabled(grad):
        a, _ = fused(idx)
        b, _ = explicit(idx)
        c, _ = auto(idx)
    scale = a.abs().max()  # agreement relative to the logits' size: float32 rounding grows with it
    assert (a - b).abs().max() <= 2e-6 * scale and (a - c).abs().max() <= 2e-6 * scale


@pytest.mark.parametrize("overrides", [{}, {"qk_norm": True}, {"pos_emb": "none"}, {"norm": "post"},
                                       {"residual": False}, {"dropout": 0.2}, {"pos_emb": "rope"},
                                       {"pos_emb": "rope", "qk_norm": True}, {"bias": False, "tie_embeddings": True}])
def test_decode_matches_the_full_forward(overrides, device):
    model = GPT(small_config(n_head=4, n_embd=64, **overrides)).eval()
    with torch.no_grad():  # sharper than at init, so that a wrong key, mask or position would show
        for p in model.parameters():
            p.mul_(4)
    model.to(device)
    idx = torch.randint(0, 65, (1, 16), device=device)
    full, _ = model(idx)
    cache = model.new_cache(1)
    model(idx[:, :5], cache=cache)
    # one token at a time, then several at once (as speculative sampling checks its guesses)
    steps = torch.cat([model.decode(idx[0, t:t + 1].tolist(), cache) for t in range(5, 9)])
    steps = torch.cat([steps, model.decode(idx[0, 9:].tolist(), cache)])
    assert cache.length == 16
    assert torch.allclose(steps, full[0, 5:], atol=1e-4, rtol=0)
    cache.length = 9  # roll back: decoding the same tokens again gives the same logits
    assert torch.allclose(model.decode(idx[0, 9:12].tolist(), cache), full[0, 9:12], atol=1e-4, rtol=0)
    cache.length = 16
    with pytest.raises(ValueError, match="block_size|KV cache holds 16 positions"):
        model.decode([0], cache)


def test_decode_follows_weights_loaded_after_its_first_use():
    model, other = GPT(small_config(qk_norm=True)).eval(), GPT(small_config(qk_norm=True)).eval()
    idx = torch.randint(0, 65, (1, 6))
    model.decode(idx[0].tolist(), model.new_cache(1))  # gathers its tensors
    model.load_state_dict(other.state_dict())
    expected, _ = other(idx)
    assert torch.allclose(model.decode(idx[0].tolist(), model.new_cache(1)), expected[0], atol=1e-5, rtol=0)


def test_attention_maps_are_causal_distributions():
    model = GPT(small_config(n_layer=3, n_head=2)).eval()
    maps = model.attention_maps(torch.randint(0, 65, (1, 12)))
    assert len(maps) == 3 and maps[0].shape == (1, 2, 12, 12)
    for m in maps:
        assert torch.allclose(m.sum(-1), torch.ones(1, 2, 12), atol=1e-5)
        assert torch.all(m.triu(diagonal=1) == 0)


@pytest.mark.parametrize("variant", [{}, {"norm": "post"}, {"pos_emb": "rope"}, {"qk_norm": True, "pos_emb": "rope"}])
def test_attention_scores_masked_and_softmaxed_are_the_attention_maps(variant):
    model = GPT(small_config(n_layer=2, n_head=2, **variant)).eval()
    idx = torch.randint(0, 65, (1, 10))
    scores, maps = model.attention_scores(idx), model.attention_maps(idx)
    future = torch.ones(10, 10, dtype=torch.bool).triu(1)
    for s, m in zip(scores, maps):
        assert s.shape == (1, 2, 10, 10) and not torch.isinf(s).any()  # before the mask
        assert torch.allclose(s.masked_fill(future, float("-inf")).softmax(-1), m, atol=1e-5)


def test_exact_parameter_count():
    c = ModelConfig(vocab_size=65, block_size=128, n_layer=4, n_head=4, n_embd=256)
    d, v, L = c.n_embd, c.vocab_size, c.n_layer
    per_block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    expected = v * d + c.block_size * d + L * per_block + 2 * d + d * v
    assert count_parameters(GPT(c)) == expected == 3_225_600
    assert count_parameters(GPT(ModelConfig(pos_emb="none"))) == expected - c.block_size * d
    assert count_parameters(Bigram(ModelConfig(arch="bigram"))) == 65 * 65


def test_initial_loss_is_near_uniform(corpus):
    model = build_model(ModelConfig(dropout=0.0))
    x = corpus.train[:129 * 8].view(8, 129)
    _, loss = model(x[:, :-1], x[:, 1:])
    assert abs(loss.item() - math.log(65)) < 0.1
    _, bigram_loss = build_model(ModelConfig(arch="bigram"))(x[:, :-1], x[:, 1:])
    assert bigram_loss.item() == pytest.approx(math.log(65), abs=1e-5)


def test_overfits_one_batch(corpus):
    model = GPT(small_config(n_embd=64, n_layer=2))
    x = corpus.train[:17 * 4].view(4, 17)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        _, loss = model(x[:, :-1], x[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_sequence_longer_than_block_is_refused():
    with pytest.raises(ValueError, match="exceed the model.s context"):
        GPT(small_config())(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize("bad", [{"n_embd": 30, "n_head": 4}, {"norm": "middle"}, {"dropout": 1.0}, {"n_layer": 0}])
def test_bad_config_is_refused(bad):
    with pytest.raises(ConfigError):
        small_config(**bad).validate()


def test_byte_dropout_drops_the_rounded_fraction_and_keeps_the_mean():
    from gptcore.models.dropout import Dropout

    drop = Dropout(0.2).train()
    assert drop.p == 51 / 256
    x = torch.ones(400_000)
    torch.manual_seed(0)
    y = drop(x)
    kept = y != 0
    assert abs((~kept).float().mean().item() - 51 / 256) < 0.005
    assert torch.all(y[kept] == 256 / 205)  # every kept value scaled by 1 / (1 - p)
    assert abs(y.mean().item() - 1.0) < 0.01
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)  # the global seed makes it reproducible


def test_byte_dropout_gradient_is_the_mask_and_eval_is_identity():
    from gptcore.models.dropout import Dropout

    drop = Dropout(0.5).train()
    x = torch.randn(3, 1000, requires_grad=True)
    y = drop(x)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() * 2.0)
    assert drop.eval()(x) is x
    assert Dropout(0.0).train()(x) is x
    half = drop.train()(torch.randn(64, 64, dtype=torch.bfloat16))
    assert half.dtype == torch.bfloat16


@pytest.mark.parametrize("attention", ["explicit", "fused"])
def test_dropout_is_off_in_eval_mode_on_both_attention_paths(attention):
    with_dropout = GPT(small_config(attention=attention, dropout=0.5)).eval()
    without = GPT(small_config(attention=attention, dropout=0.0)).eval()
    without.load_state_dict(with_dropout.state_dict())
    idx = torch.randint(0, 65, (2, 16))
    assert torch.equal(with_dropout(idx)[0], without(idx)[0])


def test_attention_dropout_is_applied_in_training_on_both_paths(monkeypatch):
    from gptcore.models import attention as attention_module

    seen = []
    real = attention_module.F.scaled_dot_product_attention

    def spy(*args, dropout_p=0.0, **kwargs):
        seen.append(dropout_p)
        return real(*args, dropout_p=dropout_p, **kwargs)

    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", spy)
    idx = torch.randint(0, 65, (2, 16))
    fused = GPT(small_config(attention="fused", dropout=0.25, n_layer=1))
    fused.train()(idx)
    fused.eval()(idx)
    assert seen == [0.25, 0.0]

    explicit = GPT(small_config(attention="explicit", dropout=0.25, n_layer=1)).train()
    calls = []
    drop = explicit.blocks[0].attn.attn_dropout
    monkeypatch.setattr(drop, "forward", lambda x: calls.append(x.shape) or x)
    explicit(idx)
    assert calls == [(2, 2, 16, 16)]  # the attention weights themselves went through dropout


def test_explicit_and_fused_agree_on_the_shipped_model_relative_to_the_logits_scale():
    """At a full context of 256 on the shipped model the two paths differ by about 1e-5 in float32
    (logits near 20): the tolerance is relative to the largest logit, and tight."""
    from pathlib import Path

    from gptcore.checkpoint import load_checkpoint

    ck = load_checkpoint(Path(__file__).resolve().parents[1] / "checkpoints" / "shakespeare-char")
    explicit = GPT(ck.config.model.__class__(**{**ck.config.model.__dict__, "attention": "explicit"})).eval()
    explicit.load_state_dict(ck.model.state_dict())
    idx = torch.randint(0, ck.config.model.vocab_size, (2, ck.config.model.block_size))
    with torch.no_grad():
        a = ck.model(idx)[0]  # fused (inference)
        b = explicit(idx)[0]
    scale = a.abs().max()
    assert (a - b).abs().max() <= 2e-6 * scale



def test_rope_scores_depend_only_on_the_distance_between_positions():
    from gptcore.models.attention import rope_tables, rotate

    torch.manual_seed(0)
    q, k = torch.randn(64), torch.randn(64)
    cos, sin = rope_tables(0, 300, 64, 10000.0)

    def score(i, j):
        return rotate(q, cos[i], sin[i]) @ rotate(k, cos[j], sin[j])

    for i, j in [(5, 2), (17, 17), (100, 30), (250, 1)]:
        for shift in (1, 13, 40):
            assert score(i + shift, j + shift) == pytest.approx(score(i, j).item(), abs=1e-4)
    assert abs(score(9, 2) - score(9, 3)) > 1e-3  # and it does depend on the distance


def test_rope_rotation_preserves_norms_and_position_zero_is_the_identity():
    from gptcore.models.attention import rope_tables, rotate

    x = torch.randn(3, 4, 50, 32)
    cos, sin = rope_tables(0, 50, 32, 10000.0)
    assert torch.allclose(rotate(x, cos, sin).norm(dim=-1), x.norm(dim=-1), rtol=1e-5)
    assert torch.equal(rotate(x[..., :1, :], cos[:1], sin[:1]), x[..., :1, :])


def test_a_rope_model_has_no_position_table_and_sees_order():
    model = GPT(small_config(pos_emb="rope")).eval()
    assert model.pos_emb is None and not any("rope" in k for k in model.state_dict())
    idx = torch.tensor([[1, 2, 3, 4, 5, 6]])
    swapped = torch.tensor([[2, 1, 3, 4, 5, 6]])  # same tokens, two positions exchanged
    with torch.no_grad():
        assert not torch.allclose(model(idx)[0][0, -1], model(swapped)[0][0, -1], atol=1e-5)
    with pytest.raises(ConfigError, match="must be even"):
        small_config(pos_emb="rope", n_embd=30, n_head=2).validate()


@pytest.mark.parametrize("dropout", [0.0, 0.2])
def test_gradient_checkpointing_gives_the_same_gradients(dropout):
    plain = GPT(small_config(dropout=dropout, pos_emb="rope")).train()
    recomputing = GPT(small_config(dropout=dropout, pos_emb="rope", grad_checkpoint=True)).train()
    recomputing.load_state_dict(plain.state_dict())
    idx = torch.randint(0, 65, (3, 16))
    grads = []
    for model in (plain, recomputing):
        torch.manual_seed(5)  # the same dropout masks
        _, loss = model(idx, idx)
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], atol=1e-6, rtol=1e-5), name


def sharpened(model: GPT) -> GPT:
    """Weights scaled up, so that a wrong position or value shows well above float noise."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)
    return model.eval()


def test_a_rope_model_depends_on_relative_positions_only():
    model = sharpened(GPT(small_config(pos_emb="rope", n_head=4, n_embd=64, block_size=64)))
    idx = torch.randint(0, 65, (1, 16))
    with torch.no_grad():
        at_zero = model(idx, cache=model.new_cache(1))[0]
        later = model.new_cache(1)
        later.start = 40  # the same tokens, as if they came 40 positions further on
        at_forty = model(idx, cache=later)[0]
    assert torch.allclose(at_zero, at_forty, atol=1e-4, rtol=0)


def test_rope_base_sets_the_rotation_tables():
    from gptcore.models.attention import rope_tables

    model = GPT(small_config(pos_emb="rope", rope_base=100.0))
    cos, sin = rope_tables(0, model.config.block_size, model.config.n_embd // model.config.n_head, 100.0)
    assert torch.equal(model.rope_cos, cos) and torch.equal(model.rope_sin, sin)
    default = GPT(small_config(pos_emb="rope"))
    assert not torch.allclose(model.rope_cos, default.rope_cos)


def test_rope_at_a_non_default_base_decodes_as_the_full_forward():
    model = sharpened(GPT(small_config(pos_emb="rope", rope_base=50.0, n_head=4, n_embd=64)))
    idx = torch.randint(0, 65, (1, 12))
    with torch.no_grad():
        full, _ = model(idx)
        cache = model.new_cache(1)
        model(idx[:, :4], cache=cache)
        steps = torch.cat([model.decode(idx[0, t:t + 1].tolist(), cache) for t in range(4, 12)])
    assert torch.allclose(steps, full[0, 4:], atol=1e-4, rtol=0)


def test_gradient_checkpointing_recomputes_each_block(monkeypatch):
    from gptcore.models import gpt

    calls = []
    real = gpt.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(gpt, "checkpoint", counting)
    model = GPT(small_config(grad_checkpoint=True)).train()
    idx = torch.randint(0, 65, (2, 8))
    model(idx, idx)[1].backward()
    assert len(calls) == model.config.n_layer
    with torch.no_grad():
        model(idx)
    assert len(calls) == model.config.n_layer  # nothing to recompute without gradients
