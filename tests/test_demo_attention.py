"""Attention tab: head-role descriptions on constructed matrices, and figures from a real tiny GPT."""

from __future__ import annotations

import base64
import re

import gradio as gr
import numpy as np
import pytest
import torch

from demo.server import registry as registry_module
from demo.tabs.attention import (ALL, AVERAGE, attention_view, attention_weights, compute_maps, head_choices,
                            layer_choices, select_head, show_attention)
from gptcore.head_roles import head_role, target_shares
from demo.server.registry import ModelRegistry
from demo.server.settings import Limits
from demo.views.html import packed_weights
from demo_support import view_data

LIMITS = Limits()
TEXT = "to be or not to be\nthat is it"


def unpacked_weights(packed: str, T: int) -> np.ndarray:
    """What interactive.js reads out of packed_weights, in Python: a (T, T) matrix, zero above the diagonal."""
    out = np.zeros((T, T))
    out[np.tril_indices(T)] = np.frombuffer(base64.b64decode(packed), dtype="<u2") / 65535
    return out


def _rows_attending(T: int, target) -> np.ndarray:
    probs = np.zeros((T, T))
    for i in range(T):
        probs[i, target(i)] = 1.0
    return probs


def test_previous_character_head_is_named():
    role = head_role(_rows_attending(len(TEXT), lambda i: max(i - 1, 0)), TEXT)
    assert role.description == "attends to the previous character" and role.share == pytest.approx(1.0)


def test_first_character_head_is_named():
    assert head_role(_rows_attending(len(TEXT), lambda i: 0), TEXT).description == "attends to the first character"


def test_last_space_head_is_named():
    last_space = lambda i: max([j for j in range(i) if TEXT[j] == " "], default=i)  # noqa: E731
    assert head_role(_rows_attending(len(TEXT), last_space), TEXT).description == "attends to the last space"


def test_uniform_head_is_called_an_average():
    T = len(TEXT)
    uniform = np.tril(np.ones((T, T)))
    uniform /= uniform.sum(1, keepdims=True)
    role = head_role(uniform, TEXT)
    assert role.broad and "evenly over every earlier character" in role.description
    assert "entropy is 100%" in role.line()


def test_a_head_without_a_pattern_says_so_and_names_its_favourite_keys():
    text = TEXT * 4
    T, rng = len(text), np.random.default_rng(0)
    scattered = np.zeros((T, T))
    for i in range(T):  # a few random earlier positions, nothing systematic
        keys = rng.choice(i + 1, size=min(i + 1, 3), replace=False)
        scattered[i, keys] = rng.dirichlet(np.ones(len(keys)))
    role = head_role(scattered, text)
    assert role.broad and "no single pattern" in role.description
    assert "most of it on" in role.line() and role.line().count("%") == 4


def test_a_head_that_prefers_a_kind_of_token_is_named():
    text = "the cat sat, the dog ran; " * 4
    marks = [j for j, c in enumerate(text) if c in ",;"]
    prefers = np.zeros((len(text), len(text)))
    for i in range(len(text)):
        seen = [j for j in marks if j <= i]
        if seen:  # 60% on the punctuation marks and newlines seen so far, the rest spread
            prefers[i, seen] += 0.6 / len(seen)
            prefers[i, :i + 1] += 0.4 / (i + 1)
        else:
            prefers[i, :i + 1] = 1.0 / (i + 1)
    role = head_role(prefers, text)
    assert role.description == "prefers punctuation marks"
    assert "their share of the text" in role.line()


def test_shares_need_a_matching_text():
    with pytest.raises(ValueError, match="does not match"):
        target_shares(np.eye(4), "abc")


@pytest.fixture(scope="module")
def registry(demo_checkpoints) -> ModelRegistry:
    return ModelRegistry(demo_checkpoints, demo_checkpoints / "no-runs", default="tiny")


def _weights(view_html: str, T: int) -> np.ndarray:
    return unpacked_weights(re.search(r'data-weights="([^"]*)"', view_html).group(1), T)


def test_packed_weights_keep_the_lower_triangle_to_within_a_65535th():
    w = np.tril(np.random.default_rng(0).random((7, 7)))
    assert np.abs(unpacked_weights(packed_weights(w), 7) - w).max() <= 0.5 / 65535 + 1e-12
    assert len(packed_weights(w)) == 4 * -(-2 * 28 // 3)  # 28 weights of 2 bytes, base64


def test_a_single_head_is_an_interactive_view_of_its_weights(registry):
    view = attention_view(registry, LIMITS, "tiny", "to be\nor", "1", "2")
    assert view.figure is None and "layer 1, head 2" in view.html
    assert view_data(view.html, "pieces") == list("to be\nor")
    assert view_data(view.html, "labels") == ["t", "o", "␣", "b", "e", "↵", "o", "r"]
    weights = _weights(view.html, 8)
    expected = compute_maps(registry.get("tiny"), "to be\nor").maps[0][1]
    assert np.allclose(weights, expected, atol=1e-4)  # the future (above the diagonal) is not sent: zero
    assert view.html.count('class="gc-tok"') == 8 and "<canvas" in view.html
    assert [row[:2] for row in view.roles] == [[1, 1], [1, 2]]  # roles of layer 1's two heads only


def test_a_single_head_carries_its_scores_and_an_average_does_not(registry):
    from demo.views.html import packed_scores

    view = attention_view(registry, LIMITS, "tiny-bpe-rope", TEXT, "2", "1")
    ck = registry.get("tiny-bpe-rope")
    ids = ck.tokenizer.encode(TEXT)
    scores = ck.model.attention_scores(torch.tensor([ids]))[1][0, 0].numpy()
    assert f'data-scores="{packed_scores(scores)}"' in view.html and 'class="gc-steps"' in view.html
    assert "data-scores" not in attention_view(registry, LIMITS, "tiny", TEXT, "1", AVERAGE).html


def test_packed_scores_keep_three_digits():
    from demo.views.html import packed_scores

    s = np.tril(np.random.default_rng(1).normal(scale=4, size=(6, 6)))
    back = np.frombuffer(base64.b64decode(packed_scores(s)), dtype="<f2").astype(np.float64)
    assert np.allclose(back, s[np.tril_indices(6)], rtol=1e-3, atol=1e-3)


def test_text_in_a_view_is_escaped(registry):
    view = attention_view(registry, LIMITS, "tiny-bpe-rope", "<b>x</b>&amp;", "1", "1")
    assert "<b>x" not in view.html and ">&lt;</span>" in view.html  # escaped in the token boxes
    assert "".join(view_data(view.html, "pieces")) == "<b>x</b>&amp;"


def test_grids_and_averages(registry):
    view = attention_view(registry, LIMITS, "tiny", TEXT, "2", ALL)
    assert view.html is None and len(view.figure.axes) == 2 + 1  # two heads and a colour bar
    view = attention_view(registry, LIMITS, "tiny", TEXT, "1", AVERAGE)
    assert "average of 2 heads" in view.html
    expected = compute_maps(registry.get("tiny"), TEXT).maps[0].mean(0)
    assert np.allclose(_weights(view.html, len(TEXT))[-1], expected[-1], atol=1e-4)
    view = attention_view(registry, LIMITS, "tiny", TEXT, ALL, ALL)
    assert len(view.figure.axes) == 2 * 2 + 1
    assert len(view.roles) == 4  # every layer x head described
    view = attention_view(registry, LIMITS, "tiny", TEXT, ALL, AVERAGE)
    assert len(view.figure.axes) == 2 + 1


def test_the_event_shows_one_of_view_and_picture(registry):
    view, plot, roles, notes = show_attention(registry, LIMITS, "tiny", TEXT, "1", "1")
    assert view["visible"] and not plot["visible"] and len(roles) == 2 and notes == ""
    view, plot, _, _ = show_attention(registry, LIMITS, "tiny", TEXT, ALL, ALL)
    assert not view["visible"] and plot["visible"]


def test_the_weights_api_gives_numbers(registry):
    out = attention_weights(registry, LIMITS, "tiny", TEXT, 2, 1)
    assert out["tokens"] == list(TEXT) and len(out["weights"][-1]) == len(TEXT)
    assert out["weights"][-1] == pytest.approx(compute_maps(registry.get("tiny"), TEXT).maps[1][0][-1], abs=1e-5)
    assert out["role"]
    assert np.allclose(np.exp(out["scores"][-1]) / np.exp(out["scores"][-1]).sum(), out["weights"][-1], atol=1e-3)
    with pytest.raises(gr.Error, match="head must be one of 1-2"):
        attention_weights(registry, LIMITS, "tiny", TEXT, 1, 3)


def test_a_row_of_the_roles_table_selects_its_head():
    class Pick:
        row_value, index = [2, 1, "attends to the previous character"], [3, 2]
    assert select_head(None, Pick()) == ("2", "1")


def test_long_text_is_cropped_with_a_notice(registry):
    ck = registry.get("tiny")
    am = compute_maps(ck, "abcdefghij" * 10)
    assert len(am.text) == ck.config.model.block_size == 32
    assert am.maps[0].shape == (2, 32, 32)
    notes = attention_view(registry, LIMITS, "tiny", "abcdefghij" * 10, "1", "1").notes
    assert "Cropped" in notes and "first 32 of 100 characters" in notes


def test_unknown_characters_are_replaced_with_a_notice(registry):
    notes = attention_view(registry, LIMITS, "tiny", "naïve", "1", "1").notes
    assert "'ï'" in notes and "replaced with spaces" in notes


@pytest.mark.parametrize("checkpoint, text, layer, head, message", [
    ("bigram", TEXT, "1", "1", "no attention"),
    ("tiny", "", "1", "1", "type some text"),
    ("tiny", TEXT, "3", "1", "layer must be one of 1-2, all"),
    ("tiny", TEXT, "1", "0", "head must be one of 1-2, all, average"),
    ("tiny", TEXT, "one", "1", "layer must be"),
    ("damaged", TEXT, "1", "1", "damaged"),
    ("missing", TEXT, "1", "1", "unknown checkpoint"),
])
def test_bad_input_is_a_clear_error(registry, checkpoint, text, layer, head, message):
    with pytest.raises(gr.Error, match=message):
        show_attention(registry, LIMITS, checkpoint, text, layer, head)


def test_selector_choices_match_the_model():
    assert [v for _, v in layer_choices(2)] == ["1", "2", ALL]
    assert [v for _, v in head_choices(2)] == [ALL, AVERAGE, "1", "2"]


def test_registry_lists_checkpoints_and_knows_the_file_names(registry):
    from gptcore import checkpoint
    from gptcore.experiments.arm_models import MODELS_DIR

    assert (registry_module.CONFIG, registry_module.WEIGHTS, registry_module.LEGACY_WEIGHTS, registry_module.METRICS,
            registry_module.MANIFEST, registry_module.ARM_MODELS) == (
        checkpoint.CONFIG, checkpoint.WEIGHTS, checkpoint.LEGACY_WEIGHTS, checkpoint.METRICS, checkpoint.MANIFEST,
        MODELS_DIR)
    assert registry.names() == ["tiny", "bigram", "brief", "damaged", "tiny-bpe-rope"]  # the default first
    assert "bigram" not in registry.names(attention_only=True)
    assert registry.get("tiny") is registry.get("tiny")  # cached


def test_a_bpe_rope_model_is_labelled_by_token_pieces(registry):
    ck = registry.get("tiny-bpe-rope")
    text = "Wherefore art thou"
    view = attention_view(registry, LIMITS, "tiny-bpe-rope", text, "1", "1")
    labels = view_data(view.html, "labels")
    pieces = [ck.tokenizer.piece(i) for i in ck.tokenizer.encode(text)]
    assert len(labels) == len(pieces) < len(text)  # fewer tokens than characters
    assert "".join(labels) == text.replace(" ", "␣") and any(len(p) > 1 for p in pieces)
    assert 'data-unit="token"' in view.html
    assert all("token" in row[2] or "every earlier" in row[2] or "prefers" in row[2] for row in view.roles)


def test_a_bpe_model_crops_in_tokens(registry):
    ck = registry.get("tiny-bpe-rope")
    am = compute_maps(ck, "the king and the queen " * 20)
    assert len(am.pieces) == ck.config.model.block_size == am.maps[0].shape[-1]
    assert "".join(am.pieces) == am.text
    assert any("tokens" in n and "Cropped" in n for n in am.notices)


def test_head_roles_on_token_pieces():
    pieces = [" the", " king", "dom", " and", " the", " queen"]
    role = head_role(_rows_attending(len(pieces), lambda i: max(i - 1, 0)), pieces)
    assert role.description == "attends to the previous token"
    words = [" the", " king", "dom", "s", " and", "ing"]  # "dom" and "s" continue " king", "ing" " and"
    shares = target_shares(_rows_attending(6, lambda i: {2: 1, 3: 1, 5: 4}.get(i, 0)), words)
    assert shares["the start of the current word"] == pytest.approx(1.0)


def test_induction_line_start_and_recent_heads_are_named():
    text = "abcd" + chr(10) + "xabcy abc"  # a newline, then repeats of "abc"
    T = len(text)

    def induction(i):
        j = text.rfind(text[i], 0, i)
        return j + 1 if j >= 0 and j + 1 < i else i
    role = head_role(_rows_attending(T, induction), text)
    assert "induction" in role.description
    recent = np.zeros((T, T))
    for i in range(T):
        lo = max(0, i - 3)
        recent[i, lo:i + 1] = 1.0 / (i + 1 - lo)
    assert head_role(recent, text).description == "attends within the last 4 characters"


def test_the_views_hints_speak_to_touch_screens_too():
    """On a phone there is no hover: every hint that says hover also says tap."""
    from demo.views.explain import TEXTS
    from demo.views.html import ATTENTION_HINT, loss_change_html

    texts = [ATTENTION_HINT, *TEXTS.values(), loss_change_html(["a", "b", "c"], np.zeros(2), np.ones(2), "character")]
    said = [t for t in texts if "hover" in t.lower()]
    assert said and all("tap" in t.lower() for t in said), [t[:100] for t in said if "tap" not in t.lower()]
