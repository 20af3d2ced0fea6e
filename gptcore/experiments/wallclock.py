"""Ablation arms at equal wall-clock time, from the same runs' curves.

An ablation gives every arm the same tokens, but a deeper or wider arm costs more per step. To compare arms
at equal time on the machine that ran them, each arm's seconds per training step are measured on that
machine (at the runs' thread count, median of repeats), and each run's validation curve is read at the
step it would have reached by a common time: the time the fastest-finishing arm took for its whole budget.

Measured, not taken from the runs' own wall time: a background study shares its machine (and can be
paused), so its wall time says more about the machine's other work than about the arm.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import torch

from ..data import Corpus
from ..device import describe, resolve_device
from ..storage import write_json
from .ablate import Study, arm_config, default_budget, resolve_studies
from .ablation_results import read_step_costs, step_cost_path
from .bench import train_tokens_per_sec


def measure_step_seconds(study: Study, corpus: Corpus, threads: int, device: torch.device,
                         steps: int = 10, repeats: int = 5) -> dict[str, dict]:
    """Seconds per training step of each arm (batch and dtype of the default budget), median of ``repeats``
    timings of ``steps`` steps each, at ``threads`` torch threads."""
    budget = default_budget()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = {}
        for arm in study.arms:
            model = arm_config(study, arm, budget, seed=0, vocab_size=corpus.tokenizer.vocab_size).model
            rates = train_tokens_per_sec(model, corpus, budget.batch_size, getattr(torch, budget.dtype), steps,
                                         repeats, device=device)
            per_step = [budget.batch_size * model.block_size / r for r in rates]
            out[arm.name] = {"seconds_per_step": round(statistics.median(per_step), 5),
                             "runs": [round(s, 5) for s in per_step]}
        return out
    finally:
        torch.set_num_threads(before)


def loss_at_step(curve: list[dict], step: float) -> float | None:
    """The validation loss at ``step``, linear between the curve's evaluations; None outside them."""
    points = [(p["step"], p["val_loss"]) for p in curve if p.get("val_loss") is not None]
    for (s0, v0), (s1, v1) in zip(points, points[1:]):
        if s0 <= step <= s1:
            return v0 + (v1 - v0) * (step - s0) / (s1 - s0) if s1 > s0 else v1
    if points and step == points[-1][0]:
        return points[-1][1]
    return None


def equal_time(results: dict, cost: dict) -> dict | None:
    """Every arm read at the same wall-clock time: the least time any arm needs for its whole curve.

    Returns ``{"seconds": T, "arms": [{name, label, step, values, mean, std}]}`` over the arms that have
    runs, or None when one of those has no measured cost (or no arm has runs). Values are the periodic estimates of the curve (not the whole-split loss
    of the final evaluation), so compare them with each other, not with the results table."""
    arms = [a for a in results.get("arms") or [] if a.get("runs")]  # an arm of a study still running may have none
    per_step = cost.get("arms") or {}
    if not arms or any(a["name"] not in per_step for a in arms):
        return None
    finish = min(per_step[a["name"]]["seconds_per_step"] * min(r["curve"][-1]["step"] for r in a["runs"])
                 for a in arms)
    out = []
    for a in arms:
        step = finish / per_step[a["name"]]["seconds_per_step"]
        values = [v for r in a["runs"] if (v := loss_at_step(r["curve"], step)) is not None]
        out.append({"name": a["name"], "label": a["label"], "step": round(step), "values": values,
                    "mean": statistics.mean(values) if values else None,
                    "std": statistics.stdev(values) if len(values) > 1 else None})
    return {"seconds": finish, "arms": out}


def run_step_cost(study_name: str, corpus: Corpus, out_dir: str | Path, threads: int, device: str,
                  command: str, steps: int = 10, repeats: int = 5) -> list[Path]:
    """``gptcore ablate --step-cost``: measure every arm of the study (or of all) and write
    ``<out>/<study>.step_cost.json`` beside its results."""
    written = []
    dev = resolve_device(device)
    for study in resolve_studies(study_name):
        started = time.perf_counter()
        arms = measure_step_seconds(study, corpus, threads, dev, steps, repeats)
        path = step_cost_path(out_dir, study.name)
        write_json(path, {
            "study": study.name, "command": command, "arms": arms, "threads": threads,
            "device": describe(dev), "torch": torch.__version__, "steps_per_timing": steps, "repeats": repeats,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
            "batch_size": default_budget().batch_size, "dtype": default_budget().dtype,
            "measured_in_s": round(time.perf_counter() - started, 1)})
        written.append(path)
    return written


def equal_time_markdown(directory: Path, results: dict, shown_as: str | None = None) -> str:
    """The arms read at equal wall-clock time (``gptcore.experiments.wallclock``), when the study's step
    costs have been measured on this machine; otherwise how to measure them (the command names the
    directory as ``shown_as``, where the reader must not see where it really is)."""
    cost = read_step_costs(directory, results["study"])
    if cost is None:
        return (f"*Equal wall-clock time:* not measured yet (`python -m gptcore ablate --study {results['study']} "
                f"--step-cost --out {shown_as or directory}`).")
    view = equal_time(results, cost)
    if view is None:
        return "*Equal wall-clock time:* the step costs do not cover every arm of these results; measure again."
    rows = [f"**At equal wall-clock time** ({view['seconds'] / 60:.0f} min on {cost.get('device', '?')} at "
            f"{cost.get('threads', '?')} thread(s): the least time any arm needs for its whole budget; each arm's "
            "curve read where it would be by then, from its measured seconds per step):", "",
            "| arm | s/step | step reached | validation loss (periodic estimate) |", "|---|---|---|---|"]
    for arm in view["arms"]:
        spread = f" ± {arm['std']:.3f}" if arm["std"] is not None else ""
        n = len(arm["values"])
        loss = f"{arm['mean']:.3f}{spread} ({n} seed{'s' if n != 1 else ''})" if arm["mean"] is not None else "n/a"
        rows.append(f"| {arm['label']} | {cost['arms'][arm['name']]['seconds_per_step']:.3f} | {arm['step']:,} | "
                    f"{loss} |")
    return "\n".join(rows)
