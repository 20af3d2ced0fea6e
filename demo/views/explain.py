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
    "inside": (
        "Type a text and press **Look inside**: the views below run the model on it. A GPT turns each token into "
        "a vector (its *embedding*, plus its position), passes the vectors through the layers, each adding what "
        "its attention heads and its MLP computed to this *residual stream*, and finally turns the last vector at "
        "every position into a probability for each possible next token."),
    "predictions": (
        "At every position the model predicts the next token. Each token is coloured by how surprised the model "
        "was to see it: its loss, −log p, in nats (1 nat: the model gave it about 37%; 3 nats: about 5%). "
        "The mean of these is the loss the training curves show. Click any token to see the distribution the "
        "model predicted **after** it, with the token that really came next in green. Surprise is usually "
        "high at the start of words and names, low inside common words."),
    "lens": (
        "The *logit lens* asks what the model would predict if it stopped early: the residual stream after the "
        "embeddings, and after each layer, is put through the final norm and the output head as if it were the "
        "last layer. Each cell is that stage's most likely next token, shaded by its probability (hover or tap for "
        "the top 3); underlined cells are right. The first row can only use the current token (a bigram "
        "guess); watch later layers bring in the context. Early rows are rough: the layers were not trained to "
        "be read this way."),
    "embeddings": (
        "The embedding table gives every token a vector of `n_embd` numbers. The map shows those vectors "
        "squeezed onto the two directions along which they differ most (principal component analysis): tokens "
        "the model treats alike end up close, for example vowels together, or capitals apart from lower case. "
        "Two directions hold only part of the picture (the axes say how much). The second picture shows how "
        "the model knows where a token is: learned position vectors (their similarity to each other) or "
        "rotary angles."),
    "heads_off": (
        "Switch heads off to see what they are for: a head that is off adds nothing to the residual stream. "
        "The loss on the text, and each token's change (red: worse, blue: better), say what the model loses. "
        "The table switches off one head at a time, most harmful first. A head whose loss barely changes may "
        "be redundant on this text, or its job may be done by another head too."),
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
