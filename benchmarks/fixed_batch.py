"""Training on one fixed in-memory batch: no data work at all, so its rate is the compute
ceiling a data pipeline and loop can approach. Shared by `throughput.py` and `cpu_tunings.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.models import build_model, default_input_shape

BATCH = 128


def train_steps(name: str, *, batch: int = BATCH, channels_last: bool = True,
                compiled: bool = False, sync_every: int = 20, bf16: bool = False,
                model: nn.Module | None = None) -> Callable[[int], float]:
    """A closure that runs `steps` training steps on one fixed batch and returns img/s.
    `model`, if given, replaces the registered model `name` (whose input shape it takes)."""
    torch.manual_seed(0)
    model = build_model(name) if model is None else model
    x = torch.randn(batch, *default_input_shape(name))
    y = torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if compiled else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    model.train()

    def run(steps: int) -> float:
        started = time.perf_counter()
        for step in range(steps):
            with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(forward(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % sync_every == 0:
                loss.item()
        return steps * batch / (time.perf_counter() - started)

    return run
