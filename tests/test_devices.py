"""Devices: choosing one, autocast on it, training and sampling there, and checkpoints that move between
devices. Tests taking the ``device`` fixture run on every device type the machine has."""

import json
import subprocess
import sys

import pytest
import torch

from gptcore import device as dev
from gptcore.checkpoint import WEIGHTS, load_checkpoint
from gptcore.errors import ConfigError
from gptcore.evaluate import split_loss
from gptcore.inference.sampling import SamplingParams, generate
from gptcore.models import GPT
from gptcore.presets import get_preset
from gptcore.storage import load_tensors, tensors_digest
from gptcore.training import Trainer
from tests.conftest import small_config

pytestmark = pytest.mark.slow  # trains on each device, compiled and eagerly: started first, beside the rest


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch):
    for cuda, mps, expected in [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")]:
        monkeypatch.setattr(torch.cuda, "is_available", lambda cuda=cuda: cuda)
        monkeypatch.setattr(dev, "mps_available", lambda mps=mps: mps)
        assert dev.resolve_device("auto").type == expected
        assert dev.resolve_device(None).type == expected
        assert dev.available_devices()[-1] == "cpu"


def test_an_absent_or_unknown_device_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(dev, "mps_available", lambda: False)
    with pytest.raises(ConfigError, match="'cuda' is not available on this machine; available: cpu"):
        dev.resolve_device("cuda")
    with pytest.raises(ConfigError, match="device must be auto, cpu, cuda, cuda:N or mps"):
        dev.resolve_device("tpu")
    assert dev.resolve_device("CPU") == torch.device("cpu")


def test_autocast_dtype_falls_back_to_float32_where_bfloat16_is_missing(monkeypatch):
    cpu = torch.device("cpu")
    assert dev.compute_dtype(cpu, "float32") == torch.float32
    monkeypatch.setattr(dev, "cpu_computes_bfloat16", lambda: True)
    assert dev.compute_dtype(cpu, "bfloat16") == torch.bfloat16
    monkeypatch.setattr(dev, "cpu_computes_bfloat16", lambda: False)  # an AVX2 laptop: emulated, so not used
    assert dev.compute_dtype(cpu, "bfloat16") == torch.float32


def test_training_on_a_device_gives_a_checkpoint_that_loads_anywhere(device, corpus, tmp_path):
    """Trained on ``device``: the stored weights are CPU tensors whatever trained them, and the whole-split
    loss is the same on the CPU and on the device (within 1e-4)."""
    config = get_preset("tiny").with_overrides({"device": str(device), "max_iters": 30, "sample_interval": 15})
    result = Trainer(config, corpus, tmp_path / "run").run()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["device"].startswith(device.type)
    assert all(t.device.type == "cpu" for t in load_tensors(tmp_path / "run" / WEIGHTS).values())
    on_cpu = load_checkpoint(tmp_path / "run", "cpu")
    on_device = load_checkpoint(tmp_path / "run", device)
    assert on_device.device.type == device.type
    val = corpus.val[:20_000]
    loss_cpu = split_loss(on_cpu.model, val, 32)
    assert abs(loss_cpu - split_loss(on_device.model, val, 32)) < 1e-4
    assert abs(result.val_loss - split_loss(on_cpu.model, corpus.val, 32)) < 1e-4


def test_stored_weights_do_not_depend_on_the_device(device):
    model = GPT(small_config())
    digest = tensors_digest(model.state_dict())
    assert tensors_digest(model.to(device).state_dict()) == digest


def test_greedy_text_on_a_device_equals_the_cpu_text(device):
    torch.manual_seed(2)
    model = GPT(small_config(block_size=16, qk_norm=True)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8)
    from gptcore.tokenizers import CharTokenizer

    tok = CharTokenizer([chr(c) for c in range(32, 97)])
    params = SamplingParams(temperature=0, max_new_tokens=40)
    on_cpu = generate(model, tok, "ABC", params)
    assert generate(model.to(device), tok, "ABC", params) == on_cpu


def test_torch_dropout_off_the_cpu_and_byte_dropout_on_it(device):
    from gptcore.models.dropout import Dropout

    drop = Dropout(0.2).train()
    y = drop(torch.ones(200_000, device=device))
    expected = 51 / 256 if device.type == "cpu" else 0.2
    assert abs((y == 0).float().mean().item() - expected) < 0.005


def test_trainer_leaves_the_callers_config_alone(corpus, tmp_path):
    config = get_preset("tiny").with_overrides({"vocab_size": 7, "max_iters": 2, "eval_interval": 2})
    before = config.to_dict()
    trainer = Trainer(config, corpus, tmp_path / "t")
    assert config.to_dict() == before and trainer.config.model.vocab_size == 65


def test_compiled_training_learns_like_eager_training(corpus, tmp_path):
    """``compile=true`` trains the same model (torch.compile of the training step's module), saves plain
    weights that load without it, and ends near the eager run's loss."""
    base = {"max_iters": 20, "eval_interval": 10, "sample_interval": 0, "device": "cpu"}
    eager = Trainer(get_preset("tiny").with_overrides(base), corpus, tmp_path / "eager").run()
    compiled = Trainer(get_preset("tiny").with_overrides({**base, "compile": True}), corpus, tmp_path / "compiled").run()
    assert abs(eager.val_loss - compiled.val_loss) < 0.02
    assert not any(k.startswith("_orig_mod") for k in load_tensors(tmp_path / "compiled" / WEIGHTS))


def test_the_progress_bar_of_a_time_budgeted_run_counts_seconds(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gptcore", "train", "--preset", "tiny", "--out", str(tmp_path / "o"),
                           "--time-budget", "2", "--max-iters", "100000", "--set", "eval_interval=1000000"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "/2 s budget" in proc.stderr and "step " in proc.stderr
    assert "/100000" not in proc.stderr


def test_the_app_header_names_the_device(tmp_path):
    from demo.app import device_markdown
    from demo.server.registry import ModelRegistry

    assert device_markdown(ModelRegistry(tmp_path, tmp_path, device="cpu")) == "Models run on **cpu**."
    assert "device must be auto, cpu, cuda, cuda:N or mps" in device_markdown(ModelRegistry(tmp_path, tmp_path, device="tpu"))
