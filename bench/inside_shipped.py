"""What the Inside and Attention views show on a model, measured over many windows of held-out text.

    python bench/inside_shipped.py [--checkpoint checkpoints/shakespeare-char] [--windows 16] [--data PATH]
                                   [--out bench/inside_shipped.json]

One window of text is an anecdote; this runs the same measurements as the app's views over ``windows``
evenly spaced, non-overlapping full contexts of Tiny Shakespeare's validation split (text the model never
trained on) and averages them:

1. the logit lens: the loss and top-1 accuracy of each stage's prediction (after the embeddings, after
   each layer; the last is the model's own);
2. switching each head off alone: the mean change in loss, and the role the Attention tab gives the head
   on each window (its most frequent description);
3. surprise by kind of character: the mean loss of word starts, the rest of words, spaces, newlines,
   punctuation, and the first character of a line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gptcore.head_roles import describe_heads  # noqa: E402
from gptcore.checkpoint import load_checkpoint  # noqa: E402
from gptcore.data import Corpus  # noqa: E402
from gptcore.interpret import heads_off, logit_lens, surprise  # noqa: E402

KINDS = {
    "first character of a word": lambda prev, c: c.isalpha() and prev in " \n",
    "rest of a word": lambda prev, c: c.isalpha() and prev.isalpha(),
    "space": lambda prev, c: c == " ",
    "newline": lambda prev, c: c == "\n",
    "punctuation": lambda prev, c: c in ".,;:!?'-",
    "first character of a line": lambda prev, c: prev == "\n",
}


def windows(ids: torch.Tensor, n: int, size: int) -> list[list[int]]:
    starts = np.linspace(0, len(ids) - size - 1, n).astype(int)
    return [ids[s:s + size].tolist() for s in starts]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(REPO / "checkpoints" / "shakespeare-char"))
    parser.add_argument("--windows", type=int, default=16)
    parser.add_argument("--data", default=None, help="Tiny Shakespeare (default: $GPTCORE_DATA, or download)")
    parser.add_argument("--out", default=str(REPO / "bench" / "inside_shipped.json"))
    args = parser.parse_args(argv)
    ck = load_checkpoint(args.checkpoint)
    model, tok, m = ck.model.eval(), ck.tokenizer, ck.config.model
    corpus = Corpus.load(args.data, tokenizer=tok)  # the model's own vocabulary, the usual 90/10 split
    texts = windows(corpus.val, args.windows, m.block_size)

    stages = m.n_layer + 1
    lens_loss, lens_right = np.zeros(stages), np.zeros(stages)
    head_delta = np.zeros((m.n_layer, m.n_head))
    roles: list[list[Counter]] = [[Counter() for _ in range(m.n_head)] for _ in range(m.n_layer)]
    kind_loss: dict[str, list[float]] = {k: [] for k in KINDS}
    predicted = 0
    for ids in texts:
        target = torch.tensor(ids[1:])
        probs = logit_lens(model, ids)[:, :-1]  # (stages, T - 1, vocab)
        lens_loss += -probs.gather(-1, target.expand(stages, -1)[..., None]).squeeze(-1).log().mean(-1).numpy()
        lens_right += (probs.argmax(-1) == target).float().mean(-1).numpy()
        base = surprise(model, ids)
        for layer in range(m.n_layer):
            for head in range(m.n_head):
                with heads_off(model, [(layer, head)]):
                    head_delta[layer, head] += float(surprise(model, ids).mean() - base.mean())
        pieces = [tok.piece(i) for i in ids]
        maps = [a[0].float().numpy() for a in model.attention_maps(torch.tensor([ids]))]
        for layer, layer_roles in enumerate(describe_heads(maps, pieces)):
            for head, role in enumerate(layer_roles):
                roles[layer][head][role.description] += 1
        for i in range(1, len(ids)):
            for kind, test in KINDS.items():
                if test(pieces[i - 1], pieces[i]):
                    kind_loss[kind].append(float(base[i - 1]))
        predicted += len(ids) - 1
    n = len(texts)
    names = ["embeddings"] + [f"after layer {i + 1}" for i in range(m.n_layer)]
    result = {
        "command": "python bench/inside_shipped.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "checkpoint": Path(args.checkpoint).name, "windows": n, "window_tokens": m.block_size,
        "predicted_tokens": predicted, "text": "Tiny Shakespeare validation split, evenly spaced windows",
        "logit_lens": [{"stage": name, "loss": round(float(lens_loss[s] / n), 4),
                        "top1_accuracy": round(float(lens_right[s] / n), 4)} for s, name in enumerate(names)],
        "heads": sorted(({"head": f"L{layer + 1} H{head + 1}", "loss_change_when_off":
                          round(float(head_delta[layer, head] / n), 4),
                          "role": roles[layer][head].most_common(1)[0][0],
                          "role_windows": roles[layer][head].most_common(1)[0][1]}
                         for layer in range(m.n_layer) for head in range(m.n_head)),
                        key=lambda h: -h["loss_change_when_off"]),
        "surprise_by_kind": {k: {"mean_loss": round(float(np.mean(v)), 4), "count": len(v)}
                             for k, v in kind_loss.items() if v},
    }
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
