"""The ablation results file: its schema, a strict loader, per-arm statistics and a Markdown summary.

Kept apart from the runner (``gptcore.experiments.ablate``) because the app reads results without training
anything. The schema is documented in docs/ablations.md; ``validate_results`` is its executable form,
so a hand-edited or truncated file fails with the key and the arm at fault instead of a KeyError
deep inside a plot.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

from ..config import is_int
from ..errors import GptcoreError
from ..storage import read_json
from .stats import ALPHA, welch

SCHEMA_VERSION = 1
STEP_COST_SUFFIX = ".step_cost.json"  # beside <study>.json: the arms' measured seconds per step
NOISE_RULE = ("two arms differ beyond seed noise when Welch's t-test (two-sided, unequal variances, "
              f"Welch-Satterthwaite degrees of freedom) gives p < {ALPHA}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_CHECKS = {
    "str": (lambda v: isinstance(v, str), "a string"),
    "int": (is_int, "an integer"),
    "number": (_is_number, "a finite number"),
    "number|null": (lambda v: v is None or _is_number(v), "a finite number or null"),
    "dict": (lambda v: isinstance(v, dict), "an object"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "any": (lambda v: True, "anything"),
}

_TOP = {"schema_version": "int", "study": "str", "description": "str", "claim": "str", "budget": "dict",
        "base_config": "dict", "arms": "list", "created_by": "str", "torch": "str"}
_ARM = {"name": "str", "label": "str", "value": "any", "overrides": "dict", "writeup_val_loss": "number|null",
        "runs": "list", "mean_val_loss": "number|null", "std_val_loss": "number|null"}
_RUN = {"seed": "int", "val_loss": "number|null", "params": "int", "tokens_seen": "int",
        "wall_time_s": "number", "curve": "list"}
_POINT = {"step": "int", "train_loss": "number|null", "val_loss": "number|null"}


def _check(obj, spec: dict, where: str) -> None:
    if not isinstance(obj, dict):
        raise GptcoreError(f"{where} should be an object, got {type(obj).__name__}")
    for key, kind in spec.items():
        if key not in obj:
            raise GptcoreError(f"{where} is missing key {key!r}")
        ok, expected = _CHECKS[kind]
        if not ok(obj[key]):
            raise GptcoreError(f"{where}: key {key!r} should be {expected}, got {obj[key]!r:.60}")


def validate_results(data, source: str = "results") -> dict:
    """Check ``data`` against schema version 1 and return it; raise GptcoreError naming the bad key.

    A run's ``val_loss`` (and a curve point's) may be null only when the run ``diverged`` before its
    first finite evaluation: JSON has no NaN, and the app must not plot an invented number.
    """
    _check(data, _TOP, source)
    if data["schema_version"] != SCHEMA_VERSION:
        raise GptcoreError(f"{source}: schema_version {data['schema_version']} is not supported "
                           f"(this gptcore reads version {SCHEMA_VERSION})")
    references = data.get("references", {})
    if not isinstance(references, dict) or not all(_is_number(v) for v in references.values()):
        raise GptcoreError(f"{source}: 'references' should map names to finite numbers, got {references!r:.60}")
    if not data["arms"]:
        raise GptcoreError(f"{source}: 'arms' is empty")
    seen = set()
    for i, arm in enumerate(data["arms"]):
        where = f"{source}: arms[{i}]"
        _check(arm, _ARM, where)
        where = f"{source}: arm {arm['name']!r}"
        if arm["name"] in seen:
            raise GptcoreError(f"{where} appears twice")
        seen.add(arm["name"])
        for j, run in enumerate(arm["runs"]):
            _check(run, _RUN, f"{where} runs[{j}]")
            if run["val_loss"] is None and run.get("diverged") is not True:
                raise GptcoreError(f"{where} runs[{j}]: 'val_loss' is null but the run is not marked diverged")
            for k, point in enumerate(run["curve"]):
                _check(point, _POINT, f"{where} runs[{j}] curve[{k}]")
    return data


def load_results(path: str | Path) -> dict:
    """Read and validate a results file; every problem is a GptcoreError with a clear message."""
    path = Path(path)
    return validate_results(read_json(path), str(path))


def step_cost_path(out_dir: str | Path, study: str) -> Path:
    """Where ``ablate --step-cost`` writes a study's measured seconds per step (``gptcore.experiments.wallclock``)."""
    return Path(out_dir) / f"{study}{STEP_COST_SUFFIX}"


def read_step_costs(out_dir: str | Path, study: str) -> dict | None:
    """The study's measured step costs, or None when they were never measured or the file is unreadable."""
    try:
        cost = read_json(step_cost_path(out_dir, study))
    except (GptcoreError, OSError):
        return None
    return cost if isinstance(cost.get("arms"), dict) else None


def arm_stats(runs: list[dict]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n-1) of the finite final validation losses of ``runs``.

    The standard deviation is None with fewer than two such runs: one seed says nothing about noise.
    """
    losses = [r["val_loss"] for r in runs if _is_number(r.get("val_loss"))]
    if not losses:
        return None, None
    mean = statistics.fmean(losses)
    return mean, (statistics.stdev(losses) if len(losses) > 1 else None)


@dataclass
class Comparison:
    """Arm ``a`` minus arm ``b`` in final validation loss, against seed noise (Welch's t-test)."""

    a: str
    b: str
    diff: float | None
    stderr: float | None
    beyond_noise: bool | None  # None: not enough seeds to tell
    p_value: float | None = None
    df: float | None = None
    ci95: tuple[float, float] | None = None  # 95% confidence interval of diff (Welch)

    @property
    def verdict(self) -> str:
        if self.beyond_noise is None:
            return "not enough seeds to tell"
        p = f"Welch's t-test, p = {self.p_value:.2g}"
        if not self.beyond_noise:
            return f"not distinguishable from seed noise ({p})"
        return f"{self.a} is {'better' if self.diff < 0 else 'worse'} (beyond seed noise: {p})"


def compare_arms(results: dict, a: str, b: str, alpha: float = ALPHA) -> Comparison:
    """Whether arms ``a`` and ``b`` differ beyond seed noise: Welch's t-test of their final validation losses
    over seeds (:func:`gptcore.experiments.stats.welch`), significant at ``alpha``, two-sided."""
    arms = {arm["name"]: arm for arm in results["arms"]}
    for name in (a, b):
        if name not in arms:
            raise GptcoreError(f"study {results['study']!r} has no arm {name!r}; arms: {', '.join(arms)}")
    la = [r["val_loss"] for r in arms[a]["runs"] if _is_number(r.get("val_loss"))]
    lb = [r["val_loss"] for r in arms[b]["runs"] if _is_number(r.get("val_loss"))]
    test = welch(la, lb)
    if test is None:
        diff = statistics.fmean(la) - statistics.fmean(lb) if la and lb else None
        return Comparison(a, b, diff, None, None)
    return Comparison(a, b, test.diff, test.stderr, test.p_value < alpha, test.p_value, test.df, test.ci95)


def _fmt(value, digits: int = 4) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _params(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n / 1e6:.2f}M" if n >= 100_000 else f"{n:,}"


def _mean_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if _is_number(r.get(key))]
    return statistics.fmean(values) if values else None


def summarize(results: dict, heading: bool = True) -> str:
    """A Markdown section for one study: its heading and the original write-up's claim (unless ``heading`` is False:
    the app shows them already), the per-arm table, the study's comparisons and its budget."""
    budget = results["budget"]
    lines = [f"### {results['study']}: {results['description']}", "",
             f"Write-up's claim: {results['claim']}", ""] if heading else []
    grads = any("grad_norm_first_layer" in r for arm in results["arms"] for r in arm["runs"])
    header = ["arm", "val loss (mean ± std)", "seeds", "params", "write-up", "ours − write-up",
              "final train loss", "diverged"]
    if grads:
        header += ["grad norm, first block", "first / last block"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arm in results["arms"]:
        runs = arm["runs"]
        mean, std = arm["mean_val_loss"], arm["std_val_loss"]
        value = "–" if mean is None else f"{mean:.4f} ± {_fmt(std)}"
        wu = arm["writeup_val_loss"]
        delta = f"{mean - wu:+.4f}" if mean is not None and wu is not None else "–"
        diverged = sum(1 for r in runs if r.get("diverged"))
        row = [arm["label"], value, str(len(runs)), _params(runs[0]["params"] if runs else None),
               _fmt(wu), delta, _fmt(_mean_of(runs, "final_train_loss"), 3), f"{diverged}/{len(runs)}"]
        if grads:
            row += [_fmt(_mean_of(runs, "grad_norm_first_layer"), 4), _fmt(_mean_of(runs, "grad_norm_ratio"), 3)]
        lines.append("| " + " | ".join(row) + " |")
    comparisons = results.get("comparisons") or []
    if comparisons:
        lines.append("")
        for a, b in comparisons:
            c = compare_arms(results, a, b)
            detail = "" if c.diff is None else f"Δ = {c.diff:+.4f}"
            detail += "" if c.ci95 is None else f" (95% CI {c.ci95[0]:+.4f} to {c.ci95[1]:+.4f})"
            detail += "" if c.stderr is None else f", SE {c.stderr:.4f}, df {c.df:.1f}"
            lines.append(f"- {a} vs {b}: {detail + ' → ' if detail else ''}{c.verdict}")
    lines += ["", f"Budget: {budget.get('max_iters')} steps of {budget.get('batch_size')}×{budget.get('block_size')} "
                  f"({budget.get('tokens_per_run', 0):,} tokens), {budget.get('schedule')} lr {budget.get('lr')} "
                  f"with {budget.get('warmup_iters')} warmup steps; final loss on the whole validation split."]
    unigram = (results.get("references") or {}).get("unigram_val_loss")
    if unigram is not None:
        lines += ["", f"For scale: predicting each token from its frequency in the training split alone, blind to "
                      f"all context, gives {unigram:.4f} on the same validation split."]
    return "\n".join(lines) + "\n"


def _verdict_kind(c: Comparison) -> str | None:
    if c.beyond_noise is None:
        return None
    return "noise" if not c.beyond_noise else ("better" if c.diff < 0 else "worse")


def _short_verdict(c: Comparison) -> str:
    kind = _verdict_kind(c)
    if kind is None:
        return "too few seeds"
    detail = f"Δ {c.diff:+.4f}, p = {c.p_value:.2g}"
    return f"no difference beyond seed noise ({detail})" if kind == "noise" else f"{c.a} {kind} ({detail})"


def verdicts_across_budgets(studies: list[dict]) -> str:
    """A Markdown table of one study's comparisons at each of several budgets (step counts), shortest first,
    and whether each verdict (better, worse, or within seed noise) is the same at every budget: the evidence a
    study needs before its conclusions may rest on a shorter budget than the others'."""
    if len(studies) < 2:
        raise GptcoreError("comparing verdicts across budgets needs the study's results at two budgets or more")
    names = {s["study"] for s in studies}
    if len(names) > 1:
        raise GptcoreError(f"these results are of different studies: {', '.join(sorted(names))}")
    studies = sorted(studies, key=lambda s: s["budget"]["max_iters"])
    header = ["comparison", *(f"{s['budget']['max_iters']:,} steps" for s in studies), "same verdict at every budget?"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    pairs = list(dict.fromkeys(tuple(c) for s in reversed(studies) for c in s.get("comparisons") or []))
    for a, b in pairs:  # a comparison added later (a new arm) shows where its arms ran
        found = [compare_arms(s, a, b) if {a, b} <= {arm["name"] for arm in s["arms"]} else None for s in studies]
        kinds = {_verdict_kind(c) for c in found if c is not None}
        same = ("–" if sum(c is not None for c in found) < 2 else "not yet" if None in kinds
                else "yes" if len(kinds) == 1 else "**no**")
        cells = ["not run at this budget" if c is None else _short_verdict(c) for c in found]
        lines.append("| " + " | ".join([f"{a} vs {b}", *cells, same]) + " |")
    return "\n".join(lines) + "\n"
