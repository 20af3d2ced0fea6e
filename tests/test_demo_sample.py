"""Sample tab event functions on real tiny checkpoints: streaming, seeds, bad input, next-character chart."""

from __future__ import annotations

import gradio as gr
import pytest

from demo.server.registry import ModelRegistry
from demo.tabs.sample import POLICIES, checkpoint_info, on_generate, on_next_token_chart, sampling_params
from demo.server.settings import Limits
from gptcore.inference.sampling import MAX_NEW_TOKENS
from demo.server.inputs import NamedSlider
from demo.views.tokens import visible_piece

LIMITS = Limits()


@pytest.fixture(scope="module")
def registry(demo_checkpoints) -> ModelRegistry:
    return ModelRegistry(demo_checkpoints, demo_checkpoints / "no-runs", default="tiny")


def run(registry, prompt="ROMEO:", temperature=0.8, top_k=0, top_p=1.0, n=200, seed=7, unknown="replace",
        checkpoint="tiny"):
    return list(on_generate(registry, LIMITS, checkpoint, prompt, temperature, top_k, top_p, n, seed, unknown))


def test_generate_streams_the_prompt_then_the_continuation(registry):
    updates = run(registry, n=300)
    text, status = updates[-1]
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 300
    assert "300 characters" in status and "chars/s" in status and "seed 7" in status
    assert updates[0][0] == "ROMEO:"  # the prompt shows at once
    growing = [len(t) for t, _ in updates]
    assert growing == sorted(growing)
    assert len(updates) < 60  # throttled: nowhere near one update per character


def test_same_seed_same_text_and_a_random_seed_is_reported(registry):
    assert run(registry, seed=3)[-1][0] == run(registry, seed=3)[-1][0]
    first, second = (run(registry, seed=-1, n=20)[-1][1] for _ in range(2))
    assert "seed " in first and "seed -1" not in first and first != second


def test_empty_prompt_starts_from_a_newline(registry):
    updates = run(registry, prompt="", n=50)
    assert "starting from a newline" in updates[0][1]
    assert len(updates[-1][0]) == 50


@pytest.mark.parametrize("policy, expected", [("replace", "ROMEO "), ("drop", "ROMEO")])
def test_unknown_characters_are_replaced_or_dropped_with_a_notice(registry, policy, expected):
    with pytest.warns(UserWarning, match="does not know '€'"):  # gr.Warning, outside a request
        updates = run(registry, prompt="ROMEO€", n=10, unknown=policy)
    assert updates[-1][0].startswith(expected)
    assert "'€'" in updates[-1][1]


def test_unknown_characters_refused_when_strict(registry):
    with pytest.raises(gr.Error, match="does not know.*'€'"):
        run(registry, prompt="ROMEO€", unknown="strict")


@pytest.mark.parametrize("change, message", [
    (dict(temperature=2.5), "temperature must be a number between 0 and 2"),
    (dict(temperature=-1), "temperature"),
    (dict(top_p=0.0), "top-p must be a number between 0.01 and 1"),
    (dict(top_k=-1), "top-k \\(0 = no limit\\) must be a whole number between 0 and 200"),
    (dict(n=0), "max new tokens must be a whole number between 1 and 2,000"),
    (dict(n=5000), "max new tokens"),
    (dict(seed=1.5), "seed \\(-1 = random\\) must be a whole number"),
    (dict(seed=-2), "seed \\(-1 = random\\) must be a whole number between -1 and"),
    (dict(seed=float("nan")), "seed .* got nan"),
    (dict(seed=True), "seed .* got True"),
    (dict(prompt="a\ud800"), "lone surrogate \\(U\\+D800\\) at character 1"),
    (dict(checkpoint="x" * 100_000), "unknown checkpoint 'x{70}"),
    (dict(unknown="ignore"), "unknown-character handling"),
    (dict(checkpoint="nope"), "unknown checkpoint 'nope'; available: tiny"),
    (dict(checkpoint="damaged"), "damaged"),
])
def test_bad_input_is_a_clear_error(registry, change, message):
    with pytest.raises(gr.Error, match=message):
        run(registry, **change)


def test_greedy_is_deterministic_without_a_seed(registry):
    assert run(registry, temperature=0, seed=None)[-1][0] == run(registry, temperature=0, seed=None)[-1][0]


def test_next_token_probs_are_the_top_ten_sorted(registry):
    frame = on_next_token_chart(registry, LIMITS, "tiny", "ROMEO:\n", 1.0, 0, 1.0)
    assert list(frame.columns) == ["next character", "probability"]
    probs = frame["probability"].tolist()
    assert len(probs) == 10 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_next_token_probs_follow_temperature_and_top_k(registry):
    greedy = on_next_token_chart(registry, LIMITS, "tiny", "ROMEO:\n", 0, 0, 1.0)
    assert greedy["probability"].tolist() == [1.0]
    top3 = on_next_token_chart(registry, LIMITS, "tiny", "ROMEO:\n", 1.0, 3, 1.0)
    assert len(top3) == 3 and abs(top3["probability"].sum() - 1) < 1e-4


def test_next_token_probs_show_whitespace_visibly(registry):
    frame = on_next_token_chart(registry, LIMITS, "tiny", "", 1.0, 0, 1.0, top=65)
    assert "␣" in frame["next character"].tolist() and " " not in frame["next character"].tolist()
    assert visible_piece("\n") == "↵" and visible_piece("a") == "a"


def test_the_bigram_samples_too(registry):
    assert len(run(registry, checkpoint="bigram", n=30)[-1][0]) == len("ROMEO:") + 30


def test_sampling_params_top_k_zero_means_no_limit():
    assert sampling_params(0.8, 0, 1.0, 10, 1, LIMITS).top_k is None
    assert sampling_params(0.8, 5, 1.0, 10, 1, LIMITS).top_k == 5


def test_named_slider_names_itself_in_errors():
    with gr.Blocks():
        slider = NamedSlider(0, 2, value=1, label="temperature")
    with pytest.raises(gr.Error, match="temperature must be between 0 and 2, got 3"):
        slider.preprocess(3)
    with pytest.raises(gr.Error, match="temperature must be a number"):
        slider.preprocess("hot")
    assert slider.preprocess(1.5) == 1.5
    assert slider.get_block_name() == "slider"


def test_policies_are_the_tokenizers():
    from gptcore.tokenizers import UNKNOWN_POLICIES

    assert sorted(v for _, v in POLICIES) == sorted(UNKNOWN_POLICIES)


def test_checkpoint_info_describes_or_explains(registry):
    assert checkpoint_info(registry, "tiny").startswith("**tiny** · GPT, 2 layers × 2 heads, width 32")
    assert "30,656 parameters" in checkpoint_info(registry, "tiny")
    assert checkpoint_info(registry, "damaged").startswith("**Cannot use damaged:**")
    assert "train one" in checkpoint_info(registry, None)


def test_a_bpe_rope_model_streams_whole_characters_and_charts_pieces(registry):
    text, status = run(registry, checkpoint="tiny-bpe-rope", n=60, seed=5)[-1]
    assert text.startswith("ROMEO:") and "\ufffd" not in text[:6]
    assert f"{len(text) - len('ROMEO:')} characters" in status
    frame = on_next_token_chart(registry, LIMITS, "tiny-bpe-rope", "To be or not to", 1.0, 0, 1.0)
    assert len(frame) == 10 and any(len(p) > 1 for p in frame.iloc[:, 0])
    assert "token" in checkpoint_info(registry, "tiny-bpe-rope") and "(bpe)" in checkpoint_info(registry, "tiny-bpe-rope")


def test_stop_and_long_prompts_say_what_happened(registry):
    from demo.tabs.sample import context_note, stopped_status

    assert stopped_status("Generating… 825 characters") == "Stopped after 825 characters."
    assert stopped_status("note. Generating…") == "note. Stopped after 0 characters."
    assert stopped_status("300 characters in 1.2 s") == "300 characters in 1.2 s"  # finished: left alone
    ck = registry.get("tiny")  # a context of 32 characters
    assert context_note(ck, "short") == ""
    long = "abcdefghij" * 5
    note = context_note(ck, long)
    assert "50 characters" in note and "only its last 32" in note and long[-32:][:20] in note
    _, status = run(registry, prompt=long, n=5)[-1]
    assert "only its last 32" in status


def test_a_host_sets_the_longest_generation_and_a_bad_value_is_named(monkeypatch):
    monkeypatch.setenv("GPTCORE_MAX_NEW_TOKENS", "50000")
    assert Limits().max_new_tokens == 50000
    for bad in ["lots", "0", str(MAX_NEW_TOKENS + 1)]:  # past the library's own bound, every generation would fail
        monkeypatch.setenv("GPTCORE_MAX_NEW_TOKENS", bad)
        with pytest.raises(ValueError, match=f"GPTCORE_MAX_NEW_TOKENS must be a whole number from 1 to "
                                             f"{MAX_NEW_TOKENS:,}, got '{bad}'"):
            Limits()
    monkeypatch.delenv("GPTCORE_MAX_NEW_TOKENS")
    assert Limits().max_new_tokens == 2000
