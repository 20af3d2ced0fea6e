"""README's ablation tables are the runner's results, not a copy that goes stale: every arm row, comparison
line, verdicts-at-each-budget row and reference loss in README's Ablations section must be a line that
``ablate --summary`` prints from a committed results file today. When a study gains seeds, this fails until README follows."""

import itertools
import re
from pathlib import Path

from gptcore.experiments.ablation_results import load_results, summarize, verdicts_across_budgets

ROOT = Path(__file__).resolve().parents[1]
ARM_ROW = re.compile(r"^\| [^|]+ \| \d+\.\d{4} ± ")
COMPARISON = re.compile(r"^- \S+ vs \S+: Δ = ")
VERDICT_ROW = re.compile(r"^\| \S+ vs \S+ \| ")
SCALE = re.compile(r"^For scale: ")


def ablations_section(readme: str) -> list[str]:
    start = readme.index("\n## Ablations\n")
    end = readme.index("\n## ", start + 1)
    return readme[start:end].splitlines()


def results_lines() -> set[str]:
    """Every line the summaries and the verdicts-at-each-budget tables of the committed results can print."""
    by_study: dict[str, list[dict]] = {}
    for path in sorted(ROOT.glob("checkpoints/ablations*/*.json")):
        if "." not in path.stem:  # <study>.json, not <study>.step_cost.json
            results = load_results(path)
            by_study.setdefault(results["study"], []).append(results)
    lines = set()
    for studies in by_study.values():
        for results in studies:
            lines |= set(summarize(results).splitlines())
        for n in range(2, len(studies) + 1):
            for subset in itertools.combinations(studies, n):
                lines |= set(verdicts_across_budgets(list(subset)).splitlines())
    return lines


def readme_result_lines(section: list[str]) -> list[str]:
    return [line for line in section if any(p.match(line) for p in (ARM_ROW, COMPARISON, VERDICT_ROW, SCALE))]


def test_readme_ablation_tables_are_the_committed_results():
    section = ablations_section((ROOT / "README.md").read_text(encoding="utf-8"))
    quoted = readme_result_lines(section)
    assert len(quoted) >= 20, "README's Ablations section should quote the studies' tables"
    known = results_lines()
    stale = [line for line in quoted if line not in known]
    assert not stale, ("README quotes results no committed results file gives (rerun `python -m gptcore ablate "
                       "--study S --summary` and paste its output):\n" + "\n".join(stale))


def test_the_check_catches_a_changed_number():
    """The check itself can fail: one digit changed in a quoted row is caught."""
    section = ablations_section((ROOT / "README.md").read_text(encoding="utf-8"))
    row = next(line for line in section if ARM_ROW.match(line))
    changed = re.sub(r"(\d\.\d{3})(\d)", lambda m: m[1] + str((int(m[2]) + 1) % 10), row, count=1)
    assert changed != row and changed not in results_lines()


def test_readme_claim_table_is_the_one_the_app_shows():
    """The claim-by-claim table is written once (checkpoints/ablations/claims.md, the Ablations tab's
    overview) and README carries it verbatim."""
    claims = (ROOT / "checkpoints" / "ablations" / "claims.md").read_text(encoding="utf-8").strip()
    assert claims.startswith("**Claim by claim.**") and claims.count("\n| ") >= 7
    assert claims in "\n".join(ablations_section((ROOT / "README.md").read_text(encoding="utf-8")))
