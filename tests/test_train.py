import threading

import pytest
import torch

from gptcore.config import parse_assignments, RunConfig, TrainConfig
from gptcore.checkpoint import load_checkpoint
from gptcore.storage import read_json
from gptcore.errors import ConfigError
from gptcore.presets import PRESETS, get_preset
from gptcore.training import Trainer, learning_rate
from tests.tiny_configs import tiny_model, tiny_train


def _config(**train) -> RunConfig:
    return RunConfig(tiny_model(dropout=0.1), tiny_train(**{"threads": None, "seed": 7, **train}))


def _losses(events):
    return [round(e.train_loss, 6) for e in events if e.kind == "step"]


def test_events_metrics_and_best_checkpoint(tmp_path, corpus):
    events = []
    result = Trainer(_config(sample_interval=10), corpus, tmp_path / "run", command="cmd").run(on_event=events.append)
    kinds = {e.kind for e in events}
    assert kinds == {"step", "eval", "sample", "done"}
    assert sum(e.kind == "step" for e in events) == 20
    assert all(e.tokens_per_sec > 0 for e in events if e.kind == "step")
    assert any(e.text for e in events if e.kind == "sample")
    metrics = read_json(tmp_path / "run" / "metrics.json")
    for key in ("val_loss", "params", "tokens_seen", "wall_time_s", "command", "history", "best_step"):
        assert key in metrics
    assert metrics["command"] == "cmd" and metrics["tokens_seen"] == 20 * 8 * 32
    best = min(metrics["history"], key=lambda h: h["val_loss"])
    assert metrics["best_step"] == best["step"]
    assert result.val_loss == metrics["val_loss"] < 4.0
    assert load_checkpoint(tmp_path / "run").config.train.max_iters == 20


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_resume_continues_identically(tmp_path, corpus, optimizer):
    full = []
    Trainer(_config(optimizer=optimizer), corpus, tmp_path / "a").run(on_event=full.append)

    stop = threading.Event()
    first = []

    def stop_at_ten(event):
        first.append(event)
        if event.kind == "step" and event.step == 10:
            stop.set()

    result = Trainer(_config(optimizer=optimizer), corpus, tmp_path / "b").run(on_event=stop_at_ten, stop=stop)
    assert result.stopped and result.steps == 10
    second = []
    Trainer(_config(optimizer=optimizer), corpus, tmp_path / "b", resume=True).run(on_event=second.append)
    assert _losses(first) + _losses(second) == _losses(full)
    assert read_json(tmp_path / "b" / "metrics.json")["val_loss"] == pytest.approx(
        read_json(tmp_path / "a" / "metrics.json")["val_loss"], abs=1e-6)


def test_stop_from_another_thread_keeps_best_weights(tmp_path, corpus):
    stop = threading.Event()
    events = []
    worker = threading.Thread(target=lambda: events.append(
        Trainer(_config(max_iters=100_000), corpus, tmp_path / "r").run(stop=stop)))
    worker.start()
    stop.set()
    worker.join(timeout=600)  # only against a hang: a busy machine is slow
    assert not worker.is_alive() and events[0].stopped
    assert load_checkpoint(tmp_path / "r").metrics["status"] == "stopped"


@pytest.mark.slow
def test_time_budget_stops_the_run(tmp_path, corpus):
    result = Trainer(_config(max_iters=100_000, time_budget=1.0), corpus, tmp_path / "t").run()
    assert result.stopped and 0 < result.steps < 100_000


@pytest.mark.slow
def test_bfloat16_training_matches_float32(tmp_path, corpus):
    a = Trainer(_config(max_iters=60, dtype="float32"), corpus, tmp_path / "f32").run()
    b = Trainer(_config(max_iters=60, dtype="bfloat16"), corpus, tmp_path / "bf16").run()
    assert abs(a.val_loss - b.val_loss) < 0.05


def test_fast_path_matches_the_nanogpt_reference(corpus):
    """bfloat16 + explicit attention + byte dropout, against float32 + fused attention + torch's dropout."""
    from gptcore.experiments.bench import nanogpt_reference
    from gptcore.data import BatchSampler
    from gptcore.evaluate import split_loss
    from gptcore.models import build_model
    from gptcore.training import make_optimizer, train_step

    def final_loss(fast: bool) -> float:
        config = _config().model
        config.attention = "explicit" if fast else "fused"
        torch.manual_seed(3)
        model = build_model(config)
        model = model if fast else nanogpt_reference(model)
        optimizer = make_optimizer(model, TrainConfig(lr=3e-3))
        sampler = BatchSampler(corpus.train, config.block_size, 16, seed=3)
        for _ in range(80):
            train_step(model, optimizer, *sampler.next_batch(), torch.bfloat16 if fast else torch.float32, 1.0)
        return split_loss(model, corpus.val[:4000], config.block_size)

    assert abs(final_loss(True) - final_loss(False)) < 0.05


@pytest.mark.slow
def test_muon_learns_and_leaves_embeddings_to_adamw(tmp_path, corpus):
    from gptcore.models import build_model
    from gptcore.training.muon import Muon
    from gptcore.training import make_optimizer

    model = build_model(_config().model)
    pair = make_optimizer(model, TrainConfig(optimizer="muon"))
    muon = next(opt for opt in pair.optimizers if isinstance(opt, Muon))
    in_muon = {id(p) for g in muon.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in in_muon) == (name.startswith("blocks.") and p.dim() == 2), name
    a = Trainer(_config(max_iters=60, optimizer="adamw"), corpus, tmp_path / "adamw").run()
    b = Trainer(_config(max_iters=60, optimizer="muon", muon_lr=0.02), corpus, tmp_path / "muon").run()
    assert b.val_loss < 3.0 and b.val_loss < a.val_loss + 0.05


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape", [(3, 48, 16), (2, 16, 48), (32, 32)])
def test_orthogonalize_sets_singular_values_near_one(shape, dtype):
    from gptcore.training.muon import orthogonalize

    g = torch.randn(shape) * torch.logspace(-1.5, 0, shape[-1])  # condition number ~100
    s = torch.linalg.svdvals(orthogonalize(g, dtype=dtype).float())
    assert orthogonalize(g, dtype=dtype).shape == g.shape
    assert s.min() > 0.5 and s.max() < 1.3
    assert torch.linalg.svdvals(g).max() / torch.linalg.svdvals(g).min() > 10


def test_learning_rate_schedules():
    cosine = TrainConfig(lr=1.0, min_lr_ratio=0.1, warmup_iters=10)
    assert learning_rate(0, 0.0, cosine) == pytest.approx(0.1)
    assert learning_rate(10, 0.0, cosine) == pytest.approx(1.0)
    assert learning_rate(500, 0.5, cosine) == pytest.approx(0.55)
    assert learning_rate(999, 1.0, cosine) == pytest.approx(0.1)
    linear = TrainConfig(lr=1.0, min_lr_ratio=0.0, warmup_iters=0, schedule="linear", warmdown_frac=0.4)
    assert learning_rate(50, 0.5, linear) == 1.0
    assert learning_rate(80, 0.8, linear) == pytest.approx(0.5)


def test_presets_are_valid_and_overrides_checked():
    for name in PRESETS:
        get_preset(name).model.validate()
        get_preset(name).train.validate()
    values = parse_assignments(["n_layer=2", "dropout=0", "time_budget=none", "residual=false"])
    assert values == {"n_layer": 2, "dropout": 0.0, "time_budget": None, "residual": False}
    run = get_preset("seed").with_overrides(values)
    assert run.model.n_layer == 2 and run.model.dropout == 0.0 and run.model.residual is False
    assert get_preset("seed").model.n_layer == 4  # presets are not mutated
    with pytest.raises(ConfigError, match="unknown setting"):
        parse_assignments(["n_layers=2"])
    with pytest.raises(ConfigError, match="unknown setting"):
        get_preset("seed").with_overrides({"n_layers": 2})
    with pytest.raises(ConfigError, match="expects int"):
        parse_assignments(["n_layer=two"])
    with pytest.raises(ConfigError, match="finite"):
        parse_assignments(["lr=inf"])
    with pytest.raises(ConfigError, match="divisible"):
        get_preset("seed").with_overrides({"n_head": 3})


@pytest.mark.parametrize("key, value", [("n_layer", 4.0), ("n_layer", True), ("n_layer", "4"), ("qk_norm", 1),
                                        ("lr", "fast"), ("lr", float("nan")), ("dropout", None), ("device", 0)])
def test_typed_overrides_refuse_values_of_the_wrong_type(key, value):
    with pytest.raises(ConfigError, match=f"setting {key}"):
        get_preset("seed").with_overrides({key: value})
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("huge")


@pytest.mark.parametrize("native", [True, False])
def test_muon_orthogonalises_in_bfloat16_only_where_the_device_computes_it(monkeypatch, native):
    from gptcore.training import muon

    used = []
    real = muon.orthogonalize
    monkeypatch.setattr(muon, "bfloat16_supported", lambda device: native)
    monkeypatch.setattr(muon, "orthogonalize", lambda m, steps, dtype: used.append(dtype) or real(m, steps, dtype))
    w = torch.nn.Parameter(torch.randn(8, 4))
    w.grad = torch.randn(8, 4)
    muon.Muon([w]).step()
    assert used == [torch.bfloat16 if native else torch.float32]
