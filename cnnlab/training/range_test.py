"""LR range test (Smith 2017, as fastai's lr_find): train briefly while the learning rate grows
exponentially, watch the smoothed loss, and suggest a peak learning rate three ways:
`minimum` (a tenth of the lr at the lowest loss), `valley` (halfway along the longest stretch
over which the loss keeps falling, after fastai's method of that name) and `steepest` (where
the loss falls fastest per log-lr). Each step is the run's own (`step`: its loss, precision
and gradient scaler), so the test probes the training it picks a rate for.

The model, optimiser and random state are restored afterwards, so a run that starts with a
range test trains exactly as if it had been given the suggested number.
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm  # a widget in Jupyter, text in a terminal

from cnnlab.data import DeviceLoader
from cnnlab.errors import ConfigError
from cnnlab.run_folder.lr_find_result import LRFindResult

SMOOTHING = 0.98  # weight of the running average of the loss
DIVERGED = 4.0  # stop once the smoothed loss exceeds this many times its minimum


def range_test(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DeviceLoader,
    step: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    progress: bool = True,
) -> LRFindResult:
    if not 0 < start < end:
        raise ConfigError(f"lr-find needs 0 < start < end, got start={start} end={end}")
    if steps < 5:
        raise ConfigError("lr-find needs at least 5 steps")
    saved_model = copy.deepcopy(model.state_dict())
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    saved_rng = torch.get_rng_state()
    saved_data = loader.generator.get_state() if loader.generator is not None else None
    growth = (end / start) ** (1 / (steps - 1))
    lrs, losses, average, best = [], [], 0.0, math.inf
    diverged = False
    model.train()
    try:
        batches = _forever(loader)
        for done in tqdm(range(steps), desc="lr-find", disable=not progress, file=sys.stderr):
            lr = start * growth**done
            for group in optimizer.param_groups:  # a group's own scale (BN shifts) holds
                group["lr"] = lr * group.get("lr_scale", 1.0)
            _, loss = step(*next(batches))
            average = SMOOTHING * average + (1 - SMOOTHING) * loss.item()
            smoothed = average / (1 - SMOOTHING ** (done + 1))
            if not math.isfinite(smoothed) or smoothed > DIVERGED * best:
                diverged = True
                break
            best = min(best, smoothed)
            lrs.append(lr)
            losses.append(smoothed)
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        torch.set_rng_state(saved_rng)
        if saved_data is not None:
            loader.generator.set_state(saved_data)
    return LRFindResult(lrs, losses, **_suggestions(lrs, losses), diverged=diverged)


def _forever(loader: DeviceLoader):
    while True:
        yield from loader


def _suggestions(lrs: list[float], losses: list[float]) -> dict[str, float]:
    if len(lrs) < 3:
        raise ConfigError("the loss diverged at once: lower --start")
    # Skip the first tenth: the running average is still settling there.
    skip = max(1, len(lrs) // 10)
    slope = np.gradient(np.array(losses[skip:]), np.log(np.array(lrs[skip:])))
    return {"minimum": lrs[int(np.argmin(losses))] / 10,
            "valley": lrs[skip + _middle_of_longest_descent(losses[skip:])],
            "steepest": lrs[skip + int(np.argmin(slope))]}


def _middle_of_longest_descent(losses: list[float]) -> int:
    """Index halfway between the first and last point of the longest chain of ever lower
    losses (points in between may be skipped: noise does not cut the chain). Of equally long
    chains into a point, the one starting latest wins: the last point before the fall."""
    length = [1] * len(losses)
    first = list(range(len(losses)))
    for i, loss in enumerate(losses):
        for j in range(i):
            if losses[j] > loss and length[j] + 1 >= length[i]:
                length[i], first[i] = length[j] + 1, first[j]
    last = int(np.argmax(length))  # the earliest chain of the greatest length
    return (first[last] + last) // 2
