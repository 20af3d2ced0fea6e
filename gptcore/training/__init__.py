"""Training: the loop (``loop``), one optimisation step (``step``), optimizers (``optimizers``, ``muon``),
the learning-rate schedule (``schedule``), the resumable state (``state``) and the metrics schema."""

from .loop import Trainer, TrainEvent, TrainResult
from .optimizers import OptimizerPair, make_optimizer
from .schedule import learning_rate
from .step import accumulated_step, train_step

__all__ = ["Trainer", "TrainEvent", "TrainResult", "OptimizerPair", "make_optimizer", "learning_rate", "train_step", "accumulated_step"]
