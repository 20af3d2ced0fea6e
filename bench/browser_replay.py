"""The replay and the comparison as a visitor meets them: a real browser on ``python app.py`` with the shipped
models.

    python bench/browser_replay.py [--repeats 5] [--shots docs/img] [--out bench/browser_replay.json]

1. The Train tab's replay of the shipped ``two-layer`` model's training: seconds from moving the step slider
   until the browser shows that snapshot (its step line and heatmap), median of ``repeats`` moves.
2. The Inside tab's "Compare two models" (``shakespeare-char`` against ``two-layer``, a full context): seconds
   from choosing the second model until the comparison is drawn.
With ``--shots``, a screenshot of each at 1366x900 goes to that folder (the pictures in README and docs).
Needs Debian's chromium and Playwright; not a test.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from pathlib import Path

from app_speed import REPO, _summary
from browser_views import TEXT, _timed, browser_parser, served_page

sys.path.insert(0, str(REPO))

from gptcore.snapshots import Snapshots  # noqa: E402

REPLAYED, FIRST = "two-layer", "shakespeare-char"


def measure_replay(page, repeats: int, shot) -> list[float]:
    from playwright.sync_api import expect

    steps = Snapshots.load(REPO / "checkpoints" / REPLAYED).steps
    page.get_by_role("tab", name="Train").click()
    label = page.locator("#replay-step-label")
    page.get_by_role("combobox", name="run", exact=True).click()  # not necessarily the one listed first
    page.get_by_role("option", name=REPLAYED, exact=True).click()
    expect(label).to_contain_text(f"Step {steps[-1]:,} ", timeout=60_000)
    slider = page.locator("#replay-step input[type=range]")
    times = []
    for i in range(repeats):
        index = 2 + 3 * i  # a new snapshot each time
        times.append(_timed(page, lambda k=index: slider.fill(str(k)),
                            lambda k=index: expect(label).to_contain_text(f"Step {steps[k]:,} ", timeout=30_000)))
    slider.fill("2")  # step 50: the first jobs have appeared
    expect(label).to_contain_text(f"Step {steps[2]:,} ", timeout=30_000)
    page.get_by_role("combobox", name="head", exact=True).click()
    page.get_by_role("option", name="head 3", exact=True).click()
    expect(page.locator("#replay-head")).to_contain_text("head 3 at step", timeout=30_000)
    shot("replay")
    return times


def measure_compare(page, repeats: int, shot) -> list[float]:
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Inside").click()
    page.locator("#inside-text textarea").fill(TEXT)
    page.get_by_role("tab", name="Compare two models").click()
    summary = page.locator("#compare-summary")
    times = []
    for i in range(repeats):  # the second model switched between the same one (no differences) and the other
        second, words = (FIRST, "no differences") if i % 2 else (REPLAYED, f"{REPLAYED} predicts")

        def choose(name=second):
            page.get_by_role("combobox", name="compare with", exact=True).click()
            page.get_by_role("option", name=name, exact=True).click()
        times.append(_timed(page, choose, lambda w=words: expect(summary).to_contain_text(w, timeout=30_000)))
    if REPLAYED not in summary.inner_text():
        page.get_by_role("combobox", name="compare with", exact=True).click()
        page.get_by_role("option", name=REPLAYED, exact=True).click()
        expect(summary).to_contain_text(f"{REPLAYED} predicts", timeout=30_000)
    shot("compare")
    return times


def main(argv: list[str] | None = None) -> int:
    args = browser_parser(__doc__.splitlines()[0], "browser_replay.json").parse_args(argv)
    with served_page(args.shots) as (page, shot):
        times = {"replay: move the step slider until that snapshot is drawn": measure_replay(page, args.repeats, shot),
                 "compare: choose the second model until the comparison is drawn":
                     measure_compare(page, args.repeats, shot)}
    targets = {"replay": "<= 0.3", "compare": "<= 1"}
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.3f} s", flush=True)
    result = {"command": "python bench/browser_replay.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
              "seconds": {name: {**_summary(v), "target": targets[name.split(":")[0]]} for name, v in times.items()}}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
