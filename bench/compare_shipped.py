"""Where one model predicts better than another, over many windows of held-out text: what the Inside tab's
comparison shows on one text, averaged.

    python bench/compare_shipped.py [--first checkpoints/shakespeare-char] [--second checkpoints/two-layer]
                                    [--windows 16] [--data PATH] [--out bench/compare_shipped.json]

The two models must share a tokenizer. ``windows`` evenly spaced windows of Tiny Shakespeare's validation
split, each as long as the smaller context, go through both (``gptcore.interpret.compare_surprise``, as the
app does); each predicted character counts once. Reported: each model's mean loss, the share of characters
the second predicts better, and both models' mean loss by kind of character (bench/inside_shipped.py's kinds).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inside_shipped import KINDS, windows  # noqa: E402

from gptcore.checkpoint import load_checkpoint  # noqa: E402
from gptcore.data import Corpus  # noqa: E402
from gptcore.interpret import compare_surprise  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", default=str(ROOT / "checkpoints" / "shakespeare-char"))
    parser.add_argument("--second", default=str(ROOT / "checkpoints" / "two-layer"))
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--data", default=None, help="Tiny Shakespeare (default: $GPTCORE_DATA, or download)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "compare_shipped.json"))
    args = parser.parse_args(argv)
    a, b = load_checkpoint(args.first), load_checkpoint(args.second)
    if a.tokenizer.to_dict() != b.tokenizer.to_dict():
        parser.error("the two checkpoints have different tokenizers")
    corpus = Corpus.load(args.data, tokenizer=a.tokenizer)
    size = min(a.config.model.block_size, b.config.model.block_size)
    first, second, kinds = [], [], {k: ([], []) for k in KINDS}
    for ids in windows(corpus.val, args.windows, size):
        sa, sb = (x.numpy() for x in compare_surprise(a.model.eval(), b.model.eval(), ids))
        first.append(sa)
        second.append(sb)
        pieces = [a.tokenizer.piece(i) for i in ids]
        for i in range(1, len(ids)):
            for kind, test in KINDS.items():
                if test(pieces[i - 1], pieces[i]):
                    kinds[kind][0].append(float(sa[i - 1]))
                    kinds[kind][1].append(float(sb[i - 1]))
    sa, sb = np.concatenate(first), np.concatenate(second)
    result = {
        "command": "python bench/compare_shipped.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "first": Path(args.first).name, "second": Path(args.second).name, "windows": args.windows,
        "window_tokens": size, "predicted_tokens": int(len(sa)),
        "mean_loss_first": round(float(sa.mean()), 4), "mean_loss_second": round(float(sb.mean()), 4),
        "share_second_better": round(float((sb < sa).mean()), 4),
        "by_kind": {k: {"count": len(v[0]), "mean_loss_first": round(float(np.mean(v[0])), 4),
                        "mean_loss_second": round(float(np.mean(v[1])), 4)} for k, v in kinds.items() if v[0]},
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
