"""gptcore: a character-level GPT written from scratch in PyTorch, fast on a CPU and ready for a GPU."""

__version__ = "0.2.0"
