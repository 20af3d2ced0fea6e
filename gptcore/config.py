"""Configuration dataclasses for models and training, validated, and overridden with typed values.

Settings change as typed values (``RunConfig.with_overrides({"n_layer": 6})``); only the command line
turns ``key=value`` strings into such values (``parse_assignments``), by each field's declared type.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

from .bounded import short_repr
from .errors import ConfigError


DEVICE_KINDS = ("auto", "cpu", "cuda", "mps")


def device_kind(setting: str) -> str:
    """The kind of a device setting ("cuda:1" is "cuda"), or a ConfigError naming the settings there are."""
    kind = str(setting).strip().lower().split(":")[0]
    if kind not in DEVICE_KINDS:
        raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or mps; got {setting!r}")
    return kind


@dataclass
class ModelConfig:
    """Architecture. The switches (norm, residual, pos_emb) exist for the ablation studies."""

    arch: str = "gpt"  # "gpt" or "bigram"
    vocab_size: int = 65
    block_size: int = 128
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 256
    dropout: float = 0.2
    norm: str = "pre"  # "pre" or "post" LayerNorm placement
    residual: bool = True
    pos_emb: str = "learned"  # "learned" (a table of absolute positions), "rope" (rotary) or "none"
    rope_base: float = 10000.0  # with rope: the wavelengths of the rotations grow geometrically up to this
    # "fused" (scaled_dot_product_attention), "explicit" (matmul, mask, softmax, matmul), "tiled"
    # (FlashAttention's algorithm in PyTorch: memory linear in the context, slow), or "auto":
    # explicit for training on a CPU (its bfloat16 training step is faster there), fused everywhere else
    attention: str = "auto"
    qk_norm: bool = False  # RMS-normalise queries and keys per head before their dot product
    bias: bool = True  # biases in the linear layers and LayerNorms (nanoGPT's Shakespeare recipe has none)
    tie_embeddings: bool = False  # the LM head reuses the token embedding matrix (GPT-2, nanoGPT)
    # keep only each block's input during the forward pass and recompute the block in the backward pass:
    # less memory for activations, about one more forward pass of time
    grad_checkpoint: bool = False

    def validate(self) -> "ModelConfig":
        _check_types(self)
        _choice("arch", self.arch, ("gpt", "bigram"))
        _choice("norm", self.norm, ("pre", "post"))
        _choice("pos_emb", self.pos_emb, ("learned", "rope", "none"))
        _choice("attention", self.attention, ("auto", "fused", "explicit", "tiled"))
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            _count(name, getattr(self, name))
        if self.n_embd % self.n_head:
            raise ConfigError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.pos_emb == "rope" and (self.n_embd // self.n_head) % 2:
            raise ConfigError(f"rope rotates pairs of numbers: the head size n_embd / n_head "
                              f"({self.n_embd // self.n_head}) must be even")
        if self.rope_base <= 1:
            raise ConfigError(f"rope_base must be greater than 1, got {self.rope_base}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        return self


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping. ``time_budget`` (seconds) stops a run early and paces its schedule."""

    batch_size: int = 32  # sequences per micro-batch: a step sees batch_size x grad_accum x processes of them
    grad_accum: int = 1  # micro-batches whose gradients are summed into one step (keep the global batch with fewer processes)
    max_iters: int = 5000
    time_budget: float | None = None
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # final learning rate as a fraction of lr
    warmup_iters: int = 100
    schedule: str = "cosine"  # "cosine" or "linear" (constant, then a linear warm-down)
    warmdown_frac: float = 0.3  # share of the run spent in the linear warm-down
    weight_decay: float = 0.1
    optimizer: str = "adamw"  # "adamw", or "muon" (Muon for the blocks' weight matrices, AdamW for the rest)
    muon_lr: float = 0.02
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    dtype: str = "bfloat16"  # autocast dtype for training: "float32" or "bfloat16"
    eval_interval: int = 250
    eval_windows: int | None = 200  # validation windows per periodic estimate; None = whole split
    sample_interval: int = 500  # emit a text sample every N steps (0 = never)
    sample_chars: int = 200
    # record what the model does on a probe text every N steps, for the replay (gptcore.snapshots; 0 = never)
    snapshot_interval: int = 0
    seed: int = 1337
    threads: int | None = None  # torch intra-op threads; None = leave torch's default
    save_dtype: str = "float32"  # dtype of stored weights; "float16" halves the file (Spaces cap files at 10 MB)
    device: str = "auto"  # "auto" (CUDA, then Apple MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps"
    compile: bool = False  # torch.compile the training step's model (pays on a GPU for long runs)
    # "char" (one id per distinct character of the corpus) or "bpe" (byte-level BPE trained on the training split)
    tokenizer: str = "char"
    bpe_vocab_size: int = 1024  # with tokenizer=bpe: 256 byte ids plus the merges learned
    # the final validation loss covers the whole validation split; a number here limits it to the split's
    # first N tokens (for prepared corpora of gigabytes), and metrics.json says how many were evaluated
    final_eval_tokens: int | None = None

    def validate(self) -> "TrainConfig":
        _check_types(self)
        _choice("schedule", self.schedule, ("cosine", "linear"))
        _choice("dtype", self.dtype, ("float32", "bfloat16"))
        _choice("optimizer", self.optimizer, ("adamw", "muon"))
        _choice("save_dtype", self.save_dtype, ("float32", "float16"))
        _choice("tokenizer", self.tokenizer, ("char", "bpe"))
        if self.bpe_vocab_size < 256:
            raise ConfigError(f"bpe_vocab_size must be at least 256 (one id per byte), got {self.bpe_vocab_size}")
        device_kind(self.device)
        for name in ("batch_size", "grad_accum", "max_iters", "bpe_vocab_size", "eval_interval", "sample_chars"):
            _count(name, getattr(self, name), low=0 if name == "sample_chars" else 1)
        for name in ("eval_windows", "final_eval_tokens", "threads", "warmup_iters", "sample_interval",
                     "snapshot_interval"):
            if getattr(self, name) is not None:
                _count(name, getattr(self, name), low=-MAX_COUNT)  # their own lower bounds are checked below
        if self.time_budget is not None and self.time_budget <= 0:
            raise ConfigError(f"time_budget must be positive, got {self.time_budget}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("lr must be positive and min_lr_ratio in [0, 1]")
        if self.eval_interval < 1:
            raise ConfigError("eval_interval must be at least 1")
        if self.eval_windows is not None and self.eval_windows < 1:
            raise ConfigError("eval_windows must be at least 1 (or None for the whole split)")
        if self.final_eval_tokens is not None and self.final_eval_tokens < 2:
            raise ConfigError(f"final_eval_tokens must be at least 2 (or None for the whole split), got "
                              f"{self.final_eval_tokens}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be at least 1 (or None for torch's default), got {self.threads}")
        for name in ("warmup_iters", "sample_interval", "snapshot_interval", "sample_chars", "weight_decay",
                     "grad_clip", "muon_lr"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.muon_lr <= 0 or not 0 <= self.warmdown_frac <= 1 or not 0 <= self.beta1 < 1 or not 0 <= self.beta2 < 1:
            raise ConfigError("muon_lr must be positive, warmdown_frac in [0, 1], and beta1 and beta2 in [0, 1)")
        return self


@dataclass
class RunConfig:
    """A model and its training recipe: what a preset names."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {"model": dataclasses.asdict(self.model), "train": dataclasses.asdict(self.train)}

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        if not isinstance(data, dict) or not isinstance(data.get("model"), dict) or not isinstance(data.get("train"), dict):
            raise ConfigError("a run config is an object with a 'model' and a 'train' object")
        return cls(model=config_from_dict(ModelConfig, data["model"]), train=config_from_dict(TrainConfig, data["train"]))

    def copy(self) -> "RunConfig":
        return RunConfig(dataclasses.replace(self.model), dataclasses.replace(self.train))

    def with_overrides(self, values: Mapping[str, Any]) -> "RunConfig":
        """A validated copy with fields of the model or the train config set to typed values."""
        model, train = {}, {}
        for key, value in values.items():
            owner = _owner(key)
            (model if owner is ModelConfig else train)[key] = check_value(owner, key, value)
        return RunConfig(dataclasses.replace(self.model, **model).validate(),
                         dataclasses.replace(self.train, **train).validate())


def setting_names() -> list[str]:
    """Every field a run config override may name."""
    return sorted(_field_types(ModelConfig) | _field_types(TrainConfig))


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """``key=value`` strings from the command line as typed values, by each field's declared type."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key] = _parse_value(key, raw.strip(), _field_types(_owner(key))[key])
    return out


def is_int(value) -> bool:
    """An int that is not a bool (JSON and Python both let True pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def config_from_dict(cls, data: dict):
    """Build a config dataclass from a dict, ignoring keys it does not know (older or newer files) and
    checking the type of every value it takes."""
    names = _field_types(cls)
    return cls(**{k: check_value(cls, k, v) for k, v in data.items() if k in names})


def check_value(cls, key: str, value: Any) -> Any:
    """``value`` if it has the declared type of field ``key`` of ``cls`` (an int is taken for a float, and
    made one); a ConfigError naming the setting otherwise. Floats must be finite."""
    base, optional = _base_type(_field_types(cls)[key])
    if value is None and optional:
        return None
    if base is bool and isinstance(value, bool):
        return value
    if base is int and is_int(value):
        return value
    if base is float and (is_int(value) or isinstance(value, float)):
        return _finite(key, value)
    if base is str and isinstance(value, str):
        return value
    name = getattr(base, "__name__", str(base)) + (" or None" if optional else "")
    raise ConfigError(f"setting {key} expects {name}, got {short_repr(value)}")


def _check_types(config) -> None:
    """Every field of a config dataclass has its declared type, and every float is finite."""
    for name in _field_types(type(config)):
        check_value(type(config), name, getattr(config, name))


def _owner(key: str) -> type:
    """The config class (model or train) that has a field named ``key``."""
    for cls in (ModelConfig, TrainConfig):
        if key in _field_types(cls):
            return cls
    raise ConfigError(f"unknown setting {short_repr(key)}; known settings: {', '.join(setting_names())}")


def _base_type(kind) -> tuple[Any, bool]:
    """(the type, whether None is allowed) of a field annotation such as ``int | None``."""
    args = typing.get_args(kind)
    return (next((a for a in args if a is not type(None)), kind) if args else kind), type(None) in args


@functools.lru_cache(maxsize=None)
def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_value(key: str, raw: str, kind) -> Any:
    base, optional = _base_type(kind)
    if optional and raw.lower() in ("none", "null", ""):
        return None
    try:
        if base is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if base is int:
            return int(raw)
        if base is float:
            return _finite(key, float(raw))
    except ConfigError:
        raise
    except ValueError:
        name = getattr(base, "__name__", str(base))
        raise ConfigError(f"setting {key} expects {name}, got {short_repr(raw)}") from None
    return raw


def _finite(key: str, value) -> float:
    try:
        value = float(value)
    except OverflowError:
        raise ConfigError(f"setting {key} is too large for a float") from None
    if not math.isfinite(value):
        raise ConfigError(f"setting {key} must be a finite number, got {value!r}")
    return value


MAX_COUNT = 2**31 - 1  # no size or count of a config is larger; beyond it torch's int64 arithmetic could overflow


def _count(name: str, value: int, low: int = 1) -> None:
    """A size or count within [low, MAX_COUNT]: checked before any estimate multiplies it."""
    if not low <= value <= MAX_COUNT:
        shown = f"{value:,}" if value.bit_length() < 200 else f"a number of {value.bit_length():,} bits"
        raise ConfigError(f"{name} must be from {low} to {MAX_COUNT:,}, got {shown}")


def _choice(name: str, value, options: tuple) -> None:
    if value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, options))}; got {short_repr(value)}")
