"""Lookahead: every few steps the weights are pulled towards a slow moving average of
themselves and training continues from there (airbench94's "EMA"; Zhang et al. 2019). Unlike
an EMA that is only evaluated, the average here steers the run: the fast weights explore, the
slow ones keep what lasts. The pull grows with the run's progress (cubed), so early steps move
freely and the last ones settle on the average."""

from __future__ import annotations

import torch
from torch import nn


class Lookahead:
    def __init__(self, model: nn.Module, decay: float, every: int, total_steps: int):
        self.decay, self.every, self.total = decay, every, total_steps
        self.average = {name: value.detach().clone() for name, value in _floats(model)}

    def step(self, model: nn.Module, step: int) -> None:
        """After optimiser step `step` (counted over the whole run, from 1)."""
        if step % self.every == 0:
            self._pull(model, self.decay ** self.every * (step / self.total) ** 3)
        if step == self.total:  # the run ends on the average itself
            self._pull(model, 1.0)

    @torch.no_grad()
    def _pull(self, model: nn.Module, keep: float) -> None:
        """average <- keep x average + (1 - keep) x weights; then weights <- average."""
        for name, value in _floats(model):
            average = self.average[name]
            average.lerp_(value, 1.0 - keep)
            value.copy_(average)

    def state_dict(self) -> dict:
        return {"average": self.average}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state["average"].items():
            self.average[name].copy_(value)


def _floats(model: nn.Module):
    """Parameters and float buffers (BatchNorm statistics follow the weights they belong to)."""
    return [(name, value) for name, value in model.state_dict(keep_vars=True).items()
            if value.dtype.is_floating_point]
