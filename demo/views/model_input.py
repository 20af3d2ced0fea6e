"""The text a visitor typed, made into what a GPT can read: known characters, at most one context.

Shared by the views that run a model on a text (attention, predictions, logit lens, heads off), so that all
of them clean, crop and explain in the same words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .tokens import token_unit

if TYPE_CHECKING:
    from gptcore.checkpoint import Checkpoint

# the text the Attention and Inside tabs open on: a speaker's name, a line, and newlines, as the corpus has them
DEFAULT_TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"


@dataclass
class ModelInput:
    """The (cleaned, cropped) text, its token ids and their text pieces, and what was changed, in words."""

    text: str
    ids: list[int]
    pieces: list[str]
    notices: list[str]


def model_input(ck: "Checkpoint", text: str | None) -> ModelInput:
    """``text`` with unknown characters replaced by spaces and cropped to the model's context (block_size),
    for a checkpoint with attention layers; a ValueError in words otherwise."""
    if ck.config.model.arch != "gpt" or not hasattr(ck.model, "attention_maps"):
        raise ValueError(f"checkpoint {ck.name!r} is a {ck.config.model.arch} model: it has no attention "
                         "layers to show; pick a GPT checkpoint")
    if not text:
        raise ValueError("type some text to look at (at least one character)")
    notices = []
    unknown = ck.tokenizer.unknown_chars(text)
    if unknown:
        shown = ", ".join(repr(c) for c in unknown[:10])
        notices.append(f"The model does not know {shown}; they are replaced with spaces.")
        text = ck.tokenizer.clean(text, "replace")
        if not text:
            raise ValueError("none of the characters of this text are known to the model")
    block, ids = ck.config.model.block_size, ck.tokenizer.encode(text)
    if len(ids) > block:
        unit = token_unit(ck)
        notices.append(f"**Cropped:** showing the first {block} of {len(ids)} {unit}s "
                       f"(the model's context window, block_size, is {block} {unit}s).")
        ids = ids[:block]
        text = ck.tokenizer.decode(ids)
    return ModelInput(text, ids, [ck.tokenizer.piece(i) for i in ids], notices)
