"""Short "how to read this" texts, one per tab, for someone learning how a transformer works.

Kept in one place so that the words can be read and corrected together; each tab shows its own in a
closed accordion (:func:`how_to_read`), out of the way of those who know.
"""

from __future__ import annotations

import gradio as gr

TEXTS = {
    "sample": (
        "The model reads the text so far and gives every token of its vocabulary a probability of coming next. "
        "**Temperature** divides the model's scores before they become probabilities: below 1 the likely tokens "
        "get likelier (0 always takes the most likely one), above 1 the distribution flattens. **Top-k** keeps "
        "only the k most likely tokens, **top-p** the smallest set whose probabilities add up to p. A token is "
        "drawn, appended, and the model reads again. The chart under the text is that distribution for the next "
        "token. The model only sees its context window (the last `block_size` tokens): longer prompts are cut "
        "from the left."),
    "attention": (
        "Each head of each layer decides, for every position (a row: the *query*), how much to take from each "
        "earlier position (a column: the *key*). A row's weights are positive and add up to 1; the grey triangle "
        "is the future, which a causal model may not look at. Bright cells are where a head looks. Heads often "
        "specialise: the previous token, the start of the word, the last newline, an earlier copy of the current "
        "token. The table names what each head mostly does **on this text**, measured from its weights, not "
        "assumed; a head that spreads its attention is not necessarily useless, its job may just not be one of "
        "the patterns tested."),
    "train": (
        "Training shows the model a batch of text windows, measures how surprised it was by each next token (the "
        "loss: cross-entropy, in nats; guessing uniformly among 65 characters would score 4.17), and nudges every "
        "weight to be less surprised next time. The **train** curve is that loss on the batches it learns from; "
        "the **validation** curve is measured on text it never trains on. When the two part ways, the model is "
        "memorising its training text instead of learning the language. The samples show what the current "
        "weights write."),
    "ablations": (
        "An ablation changes one design choice and keeps everything else equal, to see what that choice is worth. "
        "Each arm is trained several times with different random seeds; the spread between seeds is the noise "
        "any difference must beat. A difference counts as real when Welch's t-test over the seeds gives p < 0.05. "
        "Read the budget first: a short run can only show what matters early in training."),
    "models": (
        "A checkpoint is a folder: the weights (`model.safetensors`), the model's shape (`config.json`), the "
        "vocabulary (`tokenizer.json`) and what the training run measured (`metrics.json`). Zip the folder to "
        "upload it; a nanoGPT checkpoint is converted on the way in. Downloads are the same zip, which the "
        "`gptcore` command line reads again."),
}


def how_to_read(tab: str) -> gr.Accordion:
    """A closed accordion holding ``tab``'s explanation."""
    with gr.Accordion("How to read this", open=False) as box:
        gr.Markdown(TEXTS[tab], elem_id=f"explain-{tab}")
    return box
