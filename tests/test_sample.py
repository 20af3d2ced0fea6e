import pytest
import torch

from gptcore.errors import UnknownCharactersError
from gptcore.models import GPT
from gptcore.inference.draft import NgramDraft
from gptcore.inference.sampling import (
    SamplingParams, choose_tokens, generate, next_token_distribution, next_token_probs, stream_tokens,
)
from gptcore.tokenizers import CharTokenizer
from tests.conftest import small_config


@pytest.fixture(params=[{}, {"qk_norm": True}, {"pos_emb": "rope", "qk_norm": True}], ids=["plain", "qk_norm", "rope"])
def model(request, device):
    torch.manual_seed(1)
    m = GPT(small_config(block_size=16, **request.param)).eval()
    with torch.no_grad():  # sharper than at init, so that sampling choices are not all ties
        for p in m.parameters():
            p.mul_(8)
    return m.to(device)


SAMPLING = [
    SamplingParams(temperature=0, max_new_tokens=60),
    SamplingParams(temperature=1.0, max_new_tokens=60, seed=5),
    SamplingParams(temperature=0.7, top_k=5, top_p=0.9, max_new_tokens=60, seed=11),
]


def fitted_draft(model) -> NgramDraft:
    """A table fit on the model's own samples: right often enough, wrong often enough."""
    ids = list(stream_tokens(model, [0], SamplingParams(temperature=1.0, max_new_tokens=400, seed=0)))
    return NgramDraft.fit(torch.tensor(ids), vocab_size=model.config.vocab_size, order=3)


@pytest.mark.parametrize("params", SAMPLING)
@pytest.mark.parametrize("with_draft", [False, True], ids=["one-by-one", "draft"])
def test_cache_gives_identical_tokens(model, params, with_draft):
    prompt = list(range(10))
    draft = fitted_draft(model) if with_draft else None
    # 60 new tokens with block 16: the window slides and the cache is rebuilt several times
    cached = list(stream_tokens(model, prompt, params, use_cache=True, draft=draft))
    uncached = list(stream_tokens(model, prompt, params, use_cache=False, draft=draft))
    assert len(cached) == 60
    assert cached == uncached


def test_greedy_text_is_the_same_with_the_draft_in_fewer_passes(model):
    params = SamplingParams(temperature=0, max_new_tokens=60)
    plain = list(stream_tokens(model, list(range(10)), params))
    draft = fitted_draft(model)
    passes = []
    decode = model.decode
    model.decode = lambda tokens, cache: passes.append(len(tokens)) or decode(tokens, cache)
    drafted = list(stream_tokens(model, list(range(10)), params, draft=draft))
    assert drafted == plain
    assert len(passes) < 60 and max(passes) == 5  # guesses were checked, and some were kept


@pytest.mark.parametrize("use_cache", [True, False], ids=["cached", "uncached"])
def test_the_first_token_comes_from_the_prompts_own_pass(model, use_cache):
    """Time to the first token is one pass over the prompt: no pass checking guesses comes before it."""
    passes = []
    forward, decode = model.forward, model.decode
    model.forward = lambda *a, **k: passes.append("forward") or forward(*a, **k)
    model.decode = lambda tokens, cache: passes.append("decode") or decode(tokens, cache)
    stream = stream_tokens(model, list(range(12)), SamplingParams(temperature=0.8, max_new_tokens=20, seed=3),
                           use_cache=use_cache, draft=fitted_draft(model))
    passes.clear()  # fitting the draft sampled from the model too
    next(stream)
    assert passes == ["forward"]
    assert len(list(stream)) == 19


def test_speculative_choice_keeps_the_model_distribution():
    """Whatever the guesses, the first token is distributed as p0 and the second (after a kept first
    guess) as p1: counted over many draws with a fixed seed."""
    p = torch.tensor([[0.5, 0.3, 0.2, 0.0], [0.1, 0.1, 0.1, 0.7], [0.25, 0.25, 0.25, 0.25]])
    params = SamplingParams(temperature=1.0)
    generator = torch.Generator().manual_seed(0)
    n = 20_000
    for guesses in ([0, 3], [1, 0], [3, 2]):
        first, second = torch.zeros(4), torch.zeros(4)
        for _ in range(n):
            out = choose_tokens(p.log(), guesses, params, generator)
            first[out[0]] += 1
            if len(out) > 1:
                second[out[1]] += 1
        assert torch.allclose(first / n, p[0], atol=0.015), (guesses, first / n)
        if second.sum():
            assert torch.allclose(second / second.sum(), p[1], atol=0.03), (guesses, second / second.sum())


def test_greedy_choice_keeps_guesses_up_to_the_first_miss():
    logits = torch.eye(4)[[2, 0, 1, 3]] * 5
    params, generator = SamplingParams(temperature=0), torch.Generator()
    assert choose_tokens(logits, [2, 0, 3], params, generator) == [2, 0, 1]
    assert choose_tokens(logits, [2, 0, 1], params, generator) == [2, 0, 1, 3]
    assert choose_tokens(logits[:1], [], params, generator) == [2]


def test_seed_makes_sampling_reproducible(model):
    p = SamplingParams(temperature=1.0, max_new_tokens=30, seed=3)
    assert list(stream_tokens(model, [1, 2], p)) == list(stream_tokens(model, [1, 2], p))
    other = SamplingParams(temperature=1.0, max_new_tokens=30, seed=4)
    assert list(stream_tokens(model, [1, 2], p)) != list(stream_tokens(model, [1, 2], other))


def test_long_prompt_is_cropped_from_the_left(model):
    p = SamplingParams(temperature=0, max_new_tokens=5)
    tail = list(range(16))
    assert list(stream_tokens(model, list(range(40, 60)) + tail, p)) == list(stream_tokens(model, tail, p))


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": -0.1}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_k": 0}, "top_k"),
    ({"max_new_tokens": -1}, "max_new_tokens"),
    ({"seed": 1.5}, "seed"),
])
def test_bad_parameters_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingParams(**kwargs).validate()


def test_top_k_and_top_p_filter_the_distribution():
    logits = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0])
    probs = next_token_probs(logits, SamplingParams(top_k=2))
    assert (probs > 0).sum() == 2 and torch.isclose(probs.sum(), torch.tensor(1.0))
    full = logits.softmax(-1)
    probs = next_token_probs(logits, SamplingParams(top_p=0.7))
    assert (probs > 0).sum() == 2 and full[0] < 0.7 <= full[:2].sum()
    greedy = next_token_probs(logits, SamplingParams(temperature=0))
    assert greedy.tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_text_generation_and_unknown_characters(model):
    tok = CharTokenizer([chr(c) for c in range(32, 97)])
    text = generate(model, tok, "AB", SamplingParams(max_new_tokens=20, seed=0))
    assert len(text) == 20 and set(text) <= set(tok.chars)
    with pytest.raises(UnknownCharactersError, match="'é'"):
        generate(model, tok, "café", SamplingParams(max_new_tokens=5))
    assert len(generate(model, tok, "café", SamplingParams(max_new_tokens=5), policy="drop")) == 5
    dist = next_token_distribution(model, tok, "AB", SamplingParams(top_k=3))
    assert len(dist) == 65 and sum(p for _, p in dist[:3]) == pytest.approx(1.0) and dist[3][1] == 0.0


def test_empty_prompt_starts_from_newline(corpus):
    torch.manual_seed(0)
    model = GPT(small_config()).eval()
    p = SamplingParams(temperature=0, max_new_tokens=8)
    assert generate(model, corpus.tokenizer, "", p) == generate(model, corpus.tokenizer, "\n", p)


def test_a_relative_position_model_slides_its_cache_instead_of_rebuilding_it():
    torch.manual_seed(1)
    model = GPT(small_config(block_size=16, pos_emb="rope", qk_norm=True)).eval()
    calls = []
    forward = model.forward
    model.forward = lambda *a, **k: calls.append(k.get("cache") is not None) or forward(*a, **k)
    params = SamplingParams(temperature=0, max_new_tokens=60)
    sliding = list(stream_tokens(model, list(range(10)), params))
    assert calls == [True]  # one prefill, then only decode passes: never rebuilt
    calls.clear()
    rebuilt = list(stream_tokens(model, list(range(10)), params, slide=False))
    assert len(calls) > 1 and len(sliding) == len(rebuilt) == 60
    with pytest.raises(ValueError, match="cannot slide"):
        list(stream_tokens(GPT(small_config(block_size=16)).eval(), [0], params, slide=True))


def test_the_sliding_window_mask_and_cache():
    from gptcore.models.causal import causal_mask
    from gptcore.models.kv_cache import KVCache

    band = causal_mask(3, 6, window=4)
    assert band.tolist() == [[1, 1, 1, 1, 0, 0], [0, 1, 1, 1, 1, 0], [0, 0, 1, 1, 1, 1]]
    assert torch.equal(causal_mask(3, 6, hidden=True, window=4), ~band)
    assert torch.equal(causal_mask(3, 4, window=4), causal_mask(3, 4))  # inside the window: plain causal
    cache = KVCache(small_config(block_size=4, n_layer=1), 1, extra=2)
    cache.update(0, torch.arange(5.0).view(1, 1, 5, 1).expand(1, 2, 5, 16), torch.zeros(1, 2, 5, 16))
    cache.length = 5
    cache.slide(2)
    assert cache.length == 3 and cache.start == 2 and cache.k[0, 0, 0, :3, 0].tolist() == [2.0, 3.0, 4.0]
