"""Attention tab: head-role descriptions on constructed matrices, and figures from a real tiny GPT."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest

from demo import registry as registry_module
from demo.attention import ALL, AVERAGE, attention, compute_maps, head_choices, layer_choices
from demo.head_roles import head_role, target_shares
from demo.registry import ModelRegistry
from demo.settings import Limits
from demo_support import make_checkpoints

LIMITS = Limits()
TEXT = "to be or not to be\nthat is it"


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


def test_uniform_head_is_called_broad():
    T = len(TEXT)
    uniform = np.tril(np.ones((T, T)))
    uniform /= uniform.sum(1, keepdims=True)
    role = head_role(uniform, TEXT)
    assert role.description.startswith("spreads its attention") and role.share < 0.3
    assert "largest weight averages" in role.line()


def test_shares_need_a_matching_text():
    with pytest.raises(ValueError, match="does not match"):
        target_shares(np.eye(4), "abc")


@pytest.fixture(scope="module")
def registry(tmp_path_factory, corpus) -> ModelRegistry:
    root = make_checkpoints(tmp_path_factory.mktemp("ckpts"), corpus)
    return ModelRegistry(root, root / "no-runs", default="tiny")


def test_single_head_figure_has_characters_mask_and_colour_bar(registry):
    fig, notes = attention(registry, LIMITS, "tiny", "to be\nor", "1", "2")
    ax, colour_bar = fig.axes  # the heatmap and its colour bar
    labels = [t.get_text() for t in ax.texts]  # x and y labels, interleaved
    assert labels[::2] == labels[1::2] == ["t", "o", "␣", "b", "e", "↵", "o", "r"]
    data = ax.images[0].get_array()
    assert data.mask[0, 1] and not data.mask[1, 0]  # the future is masked, the past is not
    assert "head 2" in ax.get_title()
    assert notes.count("\n| 1 |") == 2 and "\n| 2 |" not in notes  # roles of layer 1's two heads only


def test_all_heads_average_and_model_wide_views(registry):
    fig, _ = attention(registry, LIMITS, "tiny", TEXT, "2", ALL)
    assert len(fig.axes) == 2 + 1  # two heads and a colour bar
    fig, _ = attention(registry, LIMITS, "tiny", TEXT, "1", AVERAGE)
    assert "average of 2 heads" in fig.axes[0].get_title()
    fig, notes = attention(registry, LIMITS, "tiny", TEXT, ALL, ALL)
    assert len(fig.axes) == 2 * 2 + 1
    assert notes.count("\n| ") == 4  # every layer x head described
    fig, _ = attention(registry, LIMITS, "tiny", TEXT, ALL, AVERAGE)
    assert len(fig.axes) == 2 + 1


def test_long_text_is_cropped_with_a_notice(registry):
    ck = registry.get("tiny")
    am = compute_maps(ck, "abcdefghij" * 10)
    assert len(am.text) == ck.config.model.block_size == 32
    assert am.maps[0].shape == (2, 32, 32)
    _, notes = attention(registry, LIMITS, "tiny", "abcdefghij" * 10, "1", "1")
    assert "Cropped" in notes and "first 32 of 100 characters" in notes


def test_unknown_characters_are_replaced_with_a_notice(registry):
    _, notes = attention(registry, LIMITS, "tiny", "naïve", "1", "1")
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
        attention(registry, LIMITS, checkpoint, text, layer, head)


def test_selector_choices_match_the_model():
    assert [v for _, v in layer_choices(2)] == ["1", "2", ALL]
    assert [v for _, v in head_choices(2)] == [ALL, AVERAGE, "1", "2"]


def test_registry_lists_checkpoints_and_knows_the_file_names(registry):
    from gptcore import checkpoint

    assert (registry_module.CONFIG, registry_module.WEIGHTS, registry_module.LEGACY_WEIGHTS, registry_module.METRICS,
            registry_module.MANIFEST) == (checkpoint.CONFIG, checkpoint.WEIGHTS, checkpoint.LEGACY_WEIGHTS,
                                          checkpoint.METRICS, checkpoint.MANIFEST)
    assert registry.names() == ["tiny", "bigram", "damaged", "tiny-bpe-rope"]  # the default first
    assert "bigram" not in registry.names(attention_only=True)
    assert registry.get("tiny") is registry.get("tiny")  # cached


def test_a_full_context_of_256_is_labelled_by_position():
    from demo.plots import MAX_LABELLED_CHARS, heatmap_figure

    for T, labelled in ((MAX_LABELLED_CHARS, True), (256, False)):
        fig = heatmap_figure(np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None], "ab" * (T // 2), "head 1")
        ax = fig.axes[0]
        assert (len(ax.texts) == 2 * T) == labelled
        assert ("shorten the text" in ax.get_title()) != labelled
        assert bool(len(ax.get_xticks())) != labelled  # positions on the axes instead of characters


def test_a_bpe_rope_model_is_labelled_by_token_pieces(registry):
    ck = registry.get("tiny-bpe-rope")
    text = "Wherefore art thou"
    fig, notes = attention(registry, LIMITS, "tiny-bpe-rope", text, "1", "1")
    labels = [t.get_text() for t in fig.axes[0].texts][::2]
    pieces = [ck.tokenizer.piece(i) for i in ck.tokenizer.encode(text)]
    assert len(labels) == len(pieces) < len(text)  # fewer tokens than characters
    assert "".join(labels) == text.replace(" ", "␣") and any(len(p) > 1 for p in pieces)
    assert " token" in notes and "character" not in notes


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
    assert head_role(recent, text).description == "spreads its attention over the last 4 characters"
