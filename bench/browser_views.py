"""The inspection views as a visitor meets them: a real browser on ``python app.py`` with the shipped model.

    python bench/browser_views.py [--repeats 5] [--shots docs/img] [--out bench/browser_views.json]

For each view, the seconds from the click (or hover) until the browser shows the answer, median of
``repeats``: what the server computes, the trip, and the drawing. With ``--shots``, a screenshot of each view
at 1366x900 goes to that folder (the pictures in README and docs/app.md). Needs Debian's chromium and Playwright; not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from app_speed import REPO, _env, _summary

from bench.served_app import free_port, launched_app  # noqa: E402 (app_speed puts the repository on the path)

CHROMIUM = "/usr/bin/chromium"
LAPTOP = {"width": 1366, "height": 900}
# from Tiny Shakespeare's validation split (the last 10%): text the shipped model never trained on; longer
# than its context of 256 characters, so every view works on a full context
TEXT = ("BAPTISTA:\nNot in my house, Lucentio; for, you know,\nPitchers have ears, and I have many servants:\n"
        "Besides, old Gremio is hearkening still;\nAnd happily we might be interrupted.\n\nTRANIO:\n"
        "Then at my lodging, an it like you:\nThere doth my father lie; and there, this night,\n")


@contextlib.contextmanager
def served_page(shots: Path | None) -> Iterator[tuple]:
    """A chromium page at 1366x900 on a freshly launched ``python app.py`` whose first page has loaded, and
    ``shot(name)``, which saves a full-page screenshot into ``shots`` (when given); all stopped after."""
    from playwright.sync_api import expect, sync_playwright

    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as logs, launched_app(_env(free_port()), Path(logs) / "app.log") as url, \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport=LAPTOP)
        page.goto(url)
        expect(page.get_by_role("tabpanel")).to_contain_text("parameters", timeout=60_000)

        def shot(name: str) -> None:
            if shots:
                shots.mkdir(parents=True, exist_ok=True)
                page.wait_for_timeout(600)  # let Gradio's fade-in finish
                page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

        yield page, shot
        browser.close()


def browser_parser(description: str, out: str) -> argparse.ArgumentParser:
    """The options every browser measurement takes: repeats, where screenshots go, the results file."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shots", type=Path, default=None, help="save a screenshot of each view here")
    parser.add_argument("--out", default=str(REPO / "bench" / out))
    return parser


def _timed(page, act, done) -> float:
    """Seconds from ``act()`` until ``done()`` (a Playwright wait) returns."""
    start = time.perf_counter()
    act()
    done()
    return time.perf_counter() - start


def measure(page, repeats: int, shot) -> dict[str, list[float]]:
    from playwright.sync_api import expect

    out: dict[str, list[float]] = {}
    page.get_by_role("tab", name="Attention").click()
    page.locator("#attention-text textarea").fill(TEXT)
    view = page.locator("#attention-view")
    times = []
    for i in range(repeats):
        title = "layer 1, head 3" if i % 2 else "layer 1, head 1"  # ends on head 1 (an odd count of repeats)
        def choose(name=title.split(", ")[1]):  # choosing redraws on its own, no button
            page.get_by_role("combobox", name="head", exact=True).click()
            page.get_by_role("option", name=name, exact=True).click()
        times.append(_timed(page, choose, lambda t=title: expect(view).to_contain_text(t, timeout=30_000)))
    out["attention: choose a head until its view is drawn"] = times
    tokens = view.locator(".gc-tok")
    out["attention: hover a token until its weights show"] = [
        _timed(page, lambda i=i: tokens.nth(20 + i).hover(),
               lambda i=i: expect(view.locator(".gc-info")).to_contain_text(f"({21 + i}) looks at"))
        for i in range(repeats)]
    tokens.nth(40).click()
    shot("attention")

    page.get_by_role("tab", name="Inside").click()
    page.locator("#inside-text textarea").fill(TEXT)
    pred = page.locator("#inside-predictions-view")
    times = []
    legend = pred.locator(".gc-legend")
    for i in range(repeats):  # two texts in turn (both cropped to the context), so each answer is new
        page.locator("#inside-text textarea").fill(TEXT if i % 2 else " " + TEXT)
        before = legend.inner_text() if legend.count() else ""
        times.append(_timed(page, lambda: page.locator("#inside-btn").click(),
                            lambda b=before: expect(legend).not_to_have_text(b, timeout=30_000)))
    out["inside: Look inside until the predictions are drawn"] = times
    out["inside: click a token until its distribution shows"] = [
        _timed(page, lambda i=i: pred.locator(".gc-tok").nth(10 + i).click(),
               lambda i=i: expect(pred.locator(".gc-dist")).to_contain_text(f"(character {11 + i})"))
        for i in range(repeats)]
    pred.locator(".gc-tok").nth(57).click()
    shot("predictions")
    page.get_by_role("tab", name="Logit lens").click()
    expect(page.locator("#inside-lens-view table")).to_be_visible(timeout=30_000)
    shot("logit-lens")
    page.get_by_role("tab", name="Embeddings").click()
    expect(page.locator("#inside-embeddings-map img")).to_be_visible(timeout=30_000)
    shot("embeddings")
    page.get_by_role("tab", name="Switch heads off").click()
    summary = page.locator("#inside-heads-summary")
    times = []
    for i in range(repeats):
        box = page.get_by_label("L1 H1")
        wanted = "layer 1 head 1" if not box.is_checked() else "Every head is on"
        times.append(_timed(page, lambda: box.click(),
                            lambda w=wanted: expect(summary).to_contain_text(w, timeout=30_000)))
    out["inside: tick a head until the new loss shows"] = times
    if page.get_by_label("L1 H1").is_checked():
        page.get_by_label("L1 H1").click()
    page.get_by_label("L2 H3").click()
    expect(summary).to_contain_text("layer 2 head 3", timeout=30_000)
    shot("heads-off")
    return out


def main(argv: list[str] | None = None) -> int:
    args = browser_parser(__doc__.splitlines()[0], "browser_views.json").parse_args(argv)
    with served_page(args.shots) as (page, shot):
        times = measure(page, args.repeats, shot)
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):.3f} s", flush=True)
    result = {
        "command": "python bench/browser_views.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "checkpoint": "shakespeare-char (the app's default)", "text_chars": len(TEXT),
        "note": "texts longer than the model's context are cropped to it (256 characters): a full context",
        "seconds": {name: {**_summary(v), "target": "<= 1"} for name, v in times.items()},
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
