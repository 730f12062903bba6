"""Optimisers and learning-rate schedules from a recipe. Every schedule steps once per batch."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.config import OptimConfig, ScheduleConfig
from cnnlab.errors import ConfigError


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.name == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    if config.name == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def build_schedule(
    optimizer: torch.optim.Optimizer, config: ScheduleConfig, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    total = steps_per_epoch * epochs
    base_lr = optimizer.param_groups[0]["lr"]
    if config.name == "onecycle":
        warmup_end = float(config.pct_start * total) - 1  # where torch's first phase ends
        if warmup_end == 0 or total - 1 - warmup_end == 0:  # an empty phase divides by 0
            raise ConfigError(f"One Cycle needs a few steps in each phase, and this run has "
                              f"{total} ({steps_per_epoch} per epoch x {epochs}): give it more "
                              "data, epochs or a smaller batch, or another schedule.name")
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.max_lr or base_lr, total_steps=total,
            pct_start=config.pct_start, div_factor=config.div_factor,
            final_div_factor=config.final_div_factor,
        )
    if config.name == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=config.step_epochs * steps_per_epoch, gamma=config.gamma
        )
    if config.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total,
                                                          eta_min=config.min_lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def lr_curve(config: ScheduleConfig, optim: OptimConfig, steps_per_epoch: int, epochs: int
             ) -> list[float]:
    """The learning rate at every step of a run, replayed on a dummy parameter (for plots)."""
    optimizer = build_optimizer(nn.Linear(1, 1, bias=False), optim)
    schedule = build_schedule(optimizer, config, steps_per_epoch, epochs)
    lrs = []
    for _ in range(steps_per_epoch * epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # keeps torch from warning that the schedule stepped first
        schedule.step()
    return lrs
