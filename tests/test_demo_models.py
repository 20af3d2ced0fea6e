"""Models tab event functions: download any model, upload it (or a nanoGPT checkpoint) into one session, and
hostile uploads refused without anything in them running or landing outside the app's folder."""

from __future__ import annotations

import inspect
import pickle
import zipfile
from pathlib import Path

import gradio as gr
import pytest
import torch

from demo.tabs.attention import attention_view, show_attention
from demo.tabs import inside
from demo.tabs.models import download_model, prune_uploads, upload_model
from demo.server.registry import ModelRegistry
from demo.tabs.sample import on_generate
from demo.server.settings import Limits
from demo.server.sessions import per_session
from demo.server.uploads import MAX_UNPACKED_BYTES
from gptcore.checkpoint import load_checkpoint

LIMITS = Limits()
NANOGPT = Path(__file__).resolve().parents[2] / "shared" / "nanogpt" / "char-tiny"


@pytest.fixture(scope="module")
def root(demo_checkpoints) -> Path:
    return demo_checkpoints


@pytest.fixture
def registry(root, tmp_path) -> ModelRegistry:
    return ModelRegistry(root, tmp_path / "runs", default="tiny")


def sample_text(view: ModelRegistry, checkpoint: str) -> str:
    return list(on_generate(view, LIMITS, checkpoint, "ROMEO:", 0.0, 0, 1.0, 20, 1))[-1][0]


def test_a_downloaded_model_uploads_into_one_session_only(registry, tmp_path):
    zipped = Path(download_model(registry.for_session("a"), "tiny-bpe-rope"))
    assert zipped.suffix == ".zip" and zipped.is_relative_to(registry.runs_dir)
    with zipfile.ZipFile(zipped) as z:
        assert sorted(z.namelist()) == sorted(f"tiny-bpe-rope/{n}" for n in (
            "model.safetensors", "config.json", "tokenizer.json", "metrics.json", "draft.pt"))
        z.extractall(tmp_path / "unzipped")
    load_checkpoint(tmp_path / "unzipped" / "tiny-bpe-rope")  # gptcore loads the download as it is

    mine, theirs = registry.for_session("session-1"), registry.for_session("session-2")
    status = upload_model(mine, LIMITS, [str(zipped)], "")
    assert "uploaded/tiny-bpe-rope" in status and "gptcore checkpoint" in status
    assert "uploaded/tiny-bpe-rope" in mine.names() and "uploaded/tiny-bpe-rope" in mine.names(attention_only=True)
    assert "uploaded/tiny-bpe-rope" not in theirs.names() and "uploaded/tiny-bpe-rope" not in registry.names()
    assert sample_text(mine, "uploaded/tiny-bpe-rope") == sample_text(registry, "tiny-bpe-rope")
    view = attention_view(mine, LIMITS, "uploaded/tiny-bpe-rope", "to be or not", "1", "1")
    assert 'data-unit="token"' in view.html and view.roles[0][:2] == [1, 1]
    assert inside.predictions_api(mine, LIMITS, "uploaded/tiny-bpe-rope", "to be or not")["tokens"]
    with pytest.raises(gr.Error, match="unknown checkpoint"):
        sample_text(theirs, "uploaded/tiny-bpe-rope")
    with pytest.raises(gr.Error, match="already uploaded"):
        upload_model(mine, LIMITS, [str(zipped)], "")
    assert "uploaded/copy" in upload_model(mine, LIMITS, [str(zipped)], "copy")
    assert not list(mine.uploads_dir.glob(".upload-*"))  # no scratch folder left behind


@pytest.mark.skipif(not (NANOGPT / "ckpt.pt").is_file(), reason=f"nanoGPT's reference checkpoint is not at {NANOGPT}")
def test_a_nanogpt_checkpoint_uploads_with_its_vocabulary(registry):
    view = registry.for_session("s")
    with pytest.raises(gr.Error, match="needs its meta.pkl"):
        upload_model(view, LIMITS, [str(NANOGPT / "ckpt.pt")], "ng")
    status = upload_model(view, LIMITS, [str(NANOGPT / "ckpt.pt"), str(NANOGPT / "meta.pkl")], "ng")
    assert "nanoGPT checkpoint" in status and "uploaded/ng" in view.names()
    assert sample_text(view, "uploaded/ng").startswith("ROMEO:")
    reference = torch.load(NANOGPT / "reference_logits.pt", weights_only=True)
    with torch.no_grad():
        logits = view.get("uploaded/ng").model(reference["input_ids"])[0]
    assert (logits - reference["logits"]).abs().max().item() < 1e-5


def _zip(path: Path, members: dict[str, bytes], link: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        if link:
            info = zipfile.ZipInfo(link)
            info.external_attr = 0o120777 << 16
            z.writestr(info, "/etc/passwd")
    return path


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def hostile_uploads(tmp_path: Path, root: Path) -> list[tuple[list[Path], str]]:
    good = {p.name: p.read_bytes() for p in (root / "tiny").iterdir() if p.name not in ("manifest.json", "train_state.pt", "snapshots.pt")}
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", good["config.json"])
        with z.open("model.safetensors", "w", force_zip64=True) as f:  # inflates past the limit
            for _ in range(MAX_UNPACKED_BYTES // 2**20 + 2):
                f.write(bytes(2**20))
    code = tmp_path / "code.pt"
    torch.save({"model": _RunsCode(tmp_path / "ran-ckpt"), "model_args": {}}, code)
    meta = tmp_path / "meta.pkl"
    meta.write_bytes(pickle.dumps({"itos": {0: "a"}, "x": _RunsCode(tmp_path / "ran-meta")}))
    text = tmp_path / "notes.zip"
    text.write_text("not a zip at all")
    return [
        ([_zip(tmp_path / "up.zip", {"../../escape/config.json": good["config.json"]})], "holds '../../escape"),
        # a parent folder one level up: the `..` check alone refuses it (its name would otherwise pass)
        ([_zip(tmp_path / "parent.zip", {f"../{n}": data for n, data in good.items()})], "holds '../"),
        ([_zip(tmp_path / "abs.zip", {"/etc/config.json": good["config.json"]})], "holds '/etc"),
        ([_zip(tmp_path / "other.zip", {"config.json": good["config.json"], "run.sh": b"rm -rf /"})], "holds 'run.sh'"),
        ([_zip(tmp_path / "link.zip", {"config.json": good["config.json"]}, link="model.safetensors")], "link"),
        ([_zip(tmp_path / "two.zip", {"a/config.json": b"{}", "b/config.json": b"{}"})], "several folders"),
        ([_zip(tmp_path / "none.zip", {"tokenizer.json": good["tokenizer.json"]})], "no config.json"),
        ([_zip(tmp_path / "broken.zip", {**good, "model.safetensors": good["model.safetensors"][:100]})],
         "not a usable model"),
        ([bomb], "more than"),
        ([text], "one checkpoint zip"),
        ([code, meta], "not a usable model"),
        ([_zip(tmp_path / "ok.zip", good), meta], "not needed"),
        ([], "choose a file"),
    ]


def test_hostile_uploads_are_refused_clearly_and_nothing_runs(registry, root, tmp_path):
    view = registry.for_session("s")
    for files, message in hostile_uploads(tmp_path, root):
        with pytest.raises(gr.Error, match=message):
            upload_model(view, LIMITS, [str(f) for f in files], "")
    assert not (tmp_path / "ran-ckpt").exists() and not (tmp_path / "ran-meta").exists()
    assert not (tmp_path / "escape").exists() and not (registry.runs_dir.parent / "escape").exists()
    assert [p.name for p in view.uploads_dir.iterdir()] == []  # nothing kept, no scratch folder left
    with pytest.raises(gr.Error, match="limit"):
        upload_model(view, Limits(max_model_upload_bytes=1000), [str(root / "tiny" / "model.safetensors")], "")
    with pytest.raises(gr.Error, match="session"):
        upload_model(registry, LIMITS, [str(tmp_path / "ok.zip")], "")


def test_a_zipped_run_folder_uploads_as_it_is(registry, root, tmp_path):
    """A run folder zipped by hand also holds its manifest, training state and snapshots: accepted, and left out."""
    files = {f"tiny/{p.name}": p.read_bytes() for p in (root / "tiny").iterdir() if p.is_file()}
    assert {"tiny/train_state.pt", "tiny/manifest.json", "tiny/snapshots.pt"} <= set(files)
    view = registry.for_session("s")
    assert "uploaded/tiny" in upload_model(view, LIMITS, [str(_zip(tmp_path / "run.zip", files))], "")
    assert sorted(p.name for p in (view.uploads_dir / "tiny").iterdir()) == [
        "config.json", "draft.pt", "metrics.json", "model.safetensors", "tokenizer.json"]


def test_a_model_saved_in_several_weights_files_downloads_and_uploads(root, tmp_path):
    """Weights in bounded files (as the ablation arms' kept models): the download zips every part, the upload
    takes them, and the model is the same; the upload's names are gptcore's."""
    from demo.server import uploads
    from demo.tabs.models import download_model
    from gptcore import checkpoint

    assert uploads.CHECKPOINT_FILES == {*checkpoint.SHIPPED_FILES, checkpoint.LEGACY_WEIGHTS, *checkpoint.WEIGHT_PARTS}
    ck = load_checkpoint(root / "tiny")
    checkpoint.save_checkpoint(tmp_path / "shelf" / "split", ck.model, ck.config, ck.tokenizer, ck.metrics,
                               max_file_bytes=(1 << 16) + 100_000)
    parts = [p.name for p in checkpoint.weights_files(tmp_path / "shelf" / "split")]
    assert parts[:2] == ["model.safetensors", "model-2.safetensors"]
    registry = ModelRegistry(tmp_path / "shelf", tmp_path / "runs", default="split")
    with zipfile.ZipFile(download_model(registry.for_session("a"), "split")) as archive:
        assert {f"split/{name}" for name in parts} <= set(archive.namelist())
    view = registry.for_session("b")
    assert "uploaded/split" in upload_model(view, LIMITS, [download_model(view, "split")], "")
    uploaded = view.get("uploaded/split").model.state_dict()
    assert all(torch.equal(uploaded[k], v) for k, v in ck.model.state_dict().items())


def test_a_nanogpt_pickle_with_code_is_refused_without_running(registry, tmp_path):
    if not (NANOGPT / "ckpt.pt").is_file():
        pytest.skip(f"nanoGPT's reference checkpoint is not at {NANOGPT}")
    meta = tmp_path / "meta.pkl"
    meta.write_bytes(pickle.dumps({"itos": {0: "a"}, "x": _RunsCode(tmp_path / "ran")}))
    with pytest.raises(gr.Error, match="only plain data"):
        upload_model(registry.for_session("s"), LIMITS, [str(NANOGPT / "ckpt.pt"), str(meta)], "")
    assert not (tmp_path / "ran").exists()


def test_old_uploads_are_pruned(registry):
    view = registry.for_session("old")
    folder = view.uploads_dir / "m"
    folder.mkdir(parents=True)
    prune_uploads(registry.runs_dir, max_age_s=3600)
    assert folder.exists()
    prune_uploads(registry.runs_dir, max_age_s=-1)
    assert not view.uploads_dir.exists()


def test_per_session_wrappers_keep_the_api_parameters_and_take_the_request(registry):
    wrapped = per_session(on_generate, registry, LIMITS)
    names = list(inspect.signature(wrapped).parameters)
    assert names == ["checkpoint", "prompt", "temperature", "top_k", "top_p", "max_new_tokens", "seed", "unknown",
                     "request"]
    assert inspect.isgeneratorfunction(wrapped)

    class Request:  # what Gradio hands in: only the session id matters here
        session_hash = "abc"

    assert list(wrapped("tiny", "ROMEO:", 0.0, 0, 1.0, 5, 1, "replace", Request()))[-1][0].startswith("ROMEO:")
    seen = []
    probe = per_session(lambda reg, checkpoint: seen.append(reg.uploads_dir), registry)
    probe("tiny", Request())
    assert seen[0].parent == registry.runs_dir / "uploads" and "abc" not in str(seen[0])


def test_gpu_work_runs_as_is_outside_zero_gpu_and_live_training_moves_to_the_cpu_on_it(registry, monkeypatch):
    import spaces  # installed with the app's requirements: its decorator is a no-op off ZeroGPU

    from demo.server.gpu import on_gpu, training_device

    def task(x):
        return x + 1

    assert on_gpu(task, 10) is task and spaces.GPU(duration=10)(task) is task
    wrapped = per_session(on_generate, registry, LIMITS, gpu_seconds=60)
    assert list(inspect.signature(wrapped).parameters)[0] == "checkpoint" and inspect.isgeneratorfunction(wrapped)
    assert list(wrapped("tiny", "ROMEO:", 0.0, 0, 1.0, 5, 1, "replace", None))[-1][0].startswith("ROMEO:")
    assert training_device("auto") == "auto"
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert training_device("auto") == "cpu"


def test_what_crosses_to_a_zero_gpu_worker_pickles(registry):
    """ZeroGPU sends a GPU function's arguments and results through a pickling queue to its worker."""
    from demo.tabs.sample import on_next_token_chart

    args = ("session-id", "tiny", "ROMEO:", 0.8, 0, 1.0, 20, 1, "replace")
    assert pickle.loads(pickle.dumps(args)) == args
    results = [list(on_generate(registry, LIMITS, *args[1:]))[-1], on_next_token_chart(registry, LIMITS, "tiny", "ROMEO:",
                                                                                  1.0, 0, 1.0),
               show_attention(registry, LIMITS, "tiny", "to be or not", "1", "1"),
               show_attention(registry, LIMITS, "tiny", "to be or not", "all", "all"),
               inside.predictions_view(registry, LIMITS, "tiny", "to be"),
               inside.logit_lens_view(registry, LIMITS, "tiny", "to be"),
               inside.embeddings_view(registry, "tiny"),
               inside.heads_off_view(registry, LIMITS, "tiny", "to be", ["1.1"]),
               inside.each_head(registry, LIMITS, "tiny", "to be"),
               inside.heads_off_api(registry, LIMITS, "tiny", "to be", ["1.1"])]
    for result in results:
        pickle.loads(pickle.dumps(result))
    with pytest.raises(gr.Error) as error:
        list(on_generate(registry, LIMITS, "nope", "x", 0.8, 0, 1.0, 5, 1, "replace"))
    assert "unknown checkpoint" in str(pickle.loads(pickle.dumps(error.value)))


def test_a_run_stopped_before_its_first_step_is_not_offered(root, tmp_path):
    """Its checkpoint holds the random initial weights: no picker lists it; a run that trained a step is listed."""
    import json
    import shutil

    runs = tmp_path / "runs"
    for name, steps in (("20260101-000000-quick", 0), ("20260101-000001-quick", 10)):
        shutil.copytree(root / "tiny", runs / name)
        metrics = json.loads((runs / name / "metrics.json").read_text())
        metrics.update(status="stopped", steps=steps)
        (runs / name / "metrics.json").write_text(json.dumps(metrics))
    names = ModelRegistry(root, runs).names()
    assert "trained/20260101-000001-quick" in names and "trained/20260101-000000-quick" not in names


def test_the_upload_limit_is_stated_once_in_the_same_words(registry, tmp_path):
    """The Models tab's text and the refusal of a file past the limit name the same number of MB."""
    import re

    from demo.tabs.models import build_tab

    with gr.Blocks() as page:
        build_tab(registry, LIMITS)
    texts = " ".join(str(getattr(block, "value", "")) for block in page.blocks.values())
    (stated,) = set(re.findall(r"Up to ([\d.]+ MB) a file", texts))
    big = tmp_path / "ckpt.pt"
    big.write_bytes(b"\0" * (LIMITS.max_model_upload_bytes + 1))
    with pytest.raises(gr.Error) as refused:
        upload_model(registry.for_session("s"), LIMITS, [str(big)], "big")
    assert f"the limit is {stated}" in str(refused.value)


def test_downloads_work_when_the_runs_folder_is_outside_the_working_and_temp_directories(root, tmp_path, monkeypatch):
    """Gradio serves only the working directory, the temp directory and ``allowed_paths``: a runs folder
    elsewhere (``GPTCORE_APP_RUNS``) must still give its download zips, and nothing else of it."""
    import tempfile

    from gradio_client import Client

    from demo.app import build_app, launch_options
    from demo.server.settings import AppSettings
    from demo_support import free_port

    elsewhere_tmp = tmp_path / "tmp"
    elsewhere_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(elsewhere_tmp))  # the runs folder is not under the temp directory
    settings = AppSettings(checkpoints_dir=root, runs_dir=tmp_path / "runs", ablations_dir=tmp_path / "abl",
                           default_checkpoint="tiny")
    demo = build_app(settings, preload=False)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                **launch_options(settings))
    try:
        zipped = Client(f"http://127.0.0.1:{port}/", verbose=False).predict("tiny", api_name="/download_model")
        with zipfile.ZipFile(zipped) as archive:
            assert "tiny/model.safetensors" in archive.namelist()
    finally:
        demo.close()
    assert launch_options(settings)["allowed_paths"] == [str(settings.runs_dir / "downloads")]


def test_no_message_a_visitor_sees_names_a_server_folder(registry, root, tmp_path):
    """Every refusal goes through user_errors, which cuts absolute paths to their last part."""
    from demo.server.inputs import user_errors, without_paths

    assert without_paths("cannot read /srv/app/runs/uploads/abc123/ckpt.pt: truncated") == \
        "cannot read ckpt.pt: truncated"
    kept = "50 MB/s, n_embd/n_head, https://pytorch.org/get-started and `gptcore ablate --out DIR`"
    assert without_paths(kept) == kept
    with pytest.raises(gr.Error) as refused:
        with user_errors():
            raise ValueError(f"{tmp_path}/uploads/x/meta.pkl is not a pickle")
    assert str(tmp_path) not in str(refused.value) and "meta.pkl is not a pickle" in str(refused.value)
    for files, _ in hostile_uploads(tmp_path, root):  # what the server says of each hostile upload
        with pytest.raises(gr.Error) as refused:
            upload_model(registry.for_session("s"), LIMITS, [str(f) for f in files], "")
        assert str(tmp_path) not in str(refused.value) and str(root) not in str(refused.value)


@pytest.mark.parametrize("limits, message", [
    (Limits(upload_check_memory_bytes=1), "checking the upload needed more than 1 B of memory: refused"),
    (Limits(upload_check_seconds=0.001), r"checking the upload took longer than 0.001 s: refused"),
])
def test_an_upload_is_checked_in_a_child_held_to_its_memory_and_time(registry, limits, message):
    """Whatever the loaders miss, checking an upload cannot take the server's memory or a core for good: the
    check runs in a child process that is refused memory past its limit and killed past its time."""
    import multiprocessing

    view = registry.for_session("s")
    files = [str(NANOGPT / "ckpt.pt"), str(NANOGPT / "meta.pkl")]
    with pytest.raises(gr.Error, match=message):
        upload_model(view, limits, files, "ng")
    assert [c for c in multiprocessing.active_children() if c.is_alive()] == []  # the child is gone
    assert "uploaded/ng" in upload_model(view, LIMITS, files, "ng")  # and the same files pass at the defaults
