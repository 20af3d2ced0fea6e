"""Shared fixtures: the corpus (from $GPTCORE_DATA or ../shared/data) and a tiny trained checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
_LOCAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyshakespeare.txt"
if "GPTCORE_DATA" not in os.environ and _LOCAL.is_file():
    os.environ["GPTCORE_DATA"] = str(_LOCAL)

from gptcore.config import ModelConfig  # noqa: E402
from gptcore.data import Corpus  # noqa: E402
from gptcore.device import available_devices  # noqa: E402
from tests.tiny_configs import tiny_model  # noqa: E402

DEVICE_TYPES = ("cpu", "cuda", "mps")


@pytest.fixture(params=DEVICE_TYPES)
def device(request) -> torch.device:
    """Each device type in turn: a test that takes this fixture runs on the CPU everywhere, and on CUDA and
    Apple's MPS where the machine has them (and is skipped, saying so, where it has not)."""
    if request.param not in available_devices():
        pytest.skip(f"no {request.param} device on this machine")
    return torch.device(request.param)


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return Corpus.load()


@pytest.fixture(scope="session")
def corpus_text() -> str:
    from gptcore.data import read_corpus, resolve_corpus
    return read_corpus(resolve_corpus())


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, corpus) -> Path:
    """The `tiny` preset trained for its 60 steps: a real, loadable checkpoint."""
    from gptcore.presets import get_preset
    from gptcore.training import Trainer

    out = tmp_path_factory.mktemp("tiny")
    Trainer(get_preset("tiny"), corpus, out, command="pytest fixture").run()
    return out


@pytest.fixture(scope="session")
def demo_checkpoints(tmp_path_factory, corpus) -> Path:
    """The app's test checkpoints (demo_support.make_checkpoints), trained once for every module that only
    reads them."""
    from demo_support import make_checkpoints

    return make_checkpoints(tmp_path_factory.mktemp("demo-ckpts"), corpus)


@pytest.fixture(scope="session")
def demo_ablations(tmp_path_factory, corpus) -> Path:
    """A real results file of the tiny ablation study (demo_support.make_ablations), run once."""
    from demo_support import make_ablations

    return make_ablations(tmp_path_factory.mktemp("demo-ablations") / "ablations", corpus)


@pytest.fixture(scope="session")
def app_url(tmp_path_factory, demo_checkpoints, demo_ablations):
    """``python app.py`` serving the test checkpoints and the tiny study, started once for every module that
    drives the app from outside (gradio_client, the browser); stopped, with its whole process group, at the end."""
    from demo_support import app_env, free_port, launched_app

    root = tmp_path_factory.mktemp("app")
    with launched_app(app_env(demo_checkpoints, root / "runs", demo_ablations, free_port()), root / "app.log") as url:
        yield url


def small_config(**overrides) -> ModelConfig:
    """The tiny model at a context of 16 (tests/tiny_configs.py)."""
    return tiny_model(**{"block_size": 16, **overrides})


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
