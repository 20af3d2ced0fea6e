"""Turning a visitor's input into checked values, and input errors into one sentence.

Bad input must reach the visitor (or the API caller) as one clear sentence, never a traceback or a queue
that hangs: every event function runs its work inside :func:`user_errors`; sliders and number boxes name
themselves in their refusals.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from typing import Iterator

import gradio as gr

from gptcore.errors import GptcoreError


@contextmanager
def user_errors(prefix: str = "") -> Iterator[None]:
    """Re-raise input errors (gptcore's and ValueError) as gr.Error, which Gradio shows as a message."""
    try:
        yield
    except gr.Error:
        raise
    except (GptcoreError, ValueError) as e:
        raise gr.Error(without_paths(f"{prefix}{e}"), print_exception=False) from None


# an absolute path of two or more parts: not a URL's, not a ratio like tokens/s, and not a quoted name, which
# is how messages repeat what the visitor sent (a zip's entry '/etc/x' is theirs to see)
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/'])/(?:[^\s/'\"`;,()]+/)+([^\s/'\"`;,()]*)")


def without_paths(message: str) -> str:
    """``message`` with every absolute path cut to its last part: a visitor never sees where the server
    keeps its files (an upload's name is theirs; the folders above it are not)."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "…", message)


def checked_number(name: str, value, low: float, high: float, integer: bool = False) -> float | int:
    """``value`` as a number in [low, high] (a whole one if ``integer``), or a ValueError naming the setting.

    API callers can send anything: a string, a bool, NaN or an infinity all get the same clear sentence."""
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (integer and value != int(value)) or not low <= value <= high:
        bound = (lambda v: f"{int(v):,}") if integer else (lambda v: f"{v:g}")
        raise ValueError(f"{name} must be {kind} between {bound(low)} and {bound(high)}, got {value!r:.60}")
    return int(value) if integer else float(value)


def checked_text(name: str, text: str | None, max_chars: int) -> str:
    """``text`` ('' for None) if it is valid Unicode of at most ``max_chars`` characters."""
    text = text or ""
    if not isinstance(text, str):
        raise ValueError(f"{name} must be text, got {type(text).__name__}")
    if len(text) > max_chars:
        raise ValueError(f"the {name} has {len(text):,} characters; the limit is {max_chars:,}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"the {name} is not valid text: it holds a lone surrogate (U+{ord(text[e.start]):04X}) "
                         f"at character {e.start}") from None
    return text


class NamedSlider(gr.Slider):
    """A gr.Slider whose out-of-range error names the setting ("temperature must be between 0 and 2").

    Gradio's own message says only "Value 5 is greater than maximum value 2", which does not tell an API
    caller which of several numbers was wrong. ``is_template`` makes the front end draw a normal slider.
    """

    is_template = True

    def preprocess(self, payload: float) -> float:
        name = self.label or "value"
        if payload is None or isinstance(payload, bool) or not isinstance(payload, (int, float)):
            raise gr.Error(f"{name} must be a number between {self.minimum} and {self.maximum}, got {payload!r}",
                           print_exception=False)
        if not self.minimum <= payload <= self.maximum:
            raise gr.Error(f"{name} must be between {self.minimum} and {self.maximum}, got {payload}",
                           print_exception=False)
        return super().preprocess(payload)


class NamedNumber(gr.Number):
    """A gr.Number that refuses what is not a finite number (a string, a bool, NaN, an infinity) with a
    message naming the setting; Gradio's own conversion would fail with a bare "Error"."""

    is_template = True

    def preprocess(self, payload):
        if payload is None:
            return None
        if isinstance(payload, bool) or not isinstance(payload, (int, float)) or not math.isfinite(payload):
            raise gr.Error(f"{self.label or 'value'} must be a finite number, got {payload!r:.60}",
                           print_exception=False)
        return super().preprocess(payload)


