"""Inside tab on real tiny checkpoints: predictions and surprise, the logit lens, embeddings, heads off.

Each view is checked against gptcore.interpret run directly on the same model, so what the app shows is
what the model does; each data endpoint against its view."""

from __future__ import annotations

import math
import re

import gradio as gr
import numpy as np
import pytest
import torch

from demo.tabs.inside import (each_head, embeddings_api, embeddings_view, head_options, heads_off_api, heads_off_view,
                         logit_lens_api, logit_lens_view, parse_heads, predictions_api, predictions_view)
from demo.views.html import stage_names
from demo.views.plots import MAX_MAP_LABELS, _spread_labels
from demo.server.registry import ModelRegistry
from demo.server.settings import Limits
from demo_support import view_data
from gptcore import interpret

LIMITS = Limits()
TEXT = "to be or not to be\nthat is it"


@pytest.fixture(scope="module")
def registry(demo_checkpoints) -> ModelRegistry:
    return ModelRegistry(demo_checkpoints, demo_checkpoints / "no-runs", default="tiny")


def _ids(registry, name="tiny", text=TEXT):
    return registry.get(name).tokenizer.encode(text)


def test_predictions_colour_each_token_by_its_surprise_and_carry_every_distribution(registry):
    view, notes = predictions_view(registry, LIMITS, "tiny", TEXT)
    model = registry.get("tiny").model
    loss = interpret.surprise(model, _ids(registry))
    assert view.count('class="gc-tok"') == len(TEXT) and notes == ""
    assert f"<b>{loss.mean():.3f} nats</b>" in view
    styles = re.findall(r'class="gc-tok" data-i="\d+" tabindex="0"(?: style="([^"]*)")?', view)
    assert styles[0] == ""  # the first token has nothing to be predicted from
    alphas = [float(re.search(r"([\d.]+)\)$", s).group(1)) for s in styles[1:]]
    assert alphas == pytest.approx(np.clip(loss.numpy() / 5, 0, 1), abs=1e-3)
    top = view_data(view, "top")
    probs = interpret.read_text(model, _ids(registry))[0]
    assert len(top) == len(TEXT) and len(top[0]) == 10
    assert [p for _, p in top[-1]] == pytest.approx(probs[-1].topk(10).values.tolist(), abs=1e-4)
    nexts = view_data(view, "next")
    assert nexts[-1] is None and nexts[0][0] == "o" and nexts[0][2] == pytest.approx(float(loss[0]), abs=1e-3)


def test_the_predictions_api_gives_the_same_numbers(registry):
    out = predictions_api(registry, LIMITS, "tiny", TEXT)
    loss = interpret.surprise(registry.get("tiny").model, _ids(registry))
    assert out["tokens"] == list(TEXT) and len(out["top"]) == len(TEXT) and len(out["top"][0]) == 5
    assert out["surprise"] == pytest.approx(loss.tolist(), abs=1e-4)
    assert out["mean_surprise"] == pytest.approx(float(loss.mean()), abs=1e-5)
    assert sum(p for _, p in out["top"][3]) <= 1.0


def test_the_logit_lens_table_ends_in_the_models_own_prediction(registry):
    view, _ = logit_lens_view(registry, LIMITS, "tiny", TEXT)
    n_layer = registry.get("tiny").config.model.n_layer
    assert view.count("<tr>") == 1 + (n_layer + 1) + 1  # positions, each stage, the truth
    probs = interpret.read_text(registry.get("tiny").model, _ids(registry))[0]
    out = logit_lens_api(registry, LIMITS, "tiny", TEXT)
    assert out["stages"] == stage_names(n_layer) and out["stages"][-1].endswith("the model's prediction")
    final = [row[0][0] for row in out["top"][-1]]
    assert final == [registry.get("tiny").tokenizer.piece(int(i)) for i in probs.argmax(-1)]
    assert len(out["top"][0]) == len(TEXT) and len(out["top"][0][0]) == 3
    right = sum(final[i] == TEXT[i + 1] for i in range(len(TEXT) - 1))
    last_row = view.split("<tr>")[-2]  # the model's own row: its correct cells are marked
    assert last_row.count('class="gc-right"') == right


def test_embeddings_map_every_token_and_show_the_positions(registry):
    token_map, positions, words = embeddings_view(registry, "tiny")
    ck = registry.get("tiny")
    labels = [t.get_text() for t in token_map.axes[0].texts]
    assert len(labels) == ck.config.model.vocab_size and "␣" in labels and "↵" in labels
    coords, explained = interpret.embedding_pca(ck.model)
    (x0, x1), (y0, y1) = token_map.axes[0].get_xlim(), token_map.axes[0].get_ylim()
    assert x0 < coords[:, 0].min() and coords[:, 0].max() < x1  # every label inside the axes
    assert y0 < coords[:, 1].min() and coords[:, 1].max() < y1
    assert positions["visible"] and "cosine" in positions["value"].axes[0].get_title()
    assert "% of the variance" in words and "Learned position embeddings" in words
    out = embeddings_api(registry, "tiny")
    assert np.allclose(out["coords"], coords.numpy(), atol=1e-4) and out["rope_wavelengths"] is None
    assert len(out["position_similarity"]) == ck.config.model.block_size


def test_rotary_models_show_their_wavelengths(registry):
    _, positions, words = embeddings_view(registry, "tiny-bpe-rope")
    assert positions["visible"] and "rotary" in positions["value"].axes[0].get_title()
    assert "Rotary positions" in words
    out = embeddings_api(registry, "tiny-bpe-rope")
    assert out["position_similarity"] is None and out["rope_wavelengths"][0] == pytest.approx(2 * math.pi)


def test_large_vocabularies_get_spread_labels():
    coords = np.random.default_rng(0).normal(size=(2000, 2))
    shown = _spread_labels(coords)
    assert len(shown) < MAX_MAP_LABELS * 2 and len(set(shown)) == len(shown)
    assert _spread_labels(coords[:50]) == list(range(50))


def heads_off_effect(model, ids, heads):
    """(the text's loss with every head on, with ``heads`` off, each token's loss with them off), from interpret."""
    base = interpret.surprise(model, ids)
    with interpret.heads_off(model, heads):
        off = interpret.surprise(model, ids)
    return float(base.mean()), float(off.mean()), off


def test_switching_heads_off_changes_the_loss_as_interpret_says(registry):
    model = registry.get("tiny").model
    baseline, off_loss, per_token = heads_off_effect(model, _ids(registry), [(0, 1), (1, 0)])
    summary, view = heads_off_view(registry, LIMITS, "tiny", TEXT, ["1.2", "2.1"])
    assert "layer 1 head 2, layer 2 head 1" in summary
    assert f"from **{baseline:.3f}** to **{off_loss:.3f}**" in summary
    assert "with these heads off:" in summary and view.count('class="gc-tok"') == len(TEXT)
    out = heads_off_api(registry, LIMITS, "tiny", TEXT, ["2.1", "1.2"])
    assert out["heads_off"] == ["1.2", "2.1"] and out["loss"] == pytest.approx(off_loss, abs=1e-5)
    assert out["loss_per_token"] == pytest.approx(per_token.tolist(), abs=1e-4)
    summary, _ = heads_off_view(registry, LIMITS, "tiny", TEXT, [])
    assert "Every head is on" in summary
    # nothing stays switched off after a call
    assert torch.equal(interpret.surprise(model, _ids(registry)), interpret.surprise(model, _ids(registry)))
    assert all(block.attn.head_mask is None for block in model.blocks)


def test_one_head_at_a_time_is_ranked_most_harmful_first(registry):
    rows = each_head(registry, LIMITS, "tiny", TEXT)
    assert len(rows) == 2 * 2 and [r[2] for r in rows] == sorted((r[2] for r in rows), reverse=True)
    model = registry.get("tiny").model
    name, loss, change = rows[0]
    layer, head = (int(x) - 1 for x in re.findall(r"\d+", name))
    baseline, off_loss, _ = heads_off_effect(model, _ids(registry), [(layer, head)])
    assert loss == pytest.approx(off_loss, abs=1e-4) and change == pytest.approx(off_loss - baseline, abs=1e-4)


def test_head_choices_and_their_parsing():
    assert head_options(2, 2) == [("L1 H1", "1.1"), ("L1 H2", "1.2"), ("L2 H1", "2.1"), ("L2 H2", "2.2")]
    assert parse_heads(["2.2", "1.1", "1.1"], 2, 2) == [(0, 0), (1, 1)]
    assert parse_heads(None, 2, 2) == []
    for bad, message in [(["3.1"], "no head '3.1'"), (["x"], "layer.head"), ("1.1", "must be a list")]:
        with pytest.raises(ValueError, match=message):
            parse_heads(bad, 2, 2)


@pytest.mark.parametrize("call, message", [
    (lambda r: predictions_view(r, LIMITS, "bigram", TEXT), "no attention"),
    (lambda r: logit_lens_view(r, LIMITS, "tiny", ""), "type some text"),
    (lambda r: heads_off_view(r, LIMITS, "tiny", TEXT, ["9.9"]), "no head"),
    (lambda r: embeddings_view(r, "damaged"), "damaged"),
    (lambda r: embeddings_api(r, "bigram"), "pick a GPT"),
    (lambda r: predictions_api(r, LIMITS, "missing", TEXT), "unknown checkpoint"),
    (lambda r: logit_lens_api(r, LIMITS, "tiny", "x" * 20_000), "limit is 10,000"),
])
def test_bad_input_is_a_clear_error(registry, call, message):
    with pytest.raises(gr.Error, match=message):
        call(registry)


def test_long_and_unknown_text_is_cropped_and_cleaned_with_notices(registry):
    _, notes = predictions_view(registry, LIMITS, "tiny", "naïve " * 20)
    assert "'ï'" in notes and "Cropped" in notes
    out = logit_lens_api(registry, LIMITS, "tiny", "abcdefghij" * 10)
    assert len(out["tokens"]) == registry.get("tiny").config.model.block_size


def test_a_single_token_text_still_answers(registry):
    view, _ = predictions_view(registry, LIMITS, "tiny", "a")
    assert "n/a" in view and len(view_data(view, "top")) == 1
    summary, _ = heads_off_view(registry, LIMITS, "tiny", "a", ["1.1"])
    assert "at least two characters" in summary
    assert each_head(registry, LIMITS, "tiny", "a") == []


def test_every_view_works_on_a_post_norm_model_without_positions(tmp_path, corpus):
    """Untrained, post-norm (no final norm), no position information: each view still answers."""
    from gptcore.checkpoint import save_checkpoint
    from gptcore.config import ModelConfig, RunConfig
    from gptcore.models import GPT

    config = RunConfig(model=ModelConfig(vocab_size=corpus.tokenizer.vocab_size, block_size=16, n_layer=2, n_head=2,
                                         n_embd=16, dropout=0.0, norm="post", pos_emb="none"))
    save_checkpoint(tmp_path / "bare", GPT(config.model), config, corpus.tokenizer, {})
    registry = ModelRegistry(tmp_path, tmp_path / "no-runs", default="bare")
    _, positions, words = embeddings_view(registry, "bare")
    assert not positions["visible"] and "no positional information" in words
    table = logit_lens_api(registry, LIMITS, "bare", TEXT)
    assert len(table["stages"]) == 3 and len(table["tokens"]) == 16
    assert len(predictions_api(registry, LIMITS, "bare", TEXT)["surprise"]) == 15
    assert heads_off_api(registry, LIMITS, "bare", TEXT, ["2.2"])["loss"] is not None


def test_switching_heads_off_never_touches_the_model_other_visitors_sample_from(registry, monkeypatch):
    """The registry's model is shared: heads are switched off in a private copy, one request at a time."""
    from demo.tabs.inside import private_model

    shared = registry.get("tiny").model
    seen = []
    real_read_text, real_each = interpret.read_text, interpret.each_head_off

    def read_text(model, ids):
        seen.append(([b.attn.head_mask for b in shared.blocks], [b.attn.head_mask for b in model.blocks]))
        return real_read_text(model, ids)

    def each_head_off(model, ids):
        assert model is not shared
        return real_each(model, ids)

    monkeypatch.setattr(interpret, "read_text", read_text)
    monkeypatch.setattr(interpret, "each_head_off", each_head_off)
    heads_off_view(registry, LIMITS, "tiny", TEXT, ["1.1", "2.2"])
    each_head(registry, LIMITS, "tiny", TEXT)
    assert len(seen) == 3 and all(mask is None for masks, _ in seen for mask in masks)  # the shared model stayed whole
    assert seen[1][1][0] is not None and seen[1][1][1] is not None  # while the copy had heads off
    with private_model(registry.get("tiny")) as first:
        assert first is not shared
    with private_model(registry.get("tiny")) as again:
        assert again is first  # made once per loaded model
