"""A real browser (Playwright driving Debian's chromium) through every tab of a launched ``python app.py``.

Screenshots of each tab at laptop and phone width go to artifacts/screenshots/ (git-ignored) for a person
to look at.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from demo_support import APP_MAX_NEW_TOKENS, REPO

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = REPO / "artifacts" / "screenshots"
# every wait is for a state on the page; this bound only turns a hang into a failure (a busy machine is slow)
WAIT_MS = 300_000
expect.set_options(timeout=WAIT_MS)  # the assertions that name no timeout of their own, too
ITERATIONS_LABEL = "iterations"
LAPTOP, PHONE = {"width": 1366, "height": 900}, {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, app_url):
    context = browser.new_context(viewport=LAPTOP)
    context.set_default_timeout(WAIT_MS)  # clicks, fills and waits for elements
    page = context.new_page()
    page.goto(app_url)
    expect(page.get_by_role("tab", name="Sample")).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_role("tabpanel")).to_contain_text("parameters", timeout=WAIT_MS)  # page-load events done
    yield page
    context.close()


def _shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _open_tab(page: Page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()  # "Models", not "Compare two models"


def _choose(page: Page, label: str, option: str) -> None:
    """Pick ``option`` in the visible tab's dropdown called ``label``: in that dropdown's own list, since
    another picker's list may be on the page at the same moment (one redrawn with new choices)."""
    box = page.get_by_role("tabpanel").get_by_label(label, exact=True)
    box.click()
    box.locator("xpath=ancestor::div[contains(concat(' ', @class, ' '), ' block ')][1]").get_by_role(
        "option", name=option, exact=True).click()


def test_sample_tab_generates_text_and_charts_the_next_character(page):
    _open_tab(page, "Sample")
    expect(page.locator("#sample-output textarea")).to_be_visible()
    _choose(page, "checkpoint", "tiny")
    expect(page.get_by_role("tabpanel")).to_contain_text("tiny · GPT, 2 layers")
    page.get_by_label("prompt").fill("ROMEO:")
    page.locator("#generate-btn").click()
    expect(page.locator("#sample-status")).to_contain_text("chars/s", timeout=WAIT_MS)
    text = page.locator("#sample-output textarea").input_value()
    assert text.startswith("ROMEO:") and len(text) == len("ROMEO:") + 500
    expect(page.locator("#next-char-plot")).to_contain_text("next character", timeout=WAIT_MS)
    expect(page.locator("#next-char-plot canvas, #next-char-plot svg").first).to_be_visible(timeout=WAIT_MS)
    _shot(page, "sample-laptop")


def test_every_tab_explains_how_to_read_it(page):
    for name, key, words in [("Sample", "sample", "Temperature"), ("Attention", "attention", "query"),
                             ("Inside", "inside", "residual stream"),
                             ("Train", "train", "validation"), ("Ablations", "ablations", "Welch"),
                             ("Models", "models", "checkpoint is a folder")]:
        _open_tab(page, name)
        explanation = page.locator(f"#explain-{key}")
        if not explanation.is_visible():
            page.get_by_role("tabpanel").get_by_text("How to read this").first.click()
        expect(explanation).to_contain_text(words, timeout=WAIT_MS)


def test_sample_tab_stop_says_so_and_generate_is_in_view(page):
    _open_tab(page, "Sample")
    box = page.locator("#generate-btn").bounding_box()
    assert box["y"] + box["height"] <= LAPTOP["height"], "Generate is below the fold at 1366x900"
    page.locator("#max-new-tokens input[type=number]").fill(str(APP_MAX_NEW_TOKENS))  # longer than Stop takes
    page.locator("#max-new-tokens input[type=number]").press("Enter")
    page.get_by_label("prompt").fill("ROMEO:")
    page.locator("#generate-btn").click()
    expect(page.locator("#sample-status")).to_contain_text(re.compile(r"Generating… \d"), timeout=WAIT_MS)
    page.locator("#stop-generate-btn").click()
    expect(page.locator("#sample-status")).to_contain_text("Stopped after", timeout=WAIT_MS)
    page.locator("#max-new-tokens input[type=number]").fill("500")
    page.locator("#max-new-tokens input[type=number]").press("Enter")


def test_an_error_message_does_not_follow_the_visitor_to_another_tab(page):
    _open_tab(page, "Sample")
    page.get_by_role("radio", name="refuse (show an error)").check()
    page.get_by_label("prompt").fill("ROMEO: €")
    page.locator("#generate-btn").click()
    toast = page.get_by_test_id("toast-body")
    expect(toast.first).to_contain_text("€", timeout=WAIT_MS)
    _open_tab(page, "Ablations")  # closes it (a message lasts 10 s on its own, more than the next steps take)
    page.wait_for_function("window.gcDismissed >= 1")
    expect(toast).to_have_count(0)
    _open_tab(page, "Sample")
    page.get_by_role("radio", name="replace them with a space").check()
    page.get_by_label("prompt").fill("ROMEO:")


def test_attention_tab_hover_click_zoom_and_the_roles_table(page):
    _open_tab(page, "Attention")
    _choose(page, "checkpoint", "tiny")
    page.locator("#attention-btn").click()
    view = page.locator("#attention-view")
    expect(view).to_contain_text("tiny · layer 1, head 1")  # this press's view, not the one made as the tab opened
    tokens = view.locator(".gc-tok")
    expect(tokens.first).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#attention-roles")).to_contain_text(re.compile("attends|spreads|prefers"), timeout=WAIT_MS)
    tokens.nth(5).hover()
    expect(view.locator(".gc-info")).to_contain_text("(6) looks at:")
    expect(view.locator(".gc-steps")).to_contain_text("How the weights of")  # scores, mask, softmax
    assert view.locator(".gc-steps tr").count() >= 2
    assert "rgba" in (tokens.nth(4).get_attribute("style") or "")  # the tokens it looks at are shaded
    view.get_by_role("button", name="what looks at a token").click()
    tokens.nth(2).click()  # pinned: moving away keeps it
    expect(view.locator(".gc-info")).to_contain_text("(3) is looked at by:")
    page.mouse.move(0, 0)
    expect(view.locator(".gc-info")).to_contain_text("is looked at by:")
    canvas = view.locator("canvas.gc-heat")
    width = canvas.bounding_box()["width"]
    view.get_by_role("button", name="zoom in").click()
    assert canvas.bounding_box()["width"] > width  # zooms (and scrolls), never shrinks labels
    box = canvas.bounding_box()
    cell = (box["width"] - 34) / tokens.count()
    canvas.hover(position={"x": 34 + cell * 1.5, "y": 34 + cell * 4.5})
    expect(view.locator(".gc-tip")).to_contain_text("(5) → key")
    page.locator("#attention-roles").get_by_role("gridcell").nth(4).click()  # row 2: layer 1, head 2
    expect(view).to_contain_text("layer 1, head 2", timeout=WAIT_MS)
    page.wait_for_timeout(800)
    _shot(page, "attention-laptop")
    _choose(page, "head", "all heads (grid)")  # a grid is a picture
    expect(page.locator("#attention-plot img")).to_be_visible(timeout=WAIT_MS)
    expect(view).to_be_hidden()
    _choose(page, "head", "head 1")
    expect(view.locator(".gc-tok").first).to_be_visible(timeout=WAIT_MS)


def test_inside_tab_predictions_lens_embeddings_and_heads_off(page):
    _open_tab(page, "Inside")
    _choose(page, "checkpoint", "tiny")
    page.locator("#inside-btn").click()
    pred = page.locator("#inside-predictions-view")
    expect(pred).to_contain_text("as red as tiny", timeout=WAIT_MS)  # this press's view
    expect(pred.locator(".gc-tok").first).to_be_visible(timeout=WAIT_MS)
    expect(pred.locator(".gc-dist")).to_contain_text("end of the text")  # the last position, at first
    pred.locator(".gc-tok").nth(3).click()
    expect(pred.locator(".gc-dist")).to_contain_text("(character 4)")
    expect(pred.locator(".gc-dist")).to_contain_text("The text goes on with")
    assert pred.locator(".gc-dist .gc-bar").count() == 10
    _shot(page, "inside-predictions-laptop")
    page.get_by_role("tab", name="Logit lens").click()
    expect(page.locator("#inside-lens-view table")).to_contain_text("the model's prediction", timeout=WAIT_MS)
    _shot(page, "inside-lens-laptop")
    page.get_by_role("tab", name="Embeddings").click()
    expect(page.locator("#inside-embeddings-map img")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#inside-embeddings-note")).to_contain_text("variance")
    _shot(page, "inside-embeddings-laptop")
    page.get_by_role("tab", name="Switch heads off").click()
    expect(page.locator("#inside-heads-summary")).to_contain_text("Every head is on", timeout=WAIT_MS)
    expect(page.locator("#inside-each-head")).to_contain_text("L2 H1")
    page.get_by_label("L1 H2").check()
    expect(page.locator("#inside-heads-summary")).to_contain_text("layer 1 head 2", timeout=WAIT_MS)
    expect(page.locator("#inside-heads-view .gc-tok").first).to_be_visible()
    _shot(page, "inside-heads-laptop")
    for view, key, words in [("Predictions", "predictions", "surprised"), ("Logit lens", "lens", "stopped early"),
                             ("Embeddings", "embeddings", "principal component"),
                             ("Switch heads off", "heads_off", "residual stream")]:
        page.get_by_role("tab", name=view).click()  # each view explains itself, closed until asked
        explanation = page.locator(f"#explain-{key}")
        expect(explanation).to_be_hidden()
        page.get_by_text("How to read this").filter(visible=True).nth(1).click()  # after the tab's own
        expect(explanation).to_contain_text(words, timeout=WAIT_MS)


def _step(status) -> int:
    return int(re.search(r"step (\d+)", status.inner_text()).group(1))


def test_inside_tab_compares_two_models(page):
    _open_tab(page, "Inside")
    _choose(page, "checkpoint", "tiny")
    page.get_by_role("tab", name="Compare two models").click()
    _choose(page, "compare with", "brief")  # runs the comparison
    expect(page.locator("#compare-summary")).to_contain_text("brief predicts", timeout=WAIT_MS)
    expect(page.locator("#compare-change .gc-tok").first).to_be_visible()
    expect(page.locator("#compare-roles")).to_contain_text("L2 H2")
    expect(page.locator("#compare-lens table")).to_have_count(2)
    _shot(page, "inside-compare-laptop")
    _choose(page, "compare with", "tiny-bpe-rope")  # another tokenizer: said in the view, in a sentence
    expect(page.locator("#compare-summary")).to_contain_text("read text differently", timeout=WAIT_MS)


def test_train_tab_replays_a_runs_snapshots(page):
    _open_tab(page, "Train")
    label, roles = page.locator("#replay-step-label"), page.locator("#replay-roles")
    expect(label).to_contain_text("Step 60 ", timeout=WAIT_MS)  # the tiny run's last snapshot
    expect(page.locator("#replay-head canvas.gc-heat")).to_be_visible()
    expect(roles).to_contain_text("L2 H2")
    _shot(page, "train-replay-laptop")
    page.locator("#replay-step input[type=range]").fill("0")  # back to the start of training
    expect(label).to_contain_text("Step 0 ", timeout=WAIT_MS)
    expect(roles).to_contain_text("spreads its attention evenly")
    expect(page.locator("#replay-head")).to_contain_text("at step 0")
    _choose(page, "head", "head 2")
    expect(page.locator("#replay-head")).to_contain_text("Layer 1, head 2 at step 0")
    expect(roles.locator("tr.gc-picked")).to_contain_text("L1 H2")
    page.locator("#replay-text .gc-tok").nth(3).hover()  # each character says what the model expected
    expect(page.locator("#replay-text .gc-tok").nth(3)).to_have_attribute("title", re.compile("the model expected"))
    _shot(page, "train-replay-step0-laptop")


def test_train_tab_starts_a_run_shows_the_chart_moving_and_stops(page):
    _open_tab(page, "Train")
    # a step budget, not a time one: a starved run must not end before its first sample (it runs until Stop)
    page.get_by_role("tabpanel").get_by_label(ITERATIONS_LABEL).check()
    page.get_by_role("tabpanel").get_by_label("how many").fill("100000")
    page.locator("#train-start-btn").click()
    status = page.locator("#train-status")
    expect(status).to_contain_text("Running", timeout=WAIT_MS)
    chart = page.locator("#train-chart")
    expect(chart.locator("canvas, svg").first).to_be_visible(timeout=WAIT_MS)
    before = chart.screenshot()
    step_before = _step(status)
    # on a loaded machine the (low-priority) training process may need a while for its next report
    deadline = time.monotonic() + WAIT_MS / 1000
    while time.monotonic() < deadline and not (_step(status) > step_before and chart.screenshot() != before):
        page.wait_for_timeout(1000)
    assert _step(status) > step_before, "the run made no progress"
    assert chart.screenshot() != before, "the loss chart did not move"
    expect(page.locator("#train-sample textarea")).not_to_have_value("", timeout=WAIT_MS)
    _shot(page, "train-laptop-running")
    page.locator("#train-stop-btn").click()
    expect(status).to_contain_text("Stopped", timeout=WAIT_MS)
    expect(status).to_contain_text("trained/")
    _shot(page, "train-laptop-stopped")
    # the finished run appears in the Sample tab's picker
    _open_tab(page, "Sample")
    page.get_by_role("tabpanel").get_by_label("checkpoint").click()
    expect(page.get_by_role("option").filter(has_text="trained/").first).to_be_visible(timeout=WAIT_MS)
    page.keyboard.press("Escape")


def test_ablations_tab_shows_the_study(page):
    _open_tab(page, "Ablations")
    expect(page.locator("#ablations-intro")).to_contain_text("heads of a tiny model", timeout=WAIT_MS)
    expect(page.locator("#ablations-summary img")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#ablations-summary-table")).to_contain_text("2 heads")
    expect(page.locator("#ablations-curves img")).to_be_visible()
    _shot(page, "ablations-laptop")
    # the overview of every claim folds open above the study (this results folder has none written yet)
    page.get_by_text("What the studies found, claim by claim").click()
    expect(page.locator("#ablations-claims")).to_contain_text("No claim-by-claim summary", timeout=WAIT_MS)
    _opens_the_arms_in_inside(page, "laptop")


def _opens_the_arms_in_inside(page: Page, width: str) -> None:
    """From the Ablations tab, one arm's model opened alone, then the two arms compared, in the Inside tab."""
    _open_tab(page, "Ablations")
    expect(page.locator("#ablations-models")).to_contain_text("ablations/heads-2", timeout=WAIT_MS)
    page.locator("#ablations-models").scroll_into_view_if_needed()
    _shot(page, f"ablations-models-{width}")
    page.locator("#ablations-open-btn").click()
    expect(page.get_by_role("tab", name="Inside", selected=True)).to_be_visible(timeout=WAIT_MS)
    expect(page.get_by_role("tabpanel").get_by_label("checkpoint", exact=True).first).to_have_value(
        "ablations/heads-1", timeout=WAIT_MS)
    expect(page.locator("#inside-predictions-view")).to_contain_text("as red as ablations/heads-1", timeout=WAIT_MS)
    _open_tab(page, "Ablations")
    page.locator("#ablations-compare-btn").click()
    expect(page.get_by_role("tab", name="Compare two models", selected=True)).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#compare-summary")).to_contain_text("ablations/heads-2 predicts", timeout=WAIT_MS)
    expect(page.locator("#compare-roles")).to_contain_text("L2 H2")
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= page.viewport_size["width"] + 1, f"the comparison of two arms scrolls sideways ({scroll}px)"
    _shot(page, f"ablations-compare-{width}")


def test_models_tab_downloads_a_model_and_uploads_it_for_sampling_and_attention(page, tmp_path):
    _open_tab(page, "Models")
    _choose(page, "checkpoint", "tiny-bpe-rope")
    page.locator("#download-btn").click()
    link = page.locator("#download-file a").first
    expect(link).to_be_visible(timeout=WAIT_MS)
    with page.expect_download() as download:
        link.click()
    zipped = tmp_path / "model.zip"
    download.value.save_as(zipped)
    page.locator("#upload-files input[type=file]").set_input_files(str(zipped))
    page.get_by_role("tabpanel").get_by_label("name (optional)").fill("from-browser")
    page.locator("#upload-btn").click()
    expect(page.locator("#upload-status")).to_contain_text("uploaded/from-browser", timeout=WAIT_MS)
    _shot(page, "models-laptop")
    _open_tab(page, "Sample")
    _choose(page, "checkpoint", "uploaded/from-browser")
    expect(page.get_by_role("tabpanel")).to_contain_text("(bpe)", timeout=WAIT_MS)
    page.get_by_label("prompt").fill("ROMEO:")
    page.locator("#generate-btn").click()
    expect(page.locator("#sample-status")).to_contain_text("uploaded/from-browser", timeout=WAIT_MS)
    _open_tab(page, "Attention")
    _choose(page, "checkpoint", "uploaded/from-browser")
    page.locator("#attention-btn").click()
    expect(page.locator("#attention-view")).to_contain_text("uploaded/from-browser · layer 1", timeout=WAIT_MS)
    expect(page.locator("#attention-roles")).to_contain_text("what it mostly does", timeout=WAIT_MS)


def _run_and_tap(page: Page, button: str, view: str, named: str, nth: int, answer: str, text: str) -> None:
    """On the tiny model: press ``button``, wait for ``view`` to be this press's (it says ``named``, not the
    view drawn as the tab first opened), tap its ``nth`` token and see ``text`` in its ``answer``."""
    _choose(page, "checkpoint", "tiny")
    page.locator(button).click()
    expect(page.locator(view)).to_contain_text(named, timeout=WAIT_MS)
    page.locator(f"{view} .gc-tok").nth(nth).tap()
    expect(page.locator(f"{view} {answer}")).to_contain_text(text, timeout=WAIT_MS)


def test_every_tab_at_phone_width(browser, app_url):
    context = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto(app_url)
    expect(page.get_by_role("tabpanel")).to_contain_text("parameters", timeout=WAIT_MS)  # page-load events done
    for name, ready in [("Sample", "#generate-btn"), ("Attention", "#attention-btn"), ("Inside", "#inside-btn"),
                        ("Train", "#train-start-btn"),
                        ("Ablations", "#ablations-reload-btn"), ("Models", "#upload-btn")]:
        tab = page.get_by_role("tab", name=name)
        expect(tab).to_be_visible()  # no tab is hidden in an overflow menu
        tab.click()
        expect(page.locator(ready)).to_be_visible(timeout=WAIT_MS)
        if name == "Attention":
            _run_and_tap(page, "#attention-btn", "#attention-view", "tiny · layer", 3, ".gc-info", "(4) looks at:")
        if name == "Inside":
            _run_and_tap(page, "#inside-btn", "#inside-predictions-view", "as red as tiny", 2, ".gc-dist",
                         "(character 3)")
            for view, ready_view in [("Logit lens", "#inside-lens-view table"),
                                     ("Embeddings", "#inside-embeddings-map img"),
                                     ("Compare two models", "#compare-change .gc-tok >> nth=0"),
                                     ("Switch heads off", "#inside-each-head")]:
                page.get_by_role("tab", name=view).click()  # every view's tab is visible on a phone
                if view.startswith("Compare"):
                    _choose(page, "compare with", "brief")
                expect(page.locator(ready_view)).to_be_visible(timeout=WAIT_MS)
                width = page.evaluate("document.documentElement.scrollWidth")
                assert width <= PHONE["width"] + 1, f"Inside, {view}, scrolls sideways on a phone ({width}px)"
                _shot(page, f"inside-{view.split()[0].lower()}-phone")
            page.get_by_label("L2 H1").tap()
            expect(page.locator("#inside-heads-summary")).to_contain_text("layer 2 head 1", timeout=WAIT_MS)
        if name == "Train":  # what a run shows comes before the form that starts it, not a screen below it
            assert page.locator("#train-chart").bounding_box()["y"] < page.locator("#train-start-btn").bounding_box()["y"]
            expect(page.locator("#replay-head canvas.gc-heat")).to_be_visible(timeout=WAIT_MS)
            page.locator("#replay-step input[type=range]").fill("1")  # the slider works on a phone too
            expect(page.locator("#replay-step-label")).to_contain_text("Step 10 ", timeout=WAIT_MS)
            page.locator("#replay-roles").scroll_into_view_if_needed()
            _shot(page, "train-replay-phone")
        if name == "Ablations":
            expect(page.locator("#ablations-summary img")).to_be_visible(timeout=WAIT_MS)
            table = page.locator("#ablations-summary-table table").first
            expect(table).to_be_visible(timeout=WAIT_MS)  # wider than a phone: it scrolls, the page does not
            assert table.evaluate("t => getComputedStyle(t).overflowX") == "auto"
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"] + 1, f"{name} tab scrolls sideways on a phone ({width}px)"
        _shot(page, f"{name.lower()}-phone")
    _opens_the_arms_in_inside(page, "phone")
    context.close()


def test_attention_and_inside_show_their_views_when_first_opened(browser, demo_checkpoints, demo_ablations,
                                                                tmp_path):
    """Without pressing any button: opening the tab shows the default model's views of the default text (an app
    of its own, whose pickers open on a model with attention)."""
    from demo_support import app_env, free_port, launched_app

    env = dict(app_env(demo_checkpoints, tmp_path / "runs", demo_ablations, free_port()),
               GPTCORE_DEFAULT_CHECKPOINT="tiny")
    with launched_app(env, tmp_path / "app.log") as url:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        try:
            page.goto(url)
            expect(page.get_by_role("tab", name="Sample")).to_be_visible(timeout=WAIT_MS)
            _open_tab(page, "Attention")
            expect(page.locator("#attention-view .gc-tok").first).to_be_visible(timeout=WAIT_MS)
            _open_tab(page, "Inside")
            expect(page.locator("#inside-predictions-view .gc-tok").first).to_be_visible(timeout=WAIT_MS)
        finally:
            page.close()
