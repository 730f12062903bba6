"""Optimisers and learning-rate schedules from a recipe. Every schedule steps once per batch."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.config import OptimConfig, ScheduleConfig
from cnnlab.errors import ConfigError


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    groups = _param_groups(model, config)
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov, weight_decay=config.weight_decay)
    if config.name == "adam":
        return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def _param_groups(model: nn.Module, config: OptimConfig) -> list[dict]:
    """One group of every trainable parameter; with `bn_bias_lr_scale`, BatchNorm shifts in a
    second group of their own (param_groups[0] keeps the learning rate the logs report)."""
    shifts = [m.bias for m in model.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.bias is not None
              and m.bias.requires_grad] if config.bn_bias_lr_scale != 1.0 else []
    chosen = {id(p) for p in shifts}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in chosen]
    groups = [{"params": rest}]
    if shifts:
        scale = config.bn_bias_lr_scale
        groups.append({"params": shifts, "lr": config.lr * scale,
                       "weight_decay": config.weight_decay / scale, "lr_scale": scale})
    return groups


def build_schedule(
    optimizer: torch.optim.Optimizer, config: ScheduleConfig, steps_per_epoch: int, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler:
    total = steps_per_epoch * epochs
    base_lr = optimizer.param_groups[0]["lr"]
    if config.name == "onecycle":
        if config.hold_epochs >= epochs:
            raise ConfigError(f"schedule.hold_epochs = {config.hold_epochs} leaves no epoch of "
                              f"the {epochs} for the cycle: give it fewer than train.epochs")
        total -= config.hold_epochs * steps_per_epoch
        warmup_end = float(config.pct_start * total) - 1  # where torch's first phase ends
        if warmup_end == 0 or total - 1 - warmup_end == 0:  # an empty phase divides by 0
            raise ConfigError(f"One Cycle needs a few steps in each phase, and this run has "
                              f"{total} ({steps_per_epoch} per epoch x "
                              f"{epochs - config.hold_epochs}): give it more data, epochs or a "
                              "smaller batch, or another schedule.name")
        peak = config.max_lr or base_lr
        return _HeldOneCycle(
            optimizer, max_lr=[peak * group.get("lr_scale", 1.0)
                               for group in optimizer.param_groups],
            total_steps=total, pct_start=config.pct_start, div_factor=config.div_factor,
            final_div_factor=config.final_div_factor, anneal_strategy=config.anneal,
            cycle_momentum=config.cycle_momentum,
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


class _HeldOneCycle(torch.optim.lr_scheduler.OneCycleLR):
    """One Cycle that, past its last step, holds its final rate (and momentum) for the rest of
    the run (schedule.hold_epochs) instead of failing."""

    def step(self, epoch: int | None = None) -> None:
        if self.last_epoch < self.total_steps - 1:
            super().step(epoch)
