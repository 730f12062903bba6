"""Train stage: the loop, optimisers and schedules, EMA, checkpoints, the LR range test."""

from cnnlab.training.trainer import Trainer, evaluate

__all__ = ["Trainer", "evaluate"]
