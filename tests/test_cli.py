import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gptcore.cli import main
from gptcore.snapshots import Snapshots

pytestmark = pytest.mark.slow  # starts gptcore's commands as processes: started first, beside the rest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "gptcore", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ}, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def in_process(capsys, *args) -> str:
    capsys.readouterr()
    assert main(list(args)) == 0
    return capsys.readouterr().out


def test_train_eval_sample_end_to_end(tmp_path, capsys):
    out = tmp_path / "tiny"
    trained = json.loads(run("train", "--preset", "tiny", "--out", str(out), "--quiet", "--seed", "3",
                             "--snapshots", "20").stdout)
    assert trained["steps"] == 60
    assert Snapshots.load(out).steps == [0, 20, 40, 60]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["command"].startswith("python -m gptcore train --preset tiny")
    evaluated = json.loads(run("eval", "--checkpoint", str(out)).stdout)
    assert in_process(capsys, "eval", "--checkpoint", str(out)) == run("eval", "--checkpoint", str(out)).stdout
    assert evaluated["val_loss"] == pytest.approx(trained["val_loss"], abs=1e-4)
    assert evaluated["params"] == trained["params"] and evaluated["val_tokens"] == 111_540
    sample = run("sample", "--checkpoint", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "40", "--seed", "1").stdout
    assert sample.startswith("ROMEO:") and len(sample) == len("ROMEO:") + 40 + 1
    again = in_process(capsys, "sample", "--checkpoint", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "40",
                       "--seed", "1")
    assert again == sample
    # training stored a draft; rebuilding it gives the same table, and greedy text is the same without it
    assert (out / "draft.pt").is_file()
    before = (out / "draft.pt").read_bytes()
    assert json.loads(in_process(capsys, "draft", "--checkpoint", str(out)))["contexts"] > 0
    assert (out / "draft.pt").read_bytes() == before
    greedy = ["sample", "--checkpoint", str(out), "--prompt", "ROMEO:", "--max-new-tokens", "80", "--temperature", "0"]
    assert in_process(capsys, *greedy) == in_process(capsys, *greedy, "--no-draft")
    resumed = json.loads(run("train", "--preset", "tiny", "--out", str(out), "--quiet", "--seed", "3",
                             "--max-iters", "80", "--resume", "--snapshots", "20").stdout)
    assert resumed["steps"] == 80
    assert Snapshots.load(out).steps == [0, 20, 40, 60, 80]
    assert "tiny" in in_process(capsys, "presets")


@pytest.mark.parametrize("args, message", [
    (["train", "--preset", "nope", "--out", "x"], "unknown preset"),
    (["train", "--preset", "tiny", "--out", "x", "--set", "n_head=3"], "divisible"),
    (["train", "--preset", "tiny"], "--out"),
    (["sample", "--checkpoint", "does/not/exist"], "not found"),
    (["sample", "--checkpoint", "checkpoints/bigram", "--temperature", "-1"], "temperature"),
    (["sample", "--checkpoint", "checkpoints/bigram", "--top-p", "2"], "top_p"),
    (["sample", "--checkpoint", "checkpoints/bigram", "--prompt", "naïve"], "'ï'"),
    (["eval", "--checkpoint", "checkpoints/bigram", "--data", "missing.txt"], "not found"),
    (["draft", "--checkpoint", "checkpoints/bigram", "--order", "0"], "order"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments_give_one_line(args, message, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert main(args) != 0  # main catches input errors; anything else would raise here
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines


def test_bad_arguments_in_a_real_process_print_no_traceback():
    proc = run("train", "--preset", "tiny", "--out", "x", "--set", "lr=-1", check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == "error: lr must be positive and min_lr_ratio in [0, 1]"


def test_the_installed_gptcore_command_is_the_cli():
    """README's test command installs the package (``-e .``): its console script is ``gptcore.cli:main``."""
    import importlib.metadata
    import shutil

    (script,) = importlib.metadata.entry_points(group="console_scripts", name="gptcore")
    assert script.value == "gptcore.cli:main"
    proc = subprocess.run([shutil.which("gptcore"), "presets"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "nanogpt-baby" in proc.stdout and "gpu-speedrun" in proc.stdout


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_an_interrupted_training_run_says_where_its_checkpoint_is(tmp_path, sig):
    """Also when SIGINT was inherited as ignored (a job a non-interactive shell started in the background)."""
    import signal
    import time

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "gptcore", "train", "--preset", "tiny", "--out", str(out),
                             "--quiet", "--max-iters", "100000", "--set", "eval_interval=20"],
                            cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 900  # only against a hang: a busy machine may take minutes to start
        while not (out / "train_state.pt").exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == f"error: interrupted: the last evaluated checkpoint is in {out}; " \
                                           "continue with --resume"
    from gptcore.checkpoint import load_checkpoint

    assert load_checkpoint(out).metrics["status"] == "training"  # loadable: nothing lost


def test_a_bpe_model_trains_evaluates_and_samples(tmp_path, capsys):
    out = tmp_path / "bpe"
    trained = json.loads(in_process(capsys, "train", "--preset", "tiny", "--out", str(out), "--quiet",
                                    "--set", "tokenizer=bpe", "--set", "bpe_vocab_size=300", "--max-iters", "20"))
    assert trained["val_nats_per_char"] < trained["val_loss"]  # a token holds more than one character
    evaluated = json.loads(in_process(capsys, "eval", "--checkpoint", str(out)))
    assert evaluated["tokenizer"] == "bpe" and evaluated["val_nats_per_char"] == pytest.approx(
        trained["val_nats_per_char"], abs=1e-4)
    assert evaluated["val_tokens"] < 111_540  # the same validation text, in fewer tokens
    assert json.loads((out / "tokenizer.json").read_text())["type"] == "bpe"
    greedy = ["sample", "--checkpoint", str(out), "--prompt", "ROMEO: naïve 😀", "--max-new-tokens", "60",
              "--temperature", "0"]
    text = in_process(capsys, *greedy)
    assert text.startswith("ROMEO: naïve 😀") and text == in_process(capsys, *greedy, "--no-draft")
