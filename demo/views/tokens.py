"""How a token is shown: printable stand-ins for whitespace, and whether a position is a character or a token."""

from __future__ import annotations

from gptcore.tokenizers.base import visible_piece  # noqa: F401 - the views' one way to show a token


def token_unit(ck) -> str:
    """What one position of ``ck``'s model is, for messages: a character, or a token (of a BPE model)."""
    return "character" if ck.tokenizer.type_name == "char" else "token"
