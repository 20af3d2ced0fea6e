"""How a token is shown: printable stand-ins for whitespace, and whether a position is a character or a token."""

from __future__ import annotations


def visible_piece(piece: str) -> str:
    """A token's text with printable stand-ins for whitespace and control characters, for chart axes and labels."""
    return "".join({" ": "␣", "\n": "↵", "\t": "⇥", "\r": "\\r"}.get(c, c if c.isprintable() else repr(c)[1:-1])
                   for c in piece)


def token_unit(ck) -> str:
    """What one position of ``ck``'s model is, for messages: a character, or a token (of a BPE model)."""
    return "character" if ck.tokenizer.type_name == "char" else "token"
