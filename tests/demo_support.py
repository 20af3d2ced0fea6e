"""Real artefacts for the app's tests: tiny trained checkpoints, a damaged one, a tiny ablation study,
and a launched ``python app.py`` on a free port. Imported by the tests/test_demo_*.py, client and browser tests.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from gptcore.experiments.ablate import Arm, Study, run_study
from gptcore.data import Corpus
from gptcore.presets import get_preset
from gptcore.snapshots import SNAPSHOTS_FILE
from gptcore.training import Trainer
from bench.served_app import free_port, launched_app  # noqa: F401 (imported by the tests from here)
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
    """``root`` with a trained tiny GPT (with snapshots), the same trained briefly, the same on BPE tokens with
    rotary positions, a briefly trained bigram and a damaged copy of the GPT."""
    root.mkdir(parents=True, exist_ok=True)
    Trainer(get_preset("tiny").with_overrides({"threads": 1, "snapshot_interval": 10}), corpus, root / "tiny",
            command="pytest").run()
    # the same model trained for ten steps only: a weaker one that reads text alike, to compare with
    Trainer(get_preset("tiny").with_overrides({"threads": 1, "max_iters": 10, "eval_interval": 10}), corpus,
            root / "brief", command="pytest").run()
    bpe = get_preset("tiny").with_overrides(BPE_ROPE)
    text = corpus.tokenizer.decode(torch.cat([corpus.train, corpus.val]).tolist())
    Trainer(bpe, Corpus.from_text(text, recipe=bpe.train), root / "tiny-bpe-rope", command="pytest").run()
    Trainer(get_preset("bigram").with_overrides({"threads": 1, "max_iters": 20, "eval_interval": 10}), corpus,
            root / "bigram", command="pytest").run()
    shutil.copytree(root / "tiny", root / "damaged", ignore=shutil.ignore_patterns(SNAPSHOTS_FILE))
    weights = root / "damaged" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return root


def make_ablations(directory: Path, corpus: Corpus) -> Path:
    """A real results file (``heads.json``) from gptcore's runner: two arms, two seeds, six steps each, the first
    seed of each arm with its model kept (``models/heads-1``, ``models/heads-2``)."""
    budget = tiny_train(max_iters=6, warmup_iters=1, eval_interval=3, eval_windows=4).validate()
    run_study(TINY_STUDY, corpus, directory, seeds=2, budget=budget, command="pytest", quiet=True, keep_models=True)
    return directory


# the test apps' longest generation: so long that Stop lands mid-way on any machine, however fast it samples
APP_MAX_NEW_TOKENS = 100_000


def app_env(checkpoints: Path, runs: Path, ablations: Path, port: int) -> dict:
    env = dict(os.environ, GPTCORE_MAX_NEW_TOKENS=str(APP_MAX_NEW_TOKENS), GPTCORE_CHECKPOINTS=str(checkpoints), GPTCORE_APP_RUNS=str(runs),
               GPTCORE_ABLATIONS=str(ablations), GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def unwrap_updates(value):
    """The value inside a gr.update dict, or the value itself."""
    return value.get("value") if isinstance(value, dict) and "__type__" in value else value
