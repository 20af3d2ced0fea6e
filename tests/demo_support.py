"""Real artefacts for the app's tests: tiny trained checkpoints, a damaged one, a tiny ablation study,
and a launched ``python app.py`` on a free port. Imported by the tests/test_demo_*.py, client and browser tests.
"""

from __future__ import annotations

import os
import shutil
import socket
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch

from gptcore.experiments.ablate import Arm, Study, run_study
from gptcore.data import Corpus
from gptcore.presets import get_preset
from gptcore.training import Trainer
from tests.tiny_configs import tiny_model, tiny_train

REPO = Path(__file__).resolve().parents[1]
TINY_STUDY = Study("heads", "heads of a tiny model", "more heads help",
                   (Arm("1", "1 head", 1, {"n_head": 1}, writeup_val_loss=1.7172),
                    Arm("2", "2 heads", 2, {"n_head": 2}, writeup_val_loss=1.6691)),
                   base_model=tiny_model(),
                   comparisons=(("2", "1"),))


BPE_ROPE = {"threads": 1, "tokenizer": "bpe", "bpe_vocab_size": 320, "pos_emb": "rope"}


def view_data(view_html: str, key: str):
    """The JSON an interactive view carries for its script, read back from its ``data-j<key>`` attribute."""
    import html
    import json
    import re

    match = re.search(rf'data-j{key}="([^"]*)"', view_html)
    return json.loads(html.unescape(match.group(1)))


def make_checkpoints(root: Path, corpus: Corpus) -> Path:
    """``root`` with a trained tiny GPT, the same on BPE tokens with rotary positions, a briefly trained bigram
    and a damaged copy of the GPT."""
    root.mkdir(parents=True, exist_ok=True)
    Trainer(get_preset("tiny").with_overrides({"threads": 1}), corpus, root / "tiny", command="pytest").run()
    bpe = get_preset("tiny").with_overrides(BPE_ROPE)
    text = corpus.tokenizer.decode(torch.cat([corpus.train, corpus.val]).tolist())
    Trainer(bpe, Corpus.from_text(text, recipe=bpe.train), root / "tiny-bpe-rope", command="pytest").run()
    Trainer(get_preset("bigram").with_overrides({"threads": 1, "max_iters": 20, "eval_interval": 10}), corpus,
            root / "bigram", command="pytest").run()
    shutil.copytree(root / "tiny", root / "damaged")
    weights = root / "damaged" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return root


def make_ablations(directory: Path, corpus: Corpus) -> Path:
    """A real results file (``heads.json``) from gptcore's runner: two arms, two seeds, six steps each."""
    budget = tiny_train(max_iters=6, warmup_iters=1, eval_interval=3, eval_windows=4).validate()
    run_study(TINY_STUDY, corpus, directory, seeds=2, budget=budget, command="pytest", quiet=True)
    return directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# the test apps' longest generation: so long that Stop lands mid-way on any machine, however fast it samples
APP_MAX_NEW_TOKENS = 100_000


def app_env(checkpoints: Path, runs: Path, ablations: Path, port: int) -> dict:
    env = dict(os.environ, GPTCORE_MAX_NEW_TOKENS=str(APP_MAX_NEW_TOKENS), GPTCORE_CHECKPOINTS=str(checkpoints), GPTCORE_APP_RUNS=str(runs),
               GPTCORE_ABLATIONS=str(ablations), GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


@contextmanager
def launched_app(env: dict, log: Path, timeout: float = 600.0) -> Iterator[str]:
    """Run ``python app.py`` (README's command) and yield its URL once the first page is served. The app runs
    in a process group of its own, ended whole afterwards, so a training process it started cannot outlive
    the test whatever happened. ``timeout`` only guards against a hang: a busy machine starts slowly."""
    url = f"http://127.0.0.1:{env['GRADIO_SERVER_PORT']}/"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"app.py exited with {process.returncode}:\n{log.read_text()}")
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"app.py did not serve {url} within {timeout} s:\n{log.read_text()}")
                time.sleep(0.2)
            yield url
        finally:
            end_process_group(process)


def end_process_group(process: subprocess.Popen) -> None:
    """Terminate ``process`` and everything in its process group, killing what has not ended after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the leader is gone; its group may not be
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def unwrap_updates(value):
    """The value inside a gr.update dict, or the value itself."""
    return value.get("value") if isinstance(value, dict) and "__type__" in value else value
