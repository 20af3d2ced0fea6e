"""Errors the CLI and the app turn into one clear line instead of a traceback."""


class GptcoreError(Exception):
    """Base class for every error that comes from bad input rather than a bug."""


class DataUnavailableError(GptcoreError):
    """The corpus cannot be found locally and cannot be downloaded."""


class UnknownCharactersError(GptcoreError, ValueError):
    """Text contains characters outside the tokenizer's vocabulary."""

    def __init__(self, chars: list[str]):
        self.chars = chars
        shown = ", ".join(repr(c) for c in chars[:20])
        more = f" and {len(chars) - 20} more" if len(chars) > 20 else ""
        super().__init__(f"text contains characters the model does not know: {shown}{more}")


class CheckpointError(GptcoreError):
    """A checkpoint is missing, truncated, tampered with or inconsistent."""


class ConfigError(GptcoreError, ValueError):
    """A configuration value is unknown or out of range."""


class TrainingDivergedError(GptcoreError):
    """A training loss became non-finite; the run stopped and kept its last good checkpoint.

    ``result`` is the run's TrainResult (the kept weights evaluated on the whole validation split), or
    None when no checkpoint had been saved yet."""

    def __init__(self, message: str, result=None):
        super().__init__(message)
        self.result = result
