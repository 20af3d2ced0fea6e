"""Our AdamW must be torch's multi-tensor AdamW to the last bit (recorded runs stay reproducible), save in
torch's form both ways, and spare a training process the import of torch's compiler."""

import io
import subprocess
import sys

import pytest
import torch

from gptcore.training.adamw import AdamW


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in [(7, 5), (5,), (3, 4, 2)]]


def _groups(params: list) -> list[dict]:
    return [{"params": [params[0], params[2]], "weight_decay": 0.1, "lr_scale": 1.0},
            {"params": [params[1]], "weight_decay": 0.0, "lr_scale": 0.5}]


def _run(optimizer, params: list, steps: range, seed: int = 1) -> None:
    for i in steps:
        g = torch.Generator().manual_seed(seed * 1000 + i)  # step i's gradients, however the run is split
        for group in optimizer.param_groups:
            group["lr"] = 3e-3 * group["lr_scale"] * (1 + i) / 4  # the loop changes lr every step
        for p in params:
            p.grad = torch.randn(p.shape, generator=g) * (1 + i)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def _same(a: list, b: list) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_every_step_is_torchs_multi_tensor_adamw_bit_for_bit():
    ours, theirs = _params(), _params()
    # an eps this large makes where it enters the arithmetic visible in the last bits
    _run(AdamW(_groups(ours), lr=1e-3, betas=(0.9, 0.95), eps=1e-3), ours, range(12))
    _run(torch.optim.AdamW(_groups(theirs), lr=1e-3, betas=(0.9, 0.95), eps=1e-3, foreach=True), theirs, range(12))
    assert _same(ours, theirs)
    assert not _same(ours, _params())  # the parameters did move


@pytest.mark.parametrize("saver", ["torch", "ours"])
def test_a_saved_state_resumes_in_the_other_optimizer_exactly(saver):
    """Checkpoints written before our AdamW (torch's state) resume with it, and the other way round."""
    kinds = {"torch": lambda groups: torch.optim.AdamW(groups, lr=1e-3, foreach=True),
             "ours": lambda groups: AdamW(groups, lr=1e-3)}
    loader = "ours" if saver == "torch" else "torch"
    first = _params()
    opt = kinds[saver](_groups(first))
    _run(opt, first, range(2))
    second = [torch.nn.Parameter(p.detach().clone()) for p in first]
    resumed = kinds[loader](_groups(second))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # as a checkpoint holds it: no tensor shared with the live optimizer
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    _run(resumed, second, range(2, 4), seed=2)
    _run(opt, first, range(2, 4), seed=2)
    assert _same(first, second)


def test_a_state_for_other_groups_is_refused():
    opt = AdamW(_groups(_params()))
    other = AdamW([{"params": _params()}]).state_dict()
    with pytest.raises(ValueError, match="number of parameter groups"):
        opt.load_state_dict(other)
    resized = AdamW([{"params": _params()[:1]}, {"params": _params()[1:]}]).state_dict()
    with pytest.raises(ValueError, match="different sizes"):
        opt.load_state_dict(resized)


def test_a_parameter_in_two_groups_is_refused():
    p = _params()
    with pytest.raises(ValueError, match="more than one place"):
        AdamW([{"params": [p[0]]}, {"params": [p[0], p[1]]}])


def test_zero_grad_keeps_or_drops_the_gradients_as_asked():
    p = _params()
    opt = AdamW(p)
    for q in p:
        q.grad = torch.ones_like(q)
    opt.zero_grad(set_to_none=False)
    assert all(q.grad is not None and not q.grad.any() for q in p)
    opt.zero_grad()
    assert all(q.grad is None for q in p)


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_training_on_the_cpu_never_imports_torchs_compiler(optimizer):
    """The point of our own optimizers: a short run does not pay for importing torch._dynamo."""
    code = f"""
import sys, torch
from gptcore.config import ModelConfig, TrainConfig
from gptcore.models import build_model
from gptcore.training import make_optimizer, train_step
model = build_model(ModelConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=11))
opt = make_optimizer(model, TrainConfig(optimizer={optimizer!r}))
x = torch.randint(0, 11, (2, 8))
train_step(model, opt, x, x, torch.float32, 1.0)
opt.load_state_dict(opt.state_dict())
print("torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_a_state_loaded_from_a_live_optimizer_is_a_copy():
    """Loading another optimizer's live state (not a file's) must not tie the two together: each steps its
    own moments and counters."""
    alone, first = _params(), _params()
    _run(AdamW(_groups(alone)), alone, range(3))
    opt = AdamW(_groups(first))
    _run(opt, first, range(2))
    twin = AdamW(_groups([torch.nn.Parameter(p.detach().clone()) for p in first]))
    twin.load_state_dict(opt.state_dict())
    _run(twin, [p for g in twin.param_groups for p in g["params"]], range(2, 3), seed=5)  # other gradients
    _run(opt, first, range(2, 3))
    assert _same(first, alone)
