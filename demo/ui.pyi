"""Small UI helpers shared by the tabs: turning input errors into gr.Error, and sliders that name themselves.

Bad input must reach the visitor (or the API caller) as one clear sentence, never a traceback or a queue
that hangs: every event function runs its work inside :func:`user_errors`.
"""

from __future__ import annotations

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
        raise gr.Error(f"{prefix}{e}", print_exception=False) from None

from gradio.events import Dependency

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
    from typing import Callable, Literal, Sequence, Any, TYPE_CHECKING
    from gradio.blocks import Block
    if TYPE_CHECKING:
        from gradio.components import Timer
        from gradio.components.base import Component


def visible_char(c: str) -> str:
    """A printable stand-in for whitespace and control characters, for chart axes and labels."""
    return {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "\\r"}.get(c, c if c.isprintable() else repr(c)[1:-1])