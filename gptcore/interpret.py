"""Looking inside a trained GPT: the prediction at every position, how surprised the model is by each
token, what each layer would predict (the logit lens), the model with some heads switched off, each head's
role, and two models compared token by token.

Everything runs the model's own forward pass (``GPT.forward``), so what is shown is what the model does;
nothing here trains or changes weights. Results are on the CPU, as float32.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F

from .head_roles import HeadRole, describe_heads
from .models import GPT
from .models.attention import rope_frequencies


def _ids(model: GPT, ids: list[int] | torch.Tensor) -> torch.Tensor:
    idx = torch.as_tensor(ids, dtype=torch.long).reshape(1, -1)
    if idx.size(1) < 1:
        raise ValueError("give at least one token")
    model.check_length(idx.size(1))
    return idx.to(next(model.parameters()).device)


@torch.no_grad()
def read_text(model: GPT, ids: list[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass over a text: ((T, vocab) probabilities of the token after each position, at
    temperature 1; (T - 1,) the loss of each token given the ones before it, in nats, -log p(token i |
    tokens < i) for i = 1 .. T-1, whose mean is the text's loss)."""
    model.eval()
    idx = _ids(model, ids)
    logits, _ = model(idx)
    log_probs = logits[0].float().log_softmax(-1)
    loss = -log_probs[:-1].gather(1, idx[0, 1:, None]).squeeze(1)
    return log_probs.exp().cpu(), loss.cpu()


def surprise(model: GPT, ids: list[int] | torch.Tensor) -> torch.Tensor:
    """(T - 1,) the loss of each token given the ones before it, in nats (see :func:`read_text`)."""
    return read_text(model, ids)[1]


@torch.no_grad()
def logit_lens(model: GPT, ids: list[int] | torch.Tensor) -> torch.Tensor:
    """(n_layer + 1, T, vocab) probabilities of the next token read from the residual stream after the
    embeddings (row 0) and after each block, each put through the final norm and the output head, as if
    the model ended there. The last row is the model's own prediction."""
    model.eval()
    residuals: list[torch.Tensor] = []
    model(_ids(model, ids), residuals=residuals)
    stacked = torch.cat(residuals)  # (n_layer + 1, T, C)
    return model.lm_head(model.ln_f(stacked)).float().softmax(-1).cpu()


@contextlib.contextmanager
def heads_off(model: GPT, heads: set[tuple[int, int]] | list[tuple[int, int]]) -> Iterator[GPT]:
    """The model with the given (layer, head) pairs (0-based) switched off: their outputs are zeroed
    before the heads are mixed. Everything is restored on exit, also after an error."""
    cfg = model.config
    masks: dict[int, torch.Tensor] = {}
    for layer, head in heads:
        if not (0 <= layer < cfg.n_layer and 0 <= head < cfg.n_head):
            raise ValueError(f"no head {head + 1} in layer {layer + 1}: the model has {cfg.n_layer} layers of "
                             f"{cfg.n_head} heads")
        mask = masks.setdefault(layer, torch.ones(cfg.n_head, device=next(model.parameters()).device))
        mask[head] = 0.0
    with _head_masks(model, masks):
        yield model


@contextlib.contextmanager
def _head_masks(model: GPT, masks: dict[int, torch.Tensor]) -> Iterator[None]:
    """``masks[layer]`` as that layer's head mask while the block runs; every layer's own mask back after."""
    before = [block.attn.head_mask for block in model.blocks]
    try:
        for layer, mask in masks.items():
            model.blocks[layer].attn.head_mask = mask
        yield
    finally:
        for block, mask in zip(model.blocks, before):
            block.attn.head_mask = mask


@torch.no_grad()
def each_head_off(model: GPT, ids: list[int] | torch.Tensor) -> tuple[float, torch.Tensor]:
    """(the text's loss with every head on, (n_layer, n_head) its loss with each head switched off alone).

    One batched forward pass: row r of the batch is the text with head r (layer-major) off, through a
    per-row head mask in every layer."""
    cfg = model.config
    idx = _ids(model, ids)
    if idx.size(1) < 2:
        raise ValueError("give at least two tokens: the loss is measured on the tokens after the first")
    baseline = float(read_text(model, idx[0])[1].mean())
    n = cfg.n_layer * cfg.n_head
    device = idx.device
    masks = torch.ones(cfg.n_layer, n, cfg.n_head, device=device)
    rows = torch.arange(n, device=device)
    masks[rows // cfg.n_head, rows, rows % cfg.n_head] = 0.0
    with _head_masks(model, dict(enumerate(masks))):
        logits, _ = model(idx.expand(n, -1))
    targets = idx[0, 1:].expand(n, -1)
    loss = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets, reduction="none").mean(1)
    return baseline, loss.view(cfg.n_layer, cfg.n_head).cpu()


@torch.no_grad()
def embedding_pca(model: GPT) -> tuple[torch.Tensor, torch.Tensor]:
    """The token embedding table projected on its first two principal directions: ((vocab, 2) coordinates,
    (2,) share of the table's variance each direction explains). Tokens the model treats alike land close.
    Each axis is signed so that its largest coordinate is positive, so the map does not flip between calls."""
    table = model.tok_emb.weight.float().cpu()
    centred = table - table.mean(0)
    _, singular, directions = torch.linalg.svd(centred, full_matrices=False)
    coords = centred @ directions[:2].T
    flip = coords.gather(0, coords.abs().argmax(0, keepdim=True)).sign()
    variance = singular.square()
    return coords * flip, (variance / variance.sum())[:2]


@torch.no_grad()
def position_similarity(model: GPT) -> torch.Tensor | None:
    """(block_size, block_size) cosine similarity between the learned position embeddings, or None for a
    model without them (rotary or no positions): nearby positions that look alike show as a bright band."""
    if model.pos_emb is None:
        return None
    table = F.normalize(model.pos_emb.weight.float().cpu(), dim=-1)
    return table @ table.T


def rope_wavelengths(model: GPT) -> torch.Tensor | None:
    """(head_dim // 2,) how many positions each rotary pair takes to turn once (2π / its frequency), or None
    without rotary positions. Short wavelengths tell neighbours apart; long ones measure far distances."""
    cfg = model.config
    if cfg.pos_emb != "rope":
        return None
    return 2 * torch.pi / rope_frequencies(cfg.n_embd // cfg.n_head, cfg.rope_base)


@torch.no_grad()
def compare_surprise(first: GPT, second: GPT, ids: list[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """((T - 1,), (T - 1,)) each token's loss under each of two models that read the same tokens, in nats:
    where the second is better (lower) or worse, token by token. The text must fit both contexts."""
    if first.config.vocab_size != second.config.vocab_size:
        raise ValueError(f"the two models have different vocabularies ({first.config.vocab_size} and "
                         f"{second.config.vocab_size} tokens): compare models that share a tokenizer")
    return surprise(first, ids), surprise(second, ids)


@torch.no_grad()
def head_roles(model: GPT, ids: list[int] | torch.Tensor, pieces: list[str]) -> list[list[HeadRole]]:
    """Each head's role ([layer][head], :mod:`gptcore.head_roles`) on a text of tokens ``ids`` whose text
    pieces are ``pieces``."""
    model.eval()
    maps = model.attention_maps(_ids(model, ids))
    return describe_heads([m[0].float().cpu().numpy() for m in maps], pieces)
