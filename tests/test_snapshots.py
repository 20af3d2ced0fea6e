"""Snapshots recorded during training: taken at the right steps, equal to the model's own attention at that
step, bounded in size, written atomically, and continued by a resumed run without gaps or duplicates."""

from __future__ import annotations

import threading

import pytest
import torch

from gptcore import snapshots
from gptcore.checkpoint import load_checkpoint
from gptcore.config import RunConfig
from gptcore.data import Corpus
from gptcore.errors import GptcoreError
from gptcore.models import build_model
from gptcore.training import Trainer
from tests.tiny_configs import tiny_model, tiny_train

TEXT_CHARS = 60_000


@pytest.fixture(scope="module")
def small_corpus(corpus) -> Corpus:
    return Corpus.from_text(corpus.tokenizer.decode(corpus.train[:TEXT_CHARS].tolist()), tokenizer=corpus.tokenizer)


def _config(**train) -> RunConfig:
    return RunConfig(tiny_model(), tiny_train(**{"snapshot_interval": 5, **train})).with_overrides({})


def _train(corpus: Corpus, out, stop_at: int | None = None, resume: bool = False, **train) -> Trainer:
    trainer = Trainer(_config(**train), corpus, out, resume=resume)
    stop = threading.Event()

    def on_event(event) -> None:
        if stop_at is not None and event.kind == "step" and event.step >= stop_at:
            stop.set()

    trainer.run(on_event=on_event, stop=stop)
    return trainer


def test_snapshots_are_taken_every_n_steps_from_step_0(small_corpus, tmp_path):
    _train(small_corpus, tmp_path, max_iters=20)
    kept = snapshots.Snapshots.load(tmp_path)
    assert kept.steps == [0, 5, 10, 15, 20]
    first, last = kept.taken[0], kept.taken[-1]
    T = len(kept.probe_ids)
    assert first.attention.shape == (2, 2, T, T) and first.surprise.shape == (T - 1,)
    assert last.loss < first.loss, "the probe's loss falls as the model trains"
    assert len(first.roles) == 2 and len(first.roles[0]) == 2 and all(isinstance(r, str) for r in first.roles[0])
    assert 1 <= int(first.agreement.max()) <= len(kept.windows)


def test_the_probe_is_validation_text_from_a_line_start(small_corpus):
    model = build_model(tiny_model())
    kept = snapshots.begin(model, small_corpus.tokenizer, small_corpus.val, interval=5)
    val = small_corpus.val.tolist()
    start = next(i for i in range(len(val) - len(kept.probe_ids)) if val[i:i + len(kept.probe_ids)] == kept.probe_ids)
    assert start > 0 and "\n" in small_corpus.tokenizer.piece(val[start - 1])
    assert len(kept.windows) == snapshots.WINDOWS and len({tuple(w) for w in kept.windows}) == snapshots.WINDOWS


def test_a_snapshot_holds_the_attention_of_the_checkpoint_saved_at_its_step(small_corpus, tmp_path):
    """With dropout in training, so that a snapshot taken with it on would differ from the model's own."""
    trainer = Trainer(_config(max_iters=10, eval_interval=5).with_overrides({"dropout": 0.2}), small_corpus, tmp_path)
    trainer.run()
    ck = load_checkpoint(tmp_path)
    best = ck.metrics["best_step"]
    kept = snapshots.Snapshots.load(tmp_path)
    shot = kept.at(best)
    assert shot.step == best
    maps = ck.model.eval().attention_maps(torch.tensor([kept.probe_ids]))
    expected = torch.stack([m[0] for m in maps])
    torch.testing.assert_close(shot.attention.float(), expected, atol=2e-3, rtol=0)
    again = snapshots.observe(ck.model, kept.windows, kept.window_pieces, best)
    torch.testing.assert_close(again.surprise, shot.surprise, atol=1e-4, rtol=0)
    assert again.kinds == shot.kinds and again.roles == shot.roles


def test_when_full_every_other_snapshot_goes_and_the_interval_doubles(small_corpus):
    model = build_model(tiny_model())
    kept = snapshots.begin(model, small_corpus.tokenizer, small_corpus.val, interval=1)
    kept.capacity = 4
    for step in range(0, 21):
        kept.take(model, step)
    assert len(kept.taken) <= kept.capacity
    assert kept.steps == [0, 8, 16] and kept.interval == 8
    kept.take(model, 24)
    assert kept.steps == [0, 8, 16, 24]


def test_the_attention_of_every_snapshot_kept_fits_the_bound_whatever_the_model():
    for n_layer, n_head, block in [(2, 2, 32), (4, 4, 256), (12, 12, 1024), (48, 25, 2048)]:
        T = snapshots.probe_length(n_layer, n_head, block)
        per = n_layer * n_head * T * T * 2
        capacity = max(snapshots.MIN_KEPT, min(snapshots.MAX_KEPT, snapshots.MAX_ATTENTION_BYTES // per))
        assert 2 <= T <= min(block, snapshots.PROBE_TOKENS)
        assert capacity * per <= snapshots.MAX_ATTENTION_BYTES


def test_a_failed_write_leaves_the_last_snapshots_file_whole(small_corpus, tmp_path, monkeypatch):
    model = build_model(tiny_model())
    kept = snapshots.begin(model, small_corpus.tokenizer, small_corpus.val, interval=1)
    kept.take(model, 0)
    kept.save(tmp_path)
    kept.take(model, 1)

    def broken(obj):
        raise OSError("disk full")

    monkeypatch.setattr("gptcore.storage.torch_bytes", broken)
    with pytest.raises(OSError):
        kept.save(tmp_path)
    assert snapshots.Snapshots.load(tmp_path).steps == [0]
    assert [p.name for p in tmp_path.iterdir()] == [snapshots.SNAPSHOTS_FILE]


def test_a_resumed_run_continues_its_snapshots_without_gaps_or_duplicates(small_corpus, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    _train(small_corpus, whole, max_iters=30, eval_interval=10)
    _train(small_corpus, parts, stop_at=17, max_iters=30, eval_interval=10)
    assert snapshots.Snapshots.load(parts).steps == [0, 5, 10, 15]
    # a run killed after later snapshots were written: its file runs ahead of the state it resumes from, and
    # those snapshots need not be what the resumed run will do (blanked here, so that keeping one shows)
    ahead = snapshots.Snapshots.load(whole)
    for shot in ahead.taken[4:]:
        shot.attention.zero_()
    ahead.save(parts)
    _train(small_corpus, parts, resume=True, max_iters=30, eval_interval=10)
    a, b = snapshots.Snapshots.load(whole), snapshots.Snapshots.load(parts)
    assert b.steps == a.steps == [0, 5, 10, 15, 20, 25, 30]
    for x, y in zip(a.taken, b.taken):
        torch.testing.assert_close(x.attention.float(), y.attention.float(), atol=2e-3, rtol=0)


def test_a_model_without_attention_cannot_record_snapshots(small_corpus, tmp_path):
    config = RunConfig(tiny_model(arch="bigram"), tiny_train(snapshot_interval=5)).with_overrides({})
    with pytest.raises(GptcoreError, match="snapshot_interval"):
        Trainer(config, small_corpus, tmp_path)


def test_recording_snapshots_leaves_the_training_unchanged(small_corpus, tmp_path):
    """A snapshot runs the model with dropout off and draws no random numbers: the run trains as without."""
    config = dict(max_iters=10, eval_interval=10)
    with_them = Trainer(_config(**config).with_overrides({"dropout": 0.1}), small_corpus, tmp_path / "a").run()
    without = Trainer(_config(**config).with_overrides({"dropout": 0.1, "snapshot_interval": 0}), small_corpus,
                      tmp_path / "b").run()
    assert snapshots.exists(tmp_path / "a") and not snapshots.exists(tmp_path / "b")
    a, b = load_checkpoint(tmp_path / "a").model.state_dict(), load_checkpoint(tmp_path / "b").model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a) and with_them.val_loss == without.val_loss
