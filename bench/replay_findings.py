"""When each head of a run took on its job: read off the run's snapshots (gptcore.snapshots).

    python bench/replay_findings.py [--checkpoint checkpoints/two-layer] [--out bench/replay_findings.json]

A head's role at a snapshot is the one most of the snapshot's windows of validation text give it (the probe and
seven more spread over the split). For every head this reports the first step at which that role is a job (not
a spread over the context, even or without a pattern), the step from which its last role holds to the end of the run, how many
windows agree on that role at the end, and every change on the way; and the probe's loss at each snapshot.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gptcore.snapshots import Snapshots, role_changes  # noqa: E402

NO_JOB = "spreads its attention"  # evenly over the context, or over many tokens with no single pattern


def findings(snaps: Snapshots) -> list[dict]:
    last = snaps.taken[-1]
    rows = []
    for layer, heads in enumerate(role_changes(snaps)):
        for head, history in enumerate(heads):
            first_job = next((step for step, role in history if not role.startswith(NO_JOB)), None)
            rows.append({"head": f"L{layer + 1} H{head + 1}", "role_at_end": history[-1][1],
                         "holds_from_step": history[-1][0], "first_step_with_a_job": first_job,
                         "windows_agreeing_at_end": int(last.agreement[layer, head]), "changes": len(history) - 1,
                         "history": [[step, role] for step, role in history]})
    return rows


def markdown(rows: list[dict], windows: int) -> str:
    lines = ["| head | role at the end (windows agreeing) | first step with a job | holds from step |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['head']} | {r['role_at_end']} ({r['windows_agreeing_at_end']} of {windows}) | "
                     f"{r['first_step_with_a_job']} | {r['holds_from_step']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "checkpoints" / "two-layer"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "replay_findings.json"))
    args = parser.parse_args(argv)
    snaps = Snapshots.load(args.checkpoint)
    rows = findings(snaps)
    out = {"command": "python bench/replay_findings.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "checkpoint": Path(args.checkpoint).name, "snapshots": len(snaps.taken), "interval": snaps.interval,
           "windows": len(snaps.windows), "window_tokens": len(snaps.probe_ids),
           "probe_loss": [[s.step, round(s.loss, 4)] for s in snaps.taken], "heads": rows}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(markdown(rows, len(snaps.windows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
