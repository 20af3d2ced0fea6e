"""Input a hostile user would send: every case gives one clear line (CLI) or a GptcoreError/ValueError
(Python API), never a traceback, a hang or a lost checkpoint."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from gptcore.checkpoint import load_checkpoint
from gptcore.cli import main
from gptcore.config import ModelConfig
from gptcore.data import Corpus
from gptcore.errors import CheckpointError, ConfigError, GptcoreError
from gptcore.memory import check_fits, estimate_bytes, parameter_count
from gptcore.models import build_model, count_parameters
from gptcore.presets import get_preset
from gptcore.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "checkpoints" / "shakespeare-char"


def one_error_line(capsys, args) -> str:
    capsys.readouterr()
    assert main([str(a) for a in args]) != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def copy_shipped(tmp_path) -> Path:
    """The shipped checkpoint in the format written before safetensors and manifests (weights in model.pt,
    each file read as it is), which must still load, and whose files the checks below damage one by one."""
    from gptcore.storage import save_tensors

    target = tmp_path / "ck"
    shutil.copytree(SHIPPED, target, ignore=shutil.ignore_patterns("model.safetensors", "manifest.json",
                                                                    "snapshots.pt"))
    save_tensors(target / "model.pt", load_checkpoint(SHIPPED).model.state_dict(), torch.float16)
    return target


def test_a_corpus_without_a_newline_trains(tmp_path):
    corpus = Corpus.from_text("to be or not to be that is the question " * 300)
    config = get_preset("tiny").with_overrides({"max_iters": 40, "sample_interval": 20})
    events = []
    result = Trainer(config, corpus, tmp_path / "o").run(on_event=events.append)
    assert result.steps == 40 and any(e.kind == "sample" and e.text for e in events)
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["status"] == "finished"


def as_safetensors(ck: Path) -> Path:
    """The shipped checkpoint saved again, as every checkpoint is saved now (model.safetensors)."""
    from gptcore.checkpoint import save_checkpoint

    loaded = load_checkpoint(ck)
    save_checkpoint(ck, loaded.model, loaded.config, loaded.tokenizer, loaded.metrics)
    (ck / "manifest.json").unlink()  # the file-level checks show without the manifest's
    return ck / "model.safetensors"


@pytest.mark.parametrize("weights", ["model.pt", "model.safetensors"])
@pytest.mark.parametrize("offset", [3, 383, 1000, 5000, 70_000, -2000])
def test_a_damaged_weights_file_is_a_checkpoint_error(tmp_path, offset, weights):
    ck = copy_shipped(tmp_path)
    path = as_safetensors(ck) if weights == "model.safetensors" else ck / weights
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    try:
        damaged = load_checkpoint(ck)
    except CheckpointError:
        return
    # a byte the format does not read (zip metadata) may change without harm: then the tensors are intact
    for name, tensor in load_checkpoint(SHIPPED).model.state_dict().items():
        assert torch.equal(damaged.model.state_dict()[name], tensor), name


@pytest.mark.parametrize("change, message", [
    ({"model": []}, "config.json"),
    ({"model": {"n_layer": 4.0}}, "n_layer"),
    ({"model": {"n_embd": 1_000_000_000}}, "memory"),
    ({"model": {"block_size": -3}}, "block_size"),
    ({"train": "x"}, "config.json"),
])
def test_a_hostile_config_is_one_line_from_eval_and_sample(tmp_path, capsys, change, message):
    ck = copy_shipped(tmp_path)
    config = json.loads((ck / "config.json").read_text())
    for key, value in change.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    (ck / "config.json").write_text(json.dumps(config))
    assert message in one_error_line(capsys, ["eval", "--checkpoint", ck])
    assert message in one_error_line(capsys, ["sample", "--checkpoint", ck, "--max-new-tokens", 5])


def test_resume_from_a_damaged_or_mismatched_state(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--out", str(out), "--quiet", "--max-iters", "30",
                 "--set", "sample_interval=0"]) == 0
    line = one_error_line(capsys, ["train", "--preset", "tiny", "--out", out, "--quiet", "--resume",
                                   "--set", "n_embd=64"])
    assert "cannot resume" in line and "train_state.pt" in line
    torch.save({}, out / "train_state.pt")
    assert "not a training state" in one_error_line(capsys, ["train", "--preset", "tiny", "--out", out, "--quiet",
                                                             "--resume"])
    assert load_checkpoint(out).metrics["status"] == "finished"  # nothing lost


def test_a_validation_split_shorter_than_a_window(tmp_path, capsys):
    ten = tmp_path / "ten.txt"
    ten.write_text("abcdefghij")
    line = one_error_line(capsys, ["eval", "--checkpoint", SHIPPED, "--data", ten])
    assert "validation split" in line
    line = one_error_line(capsys, ["train", "--preset", "tiny", "--set", "block_size=4", "--data", ten,
                                   "--out", tmp_path / "o"])
    assert "validation split" in line
    assert not (tmp_path / "o").exists()


def test_bad_output_paths(tmp_path, capsys):
    existing = tmp_path / "file.txt"
    existing.write_text("x")
    assert "not a directory" in one_error_line(capsys, ["train", "--preset", "tiny", "--out", existing])
    assert "not a directory" in one_error_line(capsys, ["train", "--preset", "tiny", "--out", existing / "sub"])
    assert existing.read_text() == "x"


@pytest.mark.parametrize("setting, message", [
    ("threads=-1", "threads"),
    ("batch_size=1000000000000", "batch_size"),
    ("grad_accum=1000000000", "memory"),
    ("block_size=100000", "memory"),
    ("n_embd=1000000000", "memory"),
    ("lr=inf", "finite"),
    ("lr=nan", "finite"),
    ("dropout=nan", "finite"),
    ("time_budget=-inf", "finite"),
])
def test_values_that_would_reach_torch_are_refused_first(tmp_path, capsys, setting, message):
    line = one_error_line(capsys, ["train", "--preset", "tiny", "--out", tmp_path / "o", "--set", setting])
    assert message in line
    assert not (tmp_path / "o").exists()


def test_the_training_estimate_counts_weights_gradients_and_both_adam_moments():
    untied = get_preset("tiny")
    tied = untied.with_overrides({"tie_embeddings": True})  # the same activations, V x C fewer parameters
    V, C = untied.model.vocab_size, untied.model.n_embd
    assert estimate_bytes(untied.model, untied.train) - estimate_bytes(tied.model, tied.train) == 4 * 4 * V * C
    assert estimate_bytes(untied.model) - estimate_bytes(tied.model) == 4 * V * C  # inference: the weights alone


def test_the_memory_estimate_names_the_estimate_and_the_limit():
    with pytest.raises(ConfigError, match=r"about [\d.,]+ [GTP]B.*limit"):
        check_fits(get_preset("tiny").with_overrides({"n_embd": 1_000_000_000 // 8 * 8, "n_head": 8}), "cpu")
    small = get_preset("tiny")
    assert estimate_bytes(small.model, small.train) < 100e6
    check_fits(small, "cpu")


@pytest.mark.parametrize("overrides", [{}, {"n_layer": 3, "n_head": 3, "n_embd": 48}, {"pos_emb": "none"},
                                       {"bias": False, "tie_embeddings": True}, {"norm": "post"}, {"pos_emb": "rope"},
                                       {"arch": "bigram"}])
def test_the_parameter_formula_counts_what_the_model_allocates(overrides):
    config = ModelConfig(**{**dict(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32), **overrides})
    assert parameter_count(config) == count_parameters(build_model(config))


@pytest.mark.parametrize("poison", [math.nan, math.inf, -math.inf])
def test_a_loss_that_becomes_non_finite_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, corpus, poison):
    config = get_preset("tiny").with_overrides({"max_iters": 60, "eval_interval": 10, "sample_interval": 0})
    from gptcore.training import loop

    real_step = loop.accumulated_step

    def poisoned(*args, **kwargs):
        loss = real_step(*args, **kwargs)
        return loss * poison if step_count() > 25 else loss

    calls = []
    step_count = lambda: len(calls)  # noqa: E731

    def counting(*args, **kwargs):
        calls.append(1)
        return poisoned(*args, **kwargs)

    loop.accumulated_step = counting
    try:
        with pytest.raises(GptcoreError, match=r"non-finite.*step 26.*last good checkpoint \(step (10|20)"):
            Trainer(config, corpus, tmp_path / "o").run()
    finally:
        loop.accumulated_step = real_step
    ck = load_checkpoint(tmp_path / "o")
    assert ck.metrics["status"] == "diverged" and ck.metrics["best_step"] in (10, 20)
    assert all(torch.isfinite(p).all() for p in ck.model.parameters())


def test_draft_order_is_checked_before_any_work(capsys):
    line = one_error_line(capsys, ["draft", "--checkpoint", ROOT / "checkpoints" / "bigram",
                                   "--order", "1000000000000000000"])
    assert "order" in line
