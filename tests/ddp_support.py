"""Several training processes for the distributed tests: each runs gptcore's Trainer as torchrun would
start it (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), on the CPU with gloo, one thread each."""

from __future__ import annotations

import json
import os
import threading

import torch.multiprocessing as mp


def _worker(rank: int, world: int, port: int, overrides: dict, out: str, stop_at: int | None, resume: bool,
            data: str, tick: float | None) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), GPTCORE_DATA=data)
    if tick is not None:
        _use_a_ticking_clock(tick * (rank + 1))
    from gptcore.data import Corpus
    from gptcore.presets import get_preset
    from gptcore.training import Trainer

    config = get_preset("tiny").with_overrides({"threads": 1, "device": "cpu", **overrides})
    stop = threading.Event()
    rates = []

    def on_event(event) -> None:
        if event.kind == "step":
            rates.append(event.lr)
        if stop_at is not None and event.kind == "eval" and event.step == stop_at:
            stop.set()

    Trainer(config, Corpus.load(), out, resume=resume).run(on_event=on_event, stop=stop)
    with open(os.path.join(out, f"lr-rank{rank}.json"), "w") as f:  # what each process's schedule said
        json.dump(rates, f)
    # everything is written: leave without the interpreter's teardown, where gloo's threads have been seen to
    # abort the process (SIGABRT, "terminate called without an active exception") once in four CI runs
    os._exit(0)


def _use_a_ticking_clock(seconds: float) -> None:
    """The training loop's clock advances ``seconds`` at each reading, however fast the machine is: a time
    budget then ends after the same number of steps on an idle or a busy machine."""
    import itertools
    import types

    from gptcore.training import loop

    readings = itertools.count()
    loop.time = types.SimpleNamespace(perf_counter=lambda: next(readings) * seconds)


def train(world: int, port: int, overrides: dict, out: str, stop_at: int | None = None, resume: bool = False,
          tick: float | None = None) -> None:
    """Train the ``tiny`` preset with ``world`` processes (1 runs in this process's own child). ``tick``: each
    process's training clock advances that many seconds a reading, times its rank + 1 (so that the clocks
    differ, as real ones do, and only agreeing on one keeps the processes alike)."""
    mp.start_processes(_worker, args=(world, port, overrides, out, stop_at, resume, os.environ["GPTCORE_DATA"], tick),
                       nprocs=world, start_method="spawn")
