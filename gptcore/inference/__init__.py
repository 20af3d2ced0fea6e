"""Inference: sampling with a key-value cache (``sampling``) and the n-gram draft that speeds it up
(``draft``)."""
