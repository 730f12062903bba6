"""Parameter counts: the one definition every table, check and log line uses."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn


def count_parameters(model: nn.Module | Iterable[nn.Parameter], trainable_only: bool = False
                     ) -> int:
    """Number of parameter values in a module (or an iterable of parameters); with
    `trainable_only`, those that receive gradients."""
    params = model.parameters() if isinstance(model, nn.Module) else model
    return sum(p.numel() for p in params if p.requires_grad or not trainable_only)
