"""Event functions that see the caller's session: each visitor gets the model registry as their session sees
it (with their own uploads), and never another visitor's."""

from __future__ import annotations

import inspect
import typing
from typing import Callable

import gradio as gr

from .gpu import on_gpu


def per_session(fn: Callable, registry, *bound, gpu_seconds: int | None = None, **fixed) -> Callable:
    """``fn(registry, *bound, ...)`` as an event function that sees the caller's session: Gradio hands it the
    request, and ``fn`` gets the registry as that session sees it (with its uploads). The parameters left
    after ``bound`` and ``fixed`` keep their names and order: they are what API callers see.
    ``gpu_seconds``: the call runs models, so on ZeroGPU it asks for a GPU that long (:func:`demo.server.gpu.on_gpu`);
    what crosses to the GPU worker is the session id and the inputs, plain values."""
    params = [p for p in list(inspect.signature(fn).parameters.values())[1 + len(bound):] if p.name not in fixed]
    request = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                annotation=gr.Request)
    streams = inspect.isgeneratorfunction(fn)  # Gradio streams a generator's updates: the wrappers must be ones

    if streams:
        def run(session: str | None, *values):
            yield from fn(registry.for_session(session), *bound, *values, **fixed)
    else:
        def run(session: str | None, *values):
            return fn(registry.for_session(session), *bound, *values, **fixed)
    if gpu_seconds:
        run = on_gpu(run, gpu_seconds)

    def split(args: tuple) -> tuple:
        *values, req = args if len(args) == len(params) + 1 else (*args, None)
        return (getattr(req, "session_hash", None), *values)

    if streams:
        def wrapper(*args):
            yield from run(*split(args))
    else:
        def wrapper(*args):
            return run(*split(args))
    try:  # resolved, so that gr.api can describe the endpoint to API callers
        hints = typing.get_type_hints(fn)
    except NameError:  # a name imported only for type checkers: the UI events need no hints
        hints = {}
    params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in params]
    wrapper.__signature__ = inspect.Signature(params + [request], return_annotation=hints.get("return",
                                              inspect.Signature.empty))
    wrapper.__annotations__ = {**{p.name: hints[p.name] for p in params if p.name in hints},
                               "request": gr.Request, **({"return": hints["return"]} if "return" in hints else {})}
    wrapper.__name__ = wrapper.__qualname__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


