"""gptcore: a character-level GPT written from scratch in PyTorch, fast on a CPU."""

__version__ = "0.1.0"
