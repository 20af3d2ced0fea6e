"""Models tab: bring a model (a gptcore checkpoint zip, or nanoGPT's ckpt.pt with its meta.pkl) and take any
model away as a zip that ``gptcore`` loads again.

An upload is visible to the browser session that made it (and to an API client in its own session), in
every model picker; it is kept in the app's runs folder for a day.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import gradio as gr

from gptcore.memory import human_bytes

from ..views.explain import how_to_read
from ..server.registry import ModelRegistry
from ..server.settings import DOWNLOADS, Limits
from ..server.sessions import per_session
from ..server.inputs import user_errors
from ..server.upload_child import add_model_in_child
from ..server.uploads import zip_checkpoint

UPLOAD_LIFETIME_S = 24 * 3600


def prune_uploads(root: Path, max_age_s: float = UPLOAD_LIFETIME_S) -> None:
    """Remove sessions' uploads (and download zips) not touched for ``max_age_s``: a public server's disk
    must not fill up with them."""
    now = time.time()
    for folder in (root / "uploads", root / DOWNLOADS):
        for child in folder.iterdir() if folder.is_dir() else []:
            try:
                if now - child.stat().st_mtime > max_age_s:
                    shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink()
            except OSError:
                pass


def upload_model(registry: ModelRegistry, limits: Limits, files: list[str] | None, name: str | None) -> str:
    """Check, convert and store an upload for this session; the status line says what it became."""
    with user_errors():
        if registry.uploads_dir is None:
            raise ValueError("uploads need a browser session (or a gradio_client session)")
        prune_uploads(registry.runs_dir)
        folder = add_model_in_child(files or [], name, registry.uploads_dir, limits)
        ck = registry.get(f"uploaded/{folder.name}")
        m = ck.config.model
        source = "nanoGPT checkpoint" if "imported_from" in ck.metrics else "gptcore checkpoint"
        return (f"Added **uploaded/{folder.name}** ({source}: {m.n_layer} layers × {m.n_head} heads, width "
                f"{m.n_embd}, context {m.block_size}, vocabulary {ck.tokenizer.vocab_size}). It is in every model "
                f"picker of this session.")


def download_model(registry: ModelRegistry, checkpoint: str) -> str:
    """A zip of the chosen model's files, in one folder named after it."""
    with user_errors():
        ck = registry.get(checkpoint)  # loads: a damaged model is an error here, not a broken download
        prune_uploads(registry.runs_dir)
        return str(zip_checkpoint(ck.path, registry.runs_dir / DOWNLOADS))


def build_tab(registry: ModelRegistry, limits: Limits) -> dict:
    how_to_read("models")
    with gr.Row(equal_height=False):
        with gr.Column(min_width=280):
            gr.Markdown("### Bring a model\nA gptcore checkpoint folder as a **zip**, or a nanoGPT **ckpt.pt** "
                        "together with its **meta.pkl** (the character vocabulary nanoGPT's prepare.py wrote). "
                        f"Up to {human_bytes(limits.max_model_upload_bytes)} a file. Nothing in the files is run: "
                        "weights load as plain tensors and the vocabulary as plain data.")
            files = gr.File(label="checkpoint zip, or ckpt.pt + meta.pkl", file_count="multiple",
                            file_types=[".zip", ".pt", ".pkl"], elem_id="upload-files")
            name = gr.Textbox(label="name (optional)", max_length=40, placeholder="my-model")
            add = gr.Button("Add model", variant="primary", elem_id="upload-btn")
            status = gr.Markdown(elem_id="upload-status")
        with gr.Column(min_width=280):
            gr.Markdown("### Take a model away\nAny model (shipped, trained here, uploaded) as a zip: unzip it and "
                        "run `gptcore sample --checkpoint FOLDER`, or upload it again.")
            picker = gr.Dropdown(registry.names(), value=registry.default(), label="checkpoint",
                                 allow_custom_value=True)
            get = gr.Button("Make the zip", elem_id="download-btn")
            zipped = gr.File(label="zip", interactive=False, elem_id="download-file")
    uploaded = add.click(per_session(upload_model, registry, limits), [files, name], status, api_name="upload_model",
                         concurrency_limit=2)
    get.click(per_session(download_model, registry), picker, zipped, api_name="download_model", concurrency_limit=2)
    return {"checkpoint": picker, "uploaded": uploaded}
