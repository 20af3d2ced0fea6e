"""The Train tab's replay: which runs it offers, what it shows at a step (checked against the snapshots file),
its API, and clear refusals."""

from __future__ import annotations

import html
import re

import gradio as gr
import numpy as np
import pytest

from demo.server.registry import ModelRegistry
from demo.server.training_job import TrainingManager
from demo.tabs.replay import LIVE, NO_RUNS, follow_live, pick_run, replay_api, replay_sources, show
from gptcore.snapshots import Snapshots
from demo_support import view_data
from test_demo_attention import unpacked_weights


@pytest.fixture(scope="module")
def registry(demo_checkpoints, tmp_path_factory) -> ModelRegistry:
    return ModelRegistry(demo_checkpoints, tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def snaps(demo_checkpoints) -> Snapshots:
    return Snapshots.load(demo_checkpoints / "tiny")


def test_only_runs_with_snapshots_are_offered(registry):
    sources = replay_sources(registry, TrainingManager())
    assert list(sources) == ["tiny"]  # not the BPE model trained without them, nor the bigram
    assert LIVE not in sources  # no run in progress


def test_a_step_shows_that_snapshots_head_text_and_roles(registry, snaps):
    index = 2
    shot = snaps.taken[index]
    label, head_view, text_view, roles = show(registry, TrainingManager(), "tiny", index, 2, 1)
    assert f"Step {shot.step}" in label and f"snapshot {index + 1} of {len(snaps.taken)}" in label
    T = len(snaps.pieces)
    weights = unpacked_weights(re.search(r'data-weights="([^"]*)"', head_view).group(1), T)
    np.testing.assert_allclose(weights, shot.attention[1, 0].float().numpy(), atol=2e-3)
    assert view_data(head_view, "pieces") == snaps.pieces
    first_title = html.unescape(re.findall(r'title="([^"]*)"', text_view)[1])
    assert first_title.startswith(f"surprise {float(shot.surprise[0]):.2f} nats; the model expected")
    n_layer, n_head = shot.attention.shape[:2]
    rows = re.findall(r"<tr[^>]*><td>L(\d+) H(\d+)</td>", roles)
    assert rows == [(str(layer + 1), str(head + 1)) for layer in range(n_layer) for head in range(n_head)]
    assert 'class="gc-picked"><td>L2 H1' in roles


def test_picking_a_run_puts_the_slider_on_its_last_snapshot(registry, snaps):
    slider, layers, heads = pick_run(registry, TrainingManager(), "tiny")
    assert slider["maximum"] == slider["value"] == len(snaps.taken) - 1
    n_layer, n_head = snaps.taken[0].attention.shape[:2]
    assert len(layers["choices"]) == n_layer and len(heads["choices"]) == n_head


def test_only_the_run_in_progress_is_followed(registry):
    assert follow_live(registry, TrainingManager(), "tiny", 0, 3) == (gr.skip(), 3)
    assert follow_live(registry, TrainingManager(), LIVE, 0, 3) == (gr.skip(), 3)  # no run: nothing to follow


def test_without_a_run_the_replay_says_how_to_get_one(registry):
    assert show(registry, TrainingManager(), None, 0, 1, 1)[0] == NO_RUNS


def test_the_api_gives_the_snapshot_at_or_before_a_step(registry, snaps):
    step = snaps.taken[3].step + 1  # between two snapshots: the earlier one
    answer = replay_api(registry, TrainingManager(), "tiny", step, layer=1, head=2)
    assert answer["step"] == snaps.taken[3].step and answer["steps"] == snaps.steps
    assert answer["probe"] == snaps.pieces and len(answer["surprise"]) == len(snaps.pieces) - 1
    np.testing.assert_allclose(answer["attention"], snaps.taken[3].attention[0, 1].float().numpy(), atol=1e-3)
    assert answer["roles_over_windows"] == snaps.taken[3].kinds


@pytest.mark.parametrize("run, step, layer, head, message", [
    ("../../etc", 0, 1, 1, "no snapshots of '../../etc'; runs with snapshots: tiny"),
    ("..", 0, 1, 1, "no snapshots of '..'; runs with snapshots: tiny"),  # a folder wherever the tests run
    ("tiny-bpe-rope", 0, 1, 1, "no snapshots of 'tiny-bpe-rope'"),
    ("tiny", -1, 1, 1, "step must be a whole number between 0 and"),
    ("tiny", 10, 9, 1, "layer must be a whole number between 1 and 2"),
    ("tiny", 10, 1, "2; drop", "head must be a whole number between 1 and 2"),
])
def test_bad_requests_get_one_sentence(registry, run, step, layer, head, message):
    with pytest.raises(gr.Error, match=re.escape(message)) as e:
        replay_api(registry, TrainingManager(), run, step, layer, head)
    assert "/" not in str(e.value).replace("../../etc", "")
