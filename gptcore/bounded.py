"""Untrusted structures read with bounds: JSON of limited size and depth, walks with a node budget, short reprs.

Every file gptcore reads may have been built to break it. JSON nested a million levels deep overflows the
decoder's recursion; a pickle of lists that each hold many references to the previous one is a kilobyte on
disk and 10^18 values to anything that walks it (``repr`` included). So nothing here recurses on the
input or visits more than a fixed number of values: a structure past a limit is refused with one sentence
that names the file, and a value quoted in a message is cut after a few dozen characters without
looking at the rest of it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from .errors import CheckpointError

MAX_JSON_BYTES = 64 * 2**20  # GPT-2's tokenizer, the largest JSON gptcore reads, is about 1 MB
MAX_DEPTH = 32  # gptcore's own files nest at most 5 levels
MAX_NODES = 2_000_000  # values visited in one walk, each shared reference counted every time it is reached
JSON_KINDS = (dict, list, str, int, float, bool, type(None))
PLAIN_KINDS = JSON_KINDS + (tuple,)


def cut(text: str, limit: int = 200) -> str:
    """``text`` shortened to ``limit`` characters for a message, with an ellipsis where it was cut."""
    return text if len(text) <= limit else text[:limit] + "…"


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut after ``limit`` characters, computed only as far as that: safe on structures of
    any size or sharing, and on integers too long for ``repr``."""
    out, length = [], 0
    for piece in _repr_pieces(value, limit):
        out.append(piece)
        length += len(piece)
        if length > limit:
            return "".join(out)[:limit] + "…"
    return "".join(out)


def _repr_pieces(value: Any, limit: int) -> Iterator[str]:
    if isinstance(value, (list, tuple)):
        yield "[" if isinstance(value, list) else "("
        for i, item in enumerate(value):
            yield ", " if i else ""
            yield from _repr_pieces(item, limit)
        yield "]" if isinstance(value, list) else ",)" if len(value) == 1 else ")"
    elif isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ", " if i else ""
            yield from _repr_pieces(key, limit)
            yield ": "
            yield from _repr_pieces(item, limit)
        yield "}"
    elif isinstance(value, (str, bytes)):
        yield repr(value[:limit + 1])
    elif isinstance(value, int) and value.bit_length() > 4 * limit:
        yield f"<an integer of {value.bit_length():,} bits>"
    else:
        yield repr(value)


def check_plain(value: Any, what: str, kinds: tuple[type, ...] = PLAIN_KINDS, max_depth: int = MAX_DEPTH,
                max_nodes: int = MAX_NODES) -> None:
    """Refuse (CheckpointError naming ``what``) a structure holding anything but ``kinds``, nested deeper than
    ``max_depth`` or with more than ``max_nodes`` values once shared references are expanded. Iterative, and it
    stops at the first value past a limit, so its cost is bounded whatever it is given."""
    stack, seen = [(value, 0)], 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > max_nodes:
            raise CheckpointError(f"{what} holds more than {max_nodes:,} values (counting every shared reference "
                                  f"each time): too large to be what it claims")
        if depth > max_depth:
            raise CheckpointError(f"{what} is nested more than {max_depth} levels deep")
        if not isinstance(item, kinds):
            raise CheckpointError(f"{what} holds a {type(item).__name__}: only plain data (dicts, lists, strings, "
                                  f"numbers) is accepted")
        if isinstance(item, dict):
            stack.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif isinstance(item, (list, tuple)):
            stack.extend((part, depth + 1) for part in item)


def loads_json(text: str | bytes, what: str, max_depth: int = MAX_DEPTH) -> Any:
    """Parsed JSON, with a CheckpointError naming ``what`` for text that is not JSON or nests too deeply."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise CheckpointError(f"{what} is nested more than {max_depth} levels deep") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, and integers of over 4,300 digits
        raise CheckpointError(f"{what} is not valid JSON ({cut(str(e), 160)})") from None
    check_plain(data, what, JSON_KINDS, max_depth, max_nodes=len(text) + 1)
    return data


def read_bounded(path: str | os.PathLike, max_bytes: int, what: str | None = None) -> bytes:
    """A regular file's bytes, refused (CheckpointError, one line) when missing, not a file or over ``max_bytes``.
    Reads at most ``max_bytes + 1`` bytes, so a device or a file growing meanwhile cannot exhaust memory."""
    path, what = Path(path), what or str(path)
    try:
        if not path.exists():
            raise CheckpointError(f"missing file: {what}")
        if not path.is_file():
            raise CheckpointError(f"{what} is not a regular file")
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise CheckpointError(f"cannot read {what}: {e.strerror or type(e).__name__}") from None
    if len(data) > max_bytes:
        raise CheckpointError(f"{what} is larger than {max_bytes:,} bytes: too large for what it should hold")
    return data


def read_json_file(path: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """A JSON file, bounded in size and depth; every problem is a CheckpointError naming the file."""
    return loads_json(read_bounded(path, max_bytes), str(path), max_depth)
