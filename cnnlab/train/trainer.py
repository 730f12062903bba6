"""The training loop: plain PyTorch, seeded, resumable, with the seeds' log format."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cnnlab.config import Recipe
from cnnlab.data import BatchAugment, Dataset, DeviceLoader, load_dataset
from cnnlab.errors import ConfigError, TrainingError
from cnnlab.models import build_model, count_parameters
from cnnlab.train.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_atomic
from cnnlab.train.ema import WeightEMA
from cnnlab.train.optim import build_optimizer, build_schedule
from cnnlab.train.run_folder import RunFolder

BAR_EVERY = 20  # steps between progress-bar updates; each update syncs with the device


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]
    model: nn.Module  # the evaluated model (the EMA copy when EMA is on)

    @property
    def final_accuracy(self) -> float:
        return self.history[-1]["test_acc"]

    @property
    def best_accuracy(self) -> float:
        return max(row["test_acc"] for row in self.history)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA is not available on this machine: use --device cpu")
    return torch.device(name)


def train(
    recipe: Recipe | None = None,
    *,
    resume: str | Path | None = None,
    data_dir: str | Path | None = None,
    out_dir: str | Path = "runs",
    dataset: Dataset | None = None,
    progress: bool = True,
    echo: Callable[[str], None] | None = print,
) -> RunResult:
    """Train `recipe` into a new run folder under `out_dir`, or continue the run at `resume`.

    `dataset` replaces loading from disk (tests pass small tensors); `echo` receives the log
    lines (epoch header, the seeds' "Test set: ..." line), `None` silences them.
    """
    run = RunFolder.existing(resume) if resume else None
    if run is not None:
        recipe = run.recipe()
    if recipe is None:
        raise ConfigError("give a recipe to train, or a run folder to resume")
    cfg = recipe.train
    device = pick_device(cfg.device)
    data = dataset if dataset is not None else load_dataset(recipe.data.dataset, data_dir)
    data = data.limited(recipe.data.train_limit, recipe.data.test_limit)

    torch.manual_seed(cfg.seed)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = build_model(recipe.model.name, **recipe.model.args)
    model = model.to(device, memory_format=memory_format)
    augment = BatchAugment(recipe.augment)
    train_loader = DeviceLoader(
        data.train_images, data.train_labels, recipe.data.batch_size, mean=data.mean,
        std=data.std, device=device, shuffle=True, generator=generator,
        augment=augment if augment.active else None, channels_last=cfg.channels_last,
    )
    test_loader = DeviceLoader(
        data.test_images, data.test_labels, recipe.data.eval_batch_size, mean=data.mean,
        std=data.std, device=device, channels_last=cfg.channels_last,
    )
    optimizer = build_optimizer(model, recipe.optim)
    schedule = build_schedule(optimizer, recipe.schedule, len(train_loader), cfg.epochs)
    ema = WeightEMA(model, cfg.ema_decay) if cfg.ema_decay else None

    history: list[dict[str, Any]] = []
    best_acc = -1.0
    if run is None:
        run = RunFolder.create(out_dir, recipe)
        run.log(f"recipe {recipe.name}: model {recipe.model.name} "
                f"({count_parameters(model):,} parameters) on {device}")
    else:
        state = load_checkpoint(run.last_checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        restore_rng_states(state["rng"], generator)
        history, best_acc = state["history"], state["best_acc"]
        run.write_history(history)  # the checkpoint is the truth if a crash cut the log short
        run.log(f"resumed after epoch {len(history)}")

    say = echo or (lambda line: None)
    evaluated = ema.model if ema is not None else model
    for epoch in range(len(history) + 1, cfg.epochs + 1):
        say(f"Epoch : {epoch}/{cfg.epochs}")
        started = time.perf_counter()
        train_loss, train_acc = _train_epoch(
            model, train_loader, optimizer, schedule, ema, cfg.label_smoothing, epoch, run, progress
        )
        train_seconds = time.perf_counter() - started
        test_loss, correct = evaluate(evaluated, test_loader)
        total = test_loader.num_samples
        row = {
            "epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
            "test_loss": test_loss, "test_acc": 100.0 * correct / total,
            "test_correct": correct, "test_total": total,
            "lr": optimizer.param_groups[0]["lr"], "train_seconds": round(train_seconds, 3),
            "seconds": round(time.perf_counter() - started, 3),
        }
        history.append(row)
        line = (f"Test set: Average loss: {test_loss:.4f}, "
                f"Accuracy: {correct}/{total} ({row['test_acc']:.2f}%)")
        say(line)
        run.log(f"epoch {epoch}: train loss {train_loss:.4f} acc {train_acc:.2f}% | {line} | "
                f"{row['seconds']:.1f}s")
        state = {
            "epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "rng": rng_states(generator),
            "history": history, "best_acc": max(best_acc, row["test_acc"]),
        }
        if ema is not None:
            state["ema"] = ema.state_dict()
        save_atomic(state, run.last_checkpoint)
        if row["test_acc"] > best_acc:
            best_acc = row["test_acc"]
            save_atomic({"epoch": epoch, "model": evaluated.state_dict(), "test_acc": best_acc},
                        run.best_checkpoint)
        run.write_history(history)
    return RunResult(run.path, history, evaluated)


def _train_epoch(model, loader, optimizer, schedule, ema, label_smoothing, epoch, run, progress):
    model.train()
    device = loader.labels.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    bar = tqdm(loader, total=len(loader), disable=not progress, file=sys.stderr,
               dynamic_ncols=True, leave=True)
    for step, (x, y) in enumerate(bar):
        out = model(x)
        loss = F.cross_entropy(out, y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if ema is not None:
            ema.update(model)
        # Accumulate on the device; read back only every BAR_EVERY steps.
        loss_sum += loss.detach() * len(y)
        correct += (out.detach().argmax(1) == y).sum()
        seen += len(y)
        if step % BAR_EVERY == 0 or step == len(loader) - 1:
            value = loss.item()
            _stop_if_diverged(value, epoch, step, run)
            bar.set_description(
                f"loss={value:.4f} batch_id={step} acc={100.0 * correct.item() / seen:.2f} "
                f"lr={optimizer.param_groups[0]['lr']:.4g}", refresh=False
            )
    mean_loss = loss_sum.item() / seen
    _stop_if_diverged(mean_loss, epoch, len(loader) - 1, run)
    return mean_loss, 100.0 * correct.item() / seen


def _stop_if_diverged(value: float, epoch: int, step: int, run: RunFolder) -> None:
    if math.isfinite(value):
        return
    message = (
        f"training diverged: loss is {value} at epoch {epoch}, batch {step}; the last good "
        f"checkpoint is kept in {run.last_checkpoint.parent}. Lower the learning rate and retry"
    )
    run.log(message)
    raise TrainingError(message)


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DeviceLoader) -> tuple[float, int]:
    """Mean cross-entropy and number of correct predictions over the whole loader."""
    model.eval()
    loss_sum = torch.zeros((), device=loader.labels.device)
    correct = torch.zeros((), device=loader.labels.device, dtype=torch.long)
    for x, y in loader:
        out = model(x)
        loss_sum += F.cross_entropy(out, y, reduction="sum")
        correct += (out.argmax(1) == y).sum()
    return loss_sum.item() / loader.num_samples, int(correct.item())
