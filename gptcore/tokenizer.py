"""Character-level tokenizer: one id per distinct character of the training corpus."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import CheckpointError, UnknownCharactersError

UNKNOWN_POLICIES = ("strict", "replace", "drop")


class CharTokenizer:
    """Maps characters to ids in sorted order, as in the tutorial, so ids are stable across runs.

    Unknown characters: ``policy="strict"`` raises :class:`UnknownCharactersError` naming them;
    ``"replace"`` substitutes ``replacement`` (a space by default, when the vocabulary has one);
    ``"drop"`` removes them.
    """

    def __init__(self, chars: list[str]):
        if not chars:
            raise ValueError("a tokenizer needs at least one character")
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("vocabulary must be distinct single characters")
        self.chars = list(chars)
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def unknown_chars(self, text: str) -> list[str]:
        """Distinct characters of ``text`` outside the vocabulary, in order of appearance."""
        return list(dict.fromkeys(c for c in text if c not in self.stoi))

    def clean(self, text: str, policy: str = "strict", replacement: str = " ") -> str:
        """Apply an unknown-character policy and return text that encodes without error."""
        if policy not in UNKNOWN_POLICIES:
            raise ValueError(f"unknown-character policy must be one of {UNKNOWN_POLICIES}, got {policy!r}")
        unknown = self.unknown_chars(text)
        if not unknown:
            return text
        if policy == "strict":
            raise UnknownCharactersError(unknown)
        if policy == "replace" and replacement in self.stoi:
            return "".join(c if c in self.stoi else replacement for c in text)
        return "".join(c for c in text if c in self.stoi)

    def encode(self, text: str, policy: str = "strict") -> list[int]:
        return [self.stoi[c] for c in self.clean(text, policy)]

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def to_dict(self) -> dict:
        return {"type": "char", "chars": self.chars}

    def save(self, path: Path) -> None:
        from .checkpoint import atomic_write_text

        atomic_write_text(Path(path), json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> "CharTokenizer":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if data.get("type") != "char":
                raise ValueError(f"unsupported tokenizer type {data.get('type')!r}")
            return cls(data["chars"])
        except FileNotFoundError:
            raise CheckpointError(f"tokenizer file not found: {path}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(f"tokenizer file {path} is damaged: {e}") from None
