"""Tiled (FlashAttention-style) attention: the same outputs and gradients as the explicit path, in any tiling."""

import pytest
import torch

from gptcore.models import GPT
from gptcore.models.attention import attend
from gptcore.models.flash import _TiledAttention, tiled_attention
from tests.conftest import small_config


def qkv(T: int, S: int | None = None, B: int = 2, H: int = 3, D: int = 8, dtype=torch.float32, device="cpu"):
    S = S or T
    make = lambda n: torch.randn(B, H, n, D, dtype=dtype, device=device, requires_grad=True)  # noqa: E731
    return make(T), make(S), make(S)


@pytest.mark.parametrize("T, S, tile, window", [
    (1, 1, 4, None), (7, 7, 4, None), (16, 16, 4, None), (33, 33, 8, None), (5, 21, 4, None),  # queries last
    (30, 30, 4, 7), (9, 40, 8, 12), (17, 17, 128, 5), (12, 12, 5, 100)])
def test_forward_and_gradients_equal_the_explicit_path(T, S, tile, window, device):
    q, k, v = qkv(T, S, device=device)
    grad = torch.randn(2, 3, T, 8, device=device)
    expected = attend(q, k, v, "explicit", window=window)
    got = tiled_attention(q, k, v, window=window, tile=tile)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    want = torch.autograd.grad(expected, (q, k, v), grad)
    have = torch.autograd.grad(got, (q, k, v), grad)
    for a, b in zip(have, want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_gradcheck_in_float64_with_and_without_dropout():
    q, k, v = qkv(11, 11, B=1, H=2, D=4, dtype=torch.float64)
    for dropout_p in (0.0, 0.3):  # a fixed seed draws the same masks in every call gradcheck makes
        assert torch.autograd.gradcheck(lambda a, b, c: _TiledAttention.apply(a, b, c, 6, dropout_p, 123, 4),
                                        (q, k, v))


def test_dropout_drops_about_p_of_the_weights_and_follows_the_seed():
    q, k, v = qkv(64, 64, B=1, H=1, D=4)
    v = torch.ones_like(v)  # then each output is the sum of the kept, rescaled weights of its row
    torch.manual_seed(0)
    a = tiled_attention(q, k, v, dropout_p=0.5, tile=16)
    torch.manual_seed(0)
    assert torch.equal(a, tiled_attention(q, k, v, dropout_p=0.5, tile=16))
    assert not torch.equal(a, tiled_attention(q, k, v, dropout_p=0.5, tile=16))
    assert a[..., 0].mean().item() == pytest.approx(1.0, abs=0.15)  # unbiased: 1 on average


def test_bfloat16_inputs_come_back_in_bfloat16():
    q, k, v = (t.detach().bfloat16() for t in qkv(20))
    out = tiled_attention(q, k, v, tile=8)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), attend(q.float(), k.float(), v.float()), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("settings", [{}, {"pos_emb": "rope", "qk_norm": True}])
def test_a_gpt_with_tiled_attention_matches_the_explicit_one(settings):
    explicit = GPT(small_config(attention="explicit", block_size=40, **settings))
    tiled = GPT(small_config(attention="tiled", block_size=40, **settings))
    tiled.load_state_dict(explicit.state_dict())
    idx = torch.randint(0, 65, (2, 40))
    (a, la), (b, lb) = explicit(idx, idx), tiled(idx, idx)
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    la.backward()
    lb.backward()
    for (name, p), q in zip(explicit.named_parameters(), tiled.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_a_bad_tile_is_refused():
    q, k, v = qkv(4)
    with pytest.raises(ValueError, match="tile"):
        tiled_attention(q, k, v, tile=0)
