"""Shared fixtures: the corpus (from $GPTCORE_DATA or ../shared/data) and a tiny trained checkpoint.

Under pytest-xdist (``-n 2``, as `.ci/run` runs the suite) each worker trains with one thread, so two
workers share the cores instead of fighting over them; a test module runs whole on one worker, the two
modules that drive the app share one worker and one app, and the read-only session fixtures are built
once for all workers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

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
APP_MODULES = ("test_app_client", "test_browser", "test_load")


def pytest_configure(config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"  # for the processes a test starts, too
        torch.set_num_threads(1)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items) -> None:
    """One group per module for ``--dist loadgroup``: module fixtures are built once, and the modules that
    drive the app from outside share the one that `app_url` starts."""
    for item in items:
        name = item.module.__name__.rpartition(".")[2]
        item.add_marker(pytest.mark.xdist_group("app" if name in APP_MODULES else name))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session) -> None:
    """The slow modules first (after pytest has grouped the items by fixture), so that the workers finish
    together rather than one waiting on the other's last long module."""
    session.items.sort(key=lambda item: not (item.get_closest_marker("slow") or item.get_closest_marker("browser")))


def built_once(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """``build(folder)`` run by the first worker that asks, under a file lock; every worker gets the folder."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's folder, above each worker's own
    folder, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with FileLock(str(root / f"shared-{name}.lock")):
        if not done.exists():
            folder.mkdir(exist_ok=True)
            build(folder)
            done.touch()
    return folder


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

    return built_once(tmp_path_factory, "tiny",
                      lambda out: Trainer(get_preset("tiny"), corpus, out, command="pytest fixture").run())


@pytest.fixture(scope="session")
def demo_checkpoints(tmp_path_factory, corpus) -> Path:
    """The app's test checkpoints (demo_support.make_checkpoints), trained once for every module that only
    reads them."""
    from demo_support import make_checkpoints

    return built_once(tmp_path_factory, "demo-ckpts", lambda out: make_checkpoints(out, corpus))


@pytest.fixture(scope="session")
def demo_ablations(tmp_path_factory, corpus) -> Path:
    """A real results file of the tiny ablation study (demo_support.make_ablations), run once."""
    from demo_support import make_ablations

    folder = built_once(tmp_path_factory, "demo-ablations", lambda out: make_ablations(out / "ablations", corpus))
    return folder / "ablations"


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
def _seed_and_threads():
    """Every test starts from seed 0, and leaves torch's thread count as it found it (a run's ``threads``
    setting is process-wide)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
