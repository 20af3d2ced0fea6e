"""The ablation tables in the docs are the runner's results, not a copy that goes stale: every arm row,
comparison line, budget line, reference loss, equal-time row and verdicts-at-each-budget row in
docs/ablations.md (and any such line README quotes) must be a line that ``ablate --summary`` prints from a
committed results file today. When a study gains seeds, this fails until the docs follow."""

import itertools
import re
from pathlib import Path

from gptcore.experiments.ablation_results import load_results, summarize, verdicts_across_budgets
from gptcore.experiments.wallclock import equal_time_markdown

ROOT = Path(__file__).resolve().parents[1]
ABLATIONS_DOC = ROOT / "docs" / "ablations.md"
README = ROOT / "README.md"
ARM_ROW = re.compile(r"^\| [^|]+ \| \d+\.\d{4} ± ")
COMPARISON = re.compile(r"^- \S+ vs \S+: Δ = ")
VERDICT_ROW = re.compile(r"^\| \S+ vs \S+ \| ")
SCALE = re.compile(r"^For scale: ")
BUDGET = re.compile(r"^Budget: \d+ steps of ")
EQUAL_TIME_ROW = re.compile(r"^\| [^|]+ \| \d+\.\d{3} \| [\d,]+ \| ")
EQUAL_TIME_HEAD = re.compile(r"^\*\*At equal wall-clock time\*\* \(")
PATTERNS = (ARM_ROW, COMPARISON, VERDICT_ROW, SCALE, BUDGET, EQUAL_TIME_ROW, EQUAL_TIME_HEAD)


def committed_results() -> dict[str, list[tuple[Path, dict]]]:
    """Every committed ``<study>.json`` (not ``<study>.step_cost.json``), by study."""
    by_study: dict[str, list[tuple[Path, dict]]] = {}
    for path in sorted(ROOT.glob("checkpoints/ablations*/*.json")):
        if "." not in path.stem:
            results = load_results(path)
            by_study.setdefault(results["study"], []).append((path, results))
    return by_study


def results_lines() -> set[str]:
    """Every line the summaries, the equal-time tables and the verdicts-at-each-budget tables of the
    committed results can print."""
    lines = set()
    for studies in committed_results().values():
        for path, results in studies:
            lines |= set(summarize(results).splitlines())
            lines |= set(equal_time_markdown(path.parent, results).splitlines())
        for n in range(2, len(studies) + 1):
            for subset in itertools.combinations([results for _, results in studies], n):
                lines |= set(verdicts_across_budgets(list(subset)).splitlines())
    return lines


def quoted_result_lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if any(p.match(line) for p in PATTERNS)]


def test_ablation_tables_in_the_docs_are_the_committed_results():
    quoted = quoted_result_lines(ABLATIONS_DOC)
    assert len(quoted) >= 60, "docs/ablations.md should quote the studies' tables"
    known = results_lines()
    stale = [line for line in quoted + quoted_result_lines(README) if line not in known]
    assert not stale, ("the docs quote results no committed results file gives (rerun `python -m gptcore ablate "
                       "--study S --summary --out DIR` and paste its output into docs/ablations.md):\n"
                       + "\n".join(stale))


def test_every_study_at_its_longest_budget_is_in_the_docs():
    """Each study's table at its longest budget is quoted whole: no arm left out."""
    doc = set(ABLATIONS_DOC.read_text(encoding="utf-8").splitlines())
    for study, studies in committed_results().items():
        _, longest = max(studies, key=lambda s: s[1]["budget"]["max_iters"])
        rows = [line for line in summarize(longest).splitlines() if ARM_ROW.match(line) or COMPARISON.match(line)]
        missing = [line for line in rows if line not in doc]
        assert rows and not missing, f"docs/ablations.md lacks {study}'s rows:\n" + "\n".join(missing)


def test_the_check_catches_a_changed_number():
    """The check itself can fail: one digit changed in a quoted row is caught."""
    row = next(line for line in quoted_result_lines(ABLATIONS_DOC) if ARM_ROW.match(line))
    changed = re.sub(r"(\d\.\d{3})(\d)", lambda m: m[1] + str((int(m[2]) + 1) % 10), row, count=1)
    assert changed != row and changed not in results_lines()


def test_the_claim_table_is_the_one_the_app_shows():
    """The claim-by-claim table is written once (checkpoints/ablations/claims.md, the Ablations tab's
    overview) and docs/ablations.md carries it verbatim."""
    claims = (ROOT / "checkpoints" / "ablations" / "claims.md").read_text(encoding="utf-8").strip()
    assert claims.startswith("**Claim by claim.**") and claims.count("\n| ") >= 7
    assert claims in ABLATIONS_DOC.read_text(encoding="utf-8")


def test_the_crowd_figures_in_readme_and_the_app_doc_are_bench_load_json():
    """README's and docs/app.md's line on the app under a crowd is what bench/load.py wrote."""
    import json

    from bench.load import headline

    line = headline(json.loads((ROOT / "bench" / "load.json").read_text()))
    assert line in README.read_text()
    assert line in (ROOT / "docs" / "app.md").read_text()
    overload = headline(json.loads((ROOT / "bench" / "load-overload.json").read_text()))
    assert overload in (ROOT / "docs" / "app.md").read_text()


def test_the_replay_findings_in_the_docs_are_read_off_the_shipped_snapshots():
    """docs/snapshots.md's tables of when each head took on its job are what bench/replay_findings.py prints
    from the committed snapshots of checkpoints/two-layer and checkpoints/shakespeare-char."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("replay_findings", ROOT / "bench" / "replay_findings.py")
    findings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(findings)
    doc = (ROOT / "docs" / "snapshots.md").read_text(encoding="utf-8").splitlines()
    for shipped in ("two-layer", "shakespeare-char"):  # the small model and the app's default, each its own table
        snaps = findings.Snapshots.load(ROOT / "checkpoints" / shipped)
        table = findings.markdown(findings.findings(snaps), len(snaps.windows)).splitlines()
        assert [line for line in table[2:] if line not in doc] == [], shipped


def test_what_the_extra_heads_do_is_read_off_the_committed_measurements():
    """docs/ablations.md's 1-head-against-8 table and numbers are bench/compare_arms_heads.json's and
    bench/inside_arm_heads-{1,8}.json's (made from the shipped arm models)."""
    import json

    doc = ABLATIONS_DOC.read_text(encoding="utf-8")
    flat = " ".join(doc.split())
    compared = json.loads((ROOT / "bench" / "compare_arms_heads.json").read_text())
    assert (compared["first"], compared["second"]) == ("heads-8", "heads-1")
    for kind, row in compared["by_kind"].items():
        gap = row["mean_loss_second"] - row["mean_loss_first"]
        assert (f"| {kind} | {row['count']:,} | {row['mean_loss_first']:.4f} | {row['mean_loss_second']:.4f} | "
                f"{gap:.4f} |") in doc
    whole = compared["mean_loss_second"] - compared["mean_loss_first"]
    assert (f"| all | {compared['predicted_tokens']:,} | {compared['mean_loss_first']:.4f} | "
            f"{compared['mean_loss_second']:.4f} | {whole:.4f} |") in doc
    readme = " ".join(README.read_text(encoding="utf-8").split())
    assert f"predict {whole:.3f} nats a character better" in flat
    assert f"heads predict {whole:.3f} nats a character better than one" in readme
    assert f"One head still predicts {100 * compared['share_second_better']:.1f}% of the characters" in flat
    one, eight = (json.loads((ROOT / "bench" / f"inside_arm_heads-{n}.json").read_text())["heads"] for n in (1, 8))
    costliest = max(one, key=lambda h: h["loss_change_when_off"])
    assert costliest["head"] == "L1 H1" and costliest["role"] == "attends to the previous character"
    assert f"switching it off costs {costliest['loss_change_when_off']:.2f} nats a character" in flat
    assert f"switching it off costs {costliest['loss_change_when_off']:.2f} nats a character" in readme
    costliest = max(eight, key=lambda h: h["loss_change_when_off"])
    assert costliest["head"] == "L3 H2" and costliest["role"] == "attends to the last newline"
    assert f"the one that costs most when switched off, {costliest['loss_change_when_off']:.3f} nats" in flat
    layer1 = [h["role"] for h in eight if h["head"].startswith("L1 ")]
    assert (layer1.count("attends to the previous character"), layer1.count("attends to the character two back")) \
        == (4, 3)


def test_the_raised_speed_goals_table_and_readme_rows_are_bench_results_goals_json():
    """docs/speed.md's table of the raised goals is what ``gptcore bench`` prints from bench/results-goals.json
    (less the row of the preset that run left out), and README's speed rows quote the same run."""
    import json
    import statistics

    from gptcore.experiments.bench import format_table

    r = json.loads((ROOT / "bench" / "results-goals.json").read_text())
    speed = (ROOT / "docs" / "speed.md").read_text()
    for line in format_table(r).splitlines():
        if "fifteen-minutes" not in line:
            assert line in speed, line
    readme = README.read_text()
    t, s = r["train"], r["sampling"]
    runs = [run for run in r["runs"] if run["preset"] == "speedrun"]
    assert f"[{t['median_fast']:,.0f}: {t['ratio']:.2f}x]" in readme
    assert f"[{s['median_cached']:,.0f}: {s['cached_ratio']:.1f}x; {s['median_sampled']:,.0f}: " \
           f"{s['sampled_ratio']:.1f}x]" in readme
    assert f"[{statistics.median(x['val_loss'] for x in runs):.4f} in " \
           f"{statistics.median(x['wall_s'] for x in runs):.1f} s]" in readme
    assert f"[{r['tokenizer']['median_cold']:.2f} MB/s]" in readme
