"""Experiments built on the library: ablation studies (``ablate``, ``ablation_results``) and the speed
benchmark (``bench``)."""
