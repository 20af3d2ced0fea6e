"""The Inside tab's comparison of two models: token-by-token surprise of both, their logit lenses and head
roles; a model against itself differs nowhere; models that read text differently are refused."""

from __future__ import annotations

import re

import gradio as gr
import pytest
import torch

from demo.server.registry import ModelRegistry
from demo.server.settings import Limits
from demo.tabs.compare import compare_api, compare_view, second_choice
from gptcore.interpret import compare_surprise, surprise

LIMITS = Limits()
TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n"


@pytest.fixture(scope="module")
def registry(demo_checkpoints, tmp_path_factory) -> ModelRegistry:
    """The test checkpoints: ``brief`` is ``tiny`` trained for ten steps instead of sixty."""
    return ModelRegistry(demo_checkpoints, tmp_path_factory.mktemp("runs"), default="tiny")


def test_a_model_compared_with_itself_differs_nowhere(registry):
    notes, change, lens, roles = compare_view(registry, LIMITS, "tiny", "tiny", TEXT)
    assert "predict every character of this text alike: no differences" in notes
    deltas = re.findall(r"nats \(([+-]\d+\.\d+)\)", change)
    answer = compare_api(registry, LIMITS, "tiny", "tiny", TEXT)
    assert len(deltas) == len(answer["tokens"]) - 1 and all(float(d) == 0 for d in deltas)
    assert answer["surprise_first"] == answer["surprise_second"]
    assert answer["lens_first"] == answer["lens_second"] and answer["roles_first"] == answer["roles_second"]


def test_two_models_are_compared_token_by_token(registry):
    answer = compare_api(registry, LIMITS, "tiny", "brief", TEXT)
    ids = registry.get("tiny").tokenizer.encode(TEXT)[:registry.get("tiny").config.model.block_size]
    for key, name in (("surprise_first", "tiny"), ("surprise_second", "brief")):
        expected = surprise(registry.get(name).model, ids)
        torch.testing.assert_close(torch.tensor(answer[key]), expected, atol=1e-4, rtol=0)
    a, b = torch.tensor(answer["surprise_first"]), torch.tensor(answer["surprise_second"])
    assert b.mean() > a.mean(), "ten steps of training predict worse than sixty"
    notes, change, lens, roles = compare_view(registry, LIMITS, "tiny", "brief", TEXT)
    assert f"predicts {int((b < a).sum())} of the {len(a)} characters better and {int((b > a).sum())} worse" in notes
    assert lens.count("<table>") == 2 and "brief" in lens
    n_layer, n_head = registry.get("tiny").config.model.n_layer, registry.get("tiny").config.model.n_head
    assert len(re.findall(r"<td>L\d+ H\d+</td>", roles)) == n_layer * n_head
    assert len(answer["roles_first"]) == n_layer and len(answer["lens_second"]) == n_layer + 1


@pytest.mark.parametrize("second, message", [
    ("tiny-bpe-rope", "tiny and tiny-bpe-rope read text differently (65 characters against a"),
    ("bigram", "checkpoint 'bigram' is a bigram model; compare GPT checkpoints"),
    ("../tiny", "unknown checkpoint '../tiny'"),
])
def test_models_that_cannot_be_compared_are_refused_in_a_sentence(registry, second, message):
    """The API refuses; the view, which runs with the tab's other views, says so in its own place."""
    with pytest.raises(gr.Error, match=re.escape(message)):
        compare_api(registry, LIMITS, "tiny", second, TEXT)
    notes, *views = compare_view(registry, LIMITS, "tiny", second, TEXT)
    assert notes.startswith("**Cannot compare:**") and message in notes and views == ["", "", ""]


def test_models_with_different_vocabularies_are_refused_in_python(registry):
    with pytest.raises(ValueError, match="different vocabularies"):
        compare_surprise(registry.get("tiny").model, registry.get("tiny-bpe-rope").model, [1, 2, 3])


def test_the_second_model_is_another_that_reads_text_alike(registry):
    assert second_choice(registry, "tiny") == "brief"
    assert second_choice(registry, "tiny", current="damaged") == "damaged"  # a fitting choice is kept
    assert second_choice(registry, "tiny", current="tiny-bpe-rope") == "brief"  # one that does not fit is not
    assert second_choice(registry, "brief", current="brief") == "tiny"  # nor the first model itself
    assert second_choice(registry, "tiny-bpe-rope") is None  # the only model on its tokens
