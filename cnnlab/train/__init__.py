"""Train stage: the loop, optimisers and schedules, EMA, checkpoints and run folders."""

from cnnlab.train.trainer import RunResult, evaluate, train

__all__ = ["RunResult", "evaluate", "train"]
