"""Training with several processes (DistributedDataParallel, gloo, 2 x 1 thread): the same trajectory as one
process accumulating the same micro-batches, exact resume, resume with another number of processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from demo_support import free_port
from ddp_support import train
from gptcore.checkpoint import load_checkpoint
from gptcore.storage import load_tensors

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STEPS = {"max_iters": 40, "eval_interval": 10, "eval_windows": 8, "sample_interval": 0, "batch_size": 8}


def history(out: Path) -> list[dict]:
    return json.loads((out / "metrics.json").read_text())["history"]


def weights(out: Path) -> dict:
    return load_checkpoint(out).model.state_dict()


def assert_close_runs(a: Path, b: Path, tol: float) -> None:
    ha, hb = history(a), history(b)
    assert [h["step"] for h in ha] == [h["step"] for h in hb]
    for x, y in zip(ha, hb):
        assert x["val_loss"] == pytest.approx(y["val_loss"], abs=tol)
        assert x["tokens_seen"] == y["tokens_seen"]
    for name, w in weights(a).items():
        torch.testing.assert_close(weights(b)[name], w, atol=tol, rtol=tol, msg=name)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Two processes to the end, one process accumulating the same batches, and two processes stopped at step
    20 (copied by each test that resumes it)."""
    root = tmp_path_factory.mktemp("ddp")
    train(2, free_port(), STEPS, str(root / "ddp"))
    train(1, free_port(), {**STEPS, "grad_accum": 2}, str(root / "accum"))
    train(2, free_port(), STEPS, str(root / "stopped"), stop_at=20)
    return root


def stopped_run(runs: Path, out: Path) -> str:
    shutil.copytree(runs / "stopped", out)
    assert [h["step"] for h in history(out)] == [10, 20]
    return str(out)


def test_two_processes_follow_one_process_accumulating_the_same_batches(runs):
    assert_close_runs(runs / "ddp", runs / "accum", tol=1e-4)
    metrics = json.loads((runs / "ddp" / "metrics.json").read_text())
    assert metrics["tokens_seen"] == 40 * 2 * 8 * 32 and metrics["status"] == "finished"


def test_a_stopped_distributed_run_resumes_exactly(runs, tmp_path):
    out = stopped_run(runs, tmp_path / "resumed")
    train(2, free_port(), STEPS, out, resume=True)
    assert history(Path(out)) and [h["val_loss"] for h in history(Path(out))] == [
        h["val_loss"] for h in history(runs / "ddp")]
    for name, w in weights(runs / "ddp").items():
        assert torch.equal(weights(Path(out))[name], w), name


def test_a_distributed_run_resumes_with_another_number_of_processes(runs, tmp_path):
    out = stopped_run(runs, tmp_path / "fewer")
    train(1, free_port(), {**STEPS, "grad_accum": 2}, out, resume=True)  # the same global batch, one process
    assert_close_runs(Path(out), runs / "ddp", tol=1e-4)


def test_a_time_budget_paces_every_process_alike(tmp_path):
    """A time budget sets the learning rate from elapsed time: the processes must share one clock."""
    out = tmp_path / "budget"
    train(2, free_port(), {**STEPS, "max_iters": 100_000, "time_budget": 3.0, "eval_interval": 100_000,
                           "schedule": "linear"}, str(out), tick=0.01)  # a clock the test controls
    rank0, rank1 = (json.loads((out / f"lr-rank{r}.json").read_text()) for r in (0, 1))
    assert len(rank0) > 5 and rank0 == rank1
    assert json.loads((out / "metrics.json").read_text())["status"] == "stopped"


def test_torchrun_runs_the_train_command(tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={free_port()}", "-m", "gptcore", "train", "--preset", "tiny",
                           "--max-iters", "10", "--device", "cpu", "--set", "threads=1", "--out", str(out), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1 and json.loads(lines[0])["steps"] == 10  # rank 0 alone reports
    assert all(t.device.type == "cpu" for t in load_tensors(out / "model.safetensors").values())
