"""BatchNorm statistics over the held epochs (schedule.hold_epochs): once the cycle has ended
the weights no longer move, so each layer's running statistics become the plain average over
every held batch instead of a momentum average over the last few, and the judged epochs
evaluate one model rather than one whose statistics wander with the last batches drawn."""

from __future__ import annotations

from torch import nn


def settle_batchnorm(model: nn.Module, restart: bool) -> None:
    """Switch `model`'s BatchNorm layers to a cumulative average; `restart` (the first held
    epoch, not a resumed one) starts it afresh from the settled weights."""
    for layer in model.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm) and layer.track_running_stats:
            layer.momentum = None
            if restart:
                layer.reset_running_stats()
