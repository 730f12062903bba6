"""Parameter counts: the one definition every table, check and log line uses."""

from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter values in a module; with `trainable_only`, those that receive
    gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
