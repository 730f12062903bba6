"""The training loop: plain PyTorch, seeded, resumable, with the seeds' log format. What a run
does around it (inspect, range test, run folder, report) is `cnnlab.pipeline`'s train and resume."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm  # a widget in Jupyter, text in a terminal

from cnnlab.config import Recipe, TTAMode
from cnnlab.data import Dataset, DeviceLoader
from cnnlab.data.loader import normaliser
from cnnlab.data.recipe_loaders import plain_train_loader, test_loader, train_loader
from cnnlab.errors import DivergedError
from cnnlab.run_folder.checkpoint import restore_rng_states, rng_states
from cnnlab.run_folder.history import best_row, epoch_log_line, test_line
from cnnlab.training import qat
from cnnlab.training.device import describe_device, training_device
from cnnlab.training.ema import WeightEMA
from cnnlab.training.held_statistics import settle_batchnorm
from cnnlab.training.lookahead import Lookahead
from cnnlab.training.optim import build_optimizer, build_schedule
from cnnlab.training.precision import autocast_dtype, gradient_scaler, precision_name
from cnnlab.training.tta import tta_logits

if TYPE_CHECKING:  # the run folder reads checkpoints: import it only for the types
    from cnnlab.run_folder import RunFolder

INIT_SAMPLE = 5000  # training images a model's `init_from_data` sees
BAR_EVERY = 20  # steps between progress-bar updates; each update syncs with the device
BAR_SECONDS = 1.0  # ... and no longer apart than this: against a slow step a sync costs nothing
# Inside an epoch longer than this, the training state is saved this often (partial.pt): a
# crash loses two minutes at most, not a CPU epoch of a quarter of an hour. Even cifar-s10's
# state saves in a fraction of a second (docs/benchmarks/partial-checkpoints.md).
PARTIAL_EVERY_SECONDS = 120.0
Echo = Callable[[str], None]
EpochCallback = Callable[[dict[str, Any], "Trainer"], None]  # (the epoch's row, the trainer)


class Trainer:
    """Everything a run holds in memory: model, loaders, optimiser, schedule, EMA, history."""

    def __init__(self, recipe: Recipe, data: Dataset, model: nn.Module):
        cfg = self.cfg = recipe.train
        self.device = training_device(cfg.device)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=layout)
        init_from_data = getattr(self.model, "init_from_data", None)
        if callable(init_from_data):  # data-dependent init (patch whitening); before the EMA copy
            scale, shift = normaliser(data.mean, data.std, self.device)
            sample = data.train_images[:INIT_SAMPLE].to(self.device).float()
            init_from_data(torch.addcmul(shift, sample, scale))
        self.train_loader = train_loader(recipe, data, self.device, self.generator)
        # The last augment.off_last_epochs epochs see the images as the test split shows them.
        self.first_plain_epoch = cfg.epochs - recipe.augment.off_last_epochs + 1
        self.first_held_epoch = cfg.epochs - recipe.schedule.hold_epochs + 1
        self.plain_loader = (plain_train_loader(self.train_loader, recipe, data, self.device,
                                                self.generator)
                             if recipe.augment.off_last_epochs else None)
        self.test_loader = test_loader(recipe, data, self.device)
        self.val_loader = None
        if data.val_images is not None:
            self.val_loader = DeviceLoader(
                data.val_images, data.val_labels, recipe.data.eval_batch_size, mean=data.mean,
                std=data.std, device=self.device, channels_last=cfg.channels_last)
        # Autocast where the device has the units for it, or where asked; fp32 master weights
        # either way.
        self.amp_dtype = autocast_dtype(cfg.amp, self.device)
        self.scaler = gradient_scaler(self.amp_dtype, self.device)
        # Recorded in every epoch's row: a run resumed elsewhere says where each epoch ran.
        # (torch.__version__ is a str subclass that weights-only checkpoint loads refuse.)
        self.trained_on = {"device": describe_device(self.device),
                           "precision": precision_name(self.amp_dtype),
                           "torch": str(torch.__version__)}
        # The compiled module shares parameters with self.model, whose state_dict stays clean.
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.optimizer = build_optimizer(self.model, recipe.optim)
        self.schedule = build_schedule(
            self.optimizer, recipe.schedule, len(self.train_loader), cfg.epochs
        )
        self.lookahead = (Lookahead(self.model, cfg.lookahead_decay, cfg.lookahead_every,
                                    len(self.train_loader) * cfg.epochs)
                          if cfg.lookahead_every else None)
        self.ema = WeightEMA(self.model, cfg.ema_decay) if cfg.ema_decay else None
        self.evaluated = self.ema.model if self.ema is not None else self.model
        self.first_int8_epoch = (cfg.epochs - cfg.qat_epochs + 1 if cfg.qat_epochs
                                 else cfg.epochs + 1)  # quantization-aware from here on
        self.history: list[dict[str, Any]] = []
        self.partway: dict[str, Any] | None = None  # where a partial checkpoint left an epoch

    def state(self) -> dict[str, Any]:
        state = {
            "epoch": len(self.history), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
            "rng": rng_states(self.generator), "history": self.history,
            "scaler": self.scaler.state_dict(),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.lookahead is not None:
            state["lookahead"] = self.lookahead.state_dict()
        if qat.is_enabled(self.model):
            state["int8_ranges"] = qat.ranges(self.model)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.lookahead is not None:
            self.lookahead.load_state_dict(state["lookahead"])
        if state.get("int8_ranges") is not None:  # stopped inside the quantization-aware epochs
            saved = state["int8_ranges"]
            if not isinstance(saved, list) or not all(
                    r is None or isinstance(r, torch.Tensor) and r.shape == (2,) for r in saved):
                raise ValueError("its int8 ranges are not pairs of numbers")
            self._simulate_int8()
            qat.set_ranges(self.model, saved)
        restore_rng_states(state["rng"], self.generator)
        self.history = list(state["history"])
        self.train_loader.epoch = len(self.history)  # alternating flips continue in phase
        self.partway = state.get("partway")  # a partial checkpoint: the epoch goes on from there
        if self.partway is not None:
            order, loader = self.partway["order"], self.train_loader
            if not isinstance(loader, DeviceLoader):
                raise ValueError("it stops inside an epoch, which only the fast augmentation "
                                 "engine can resume")
            if not 0 < self.partway["step"] < len(loader):
                raise ValueError(f"it stops at batch {self.partway['step']}, where an epoch "
                                 f"has {len(loader)}")
            if order is not None and tuple(order.shape) != (loader.num_samples,):
                raise ValueError(f"its epoch's order is not one of {loader.num_samples} images")

    def fit(self, folder: RunFolder, progress: bool, echo: Echo,
            callbacks: tuple[EpochCallback, ...] = ()) -> None:
        """Train the remaining epochs; after each, log it, checkpoint it, write the history,
        then call each `callback(row, trainer)` (an exception there stops the run, with the
        epoch saved)."""
        epochs = self.cfg.epochs
        for epoch in range(len(self.history) + 1, epochs + 1):
            echo(f"Epoch : {epoch}/{epochs}")
            started = time.perf_counter() - self.partway_seconds()
            train_loss, train_acc = self.train_epoch(epoch, folder, progress)
            train_seconds = time.perf_counter() - started
            row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                   **self.validate(), **self.test(), "lr": self.optimizer.param_groups[0]["lr"],
                   "steps": len(self.train_loader), "train_seconds": round(train_seconds, 3),
                   "seconds": round(time.perf_counter() - started, 3), **self.trained_on}
            best_before = best_row(self.history)["test_acc"] if self.history else -1.0
            self.history.append(row)
            echo(test_line(row))
            # Checkpoints, then history, then the log line: a crash between them leaves the
            # log behind, never ahead (a resumed epoch is not logged twice); a stale best.pt
            # is repaired on resume (Checkpoints.repair_best).
            folder.checkpoints.save_epoch(self.state(), row["test_acc"],
                                       row["test_acc"] > best_before, self.evaluated)
            folder.write_history(self.history)
            folder.log(epoch_log_line(row, self.cfg.tta))
            for callback in callbacks:
                callback(row, self)

    def _simulate_int8(self) -> None:
        qat.enable(self.model)
        qat.enable(self.evaluated)  # the EMA copy, evaluated with the training model's ranges

    def partway_seconds(self) -> float:
        """The training seconds a partial checkpoint holds of the epoch it resumes."""
        return float(self.partway["seconds"]) if self.partway is not None else 0.0

    def validate(self) -> dict[str, Any]:
        """Loss and accuracy on the validation split, if the data has one (plain, no TTA)."""
        if self.val_loader is None:
            return {}
        scores = evaluate(self.evaluated, self.val_loader)
        return {"val_loss": scores.loss,
                "val_acc": 100.0 * scores.correct / self.val_loader.num_samples}

    def test(self) -> dict[str, Any]:
        """Test loss and accuracy of the evaluated model (with the recipe's test-time
        augmentation); with TTA on, the accuracy without it too, so its gain is never hidden.
        In fp32 whatever the training precision: the figure is the shipped model's."""
        scores = evaluate(self.evaluated, self.test_loader, tta=self.cfg.tta)
        total = self.test_loader.num_samples
        row = {"test_loss": scores.loss, "test_acc": 100.0 * scores.correct / total,
               "test_correct": scores.correct, "test_total": total}
        if self.cfg.tta != "none":
            row["test_acc_no_tta"] = 100.0 * scores.correct_without_tta / total
        return row

    def step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step on a batch, as the run trains: its precision, its loss, its
        gradient scaler. Returns the logits and the loss, detached. The LR range test steps
        through this too, so it tests the training the run will do."""
        with torch.autocast(self.device.type, self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            out = self.forward(x)
            loss = F.cross_entropy(out, y, label_smoothing=self.cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)  # skips the step if fp16 gradients overflowed
        self.scaler.update()
        return out.detach(), loss.detach()

    def train_epoch(self, epoch: int, folder: RunFolder | None, progress: bool
                    ) -> tuple[float, float]:
        """One pass over the training set; returns mean loss and accuracy (percent). `folder`
        (if any) gets a line in its log when the loss diverges."""
        model, optimizer, loader = self.model, self.optimizer, self.train_loader
        if self.plain_loader is not None and epoch >= self.first_plain_epoch:
            loader = self.plain_loader
        model.train()
        if epoch >= self.first_int8_epoch and not qat.is_enabled(model):
            self._simulate_int8()
        if epoch >= self.first_held_epoch:
            settle_batchnorm(model, restart=epoch == self.first_held_epoch
                             and self.partway is None)
        for layer in model.modules():  # a layer that trains differently by epoch says so
            on_epoch_start = getattr(layer, "on_epoch_start", None)
            if callable(on_epoch_start):
                on_epoch_start(epoch, self.cfg)
        done_before = (epoch - 1) * len(loader)  # optimiser steps of the epochs before
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen, first, order = 0, 0, None
        began = time.perf_counter() - self.partway_seconds()
        # Only the fast loader can start a pass partway through: the albumentations engine's
        # worker processes cannot be put back where they were.
        resumable = isinstance(loader, DeviceLoader)
        if self.partway is not None:  # resumed from a partial checkpoint of this epoch
            first, order, seen = (self.partway[k] for k in ("step", "order", "seen"))
            loss_sum += self.partway["loss_sum"].to(self.device)
            correct += self.partway["correct"].to(self.device)
            order = order.to(self.device) if order is not None else None
            self.partway = None
        elif resumable:
            order = loader.new_order()
        partial = folder is not None and resumable
        batches = loader.batches(order, first) if resumable else loader
        shown_at = saved_at = time.perf_counter()
        bar = tqdm(batches, total=len(loader), initial=first, disable=not progress,
                   file=sys.stderr, dynamic_ncols=True)
        for step, (x, y) in enumerate(bar, start=first):
            out, loss = self.step(x, y)
            self.schedule.step()
            if self.ema is not None:
                self.ema.update(model)
            if self.lookahead is not None:
                self.lookahead.step(model, done_before + step + 1)
            # Accumulate on the device; read back only every BAR_EVERY steps.
            loss_sum += loss * len(y)
            correct += (out.argmax(1) == y).sum()
            seen += len(y)
            if (step % BAR_EVERY == 0 or step == len(loader) - 1
                    or time.perf_counter() - shown_at >= BAR_SECONDS):
                shown_at = time.perf_counter()
                value = loss.item()
                _stop_if_diverged(value, epoch, step, folder, self.amp_dtype)
                bar.set_description(
                    f"loss={value:.4f} batch_id={step} acc={100.0 * correct.item() / seen:.2f} "
                    f"lr={optimizer.param_groups[0]['lr']:.4g}", refresh=False
                )
                # Saved where the loss was just read and found finite.
                if (partial and step < len(loader) - 1
                        and shown_at - saved_at >= PARTIAL_EVERY_SECONDS):
                    partway = {"step": step + 1, "order": order, "seen": seen,
                               "loss_sum": loss_sum, "correct": correct,
                               "seconds": shown_at - began}
                    folder.checkpoints.save_partway(self.state(), partway)
                    saved_at = time.perf_counter()
        if self.evaluated is not model and qat.is_enabled(model):
            qat.set_ranges(self.evaluated, qat.ranges(model))
        mean_loss = loss_sum.item() / seen
        _stop_if_diverged(mean_loss, epoch, len(loader) - 1, folder, self.amp_dtype)
        return mean_loss, 100.0 * correct.item() / seen


def _stop_if_diverged(value: float, epoch: int, step: int, folder: RunFolder | None,
                      amp_dtype: torch.dtype | None) -> None:
    if math.isfinite(value):
        return
    message = f"training diverged: loss is {value} at epoch {epoch}, batch {step}"
    if folder is not None:
        message += folder.checkpoints.after_divergence(epoch)
    message += ". Lower the learning rate and retry"
    if amp_dtype is not None:  # low precision can be the cause, not the learning rate
        message += (f"; it trained in {precision_name(amp_dtype)}: if it diverges at a lower "
                    "rate too, try train.amp=\"off\" (or train.channels_last=false)")
    if folder is not None:
        folder.log(message)
    raise DivergedError(message)



class Scores(NamedTuple):
    loss: float  # mean cross-entropy, with the test-time augmentation
    correct: int  # right answers, with it
    correct_without_tta: int  # right answers of the plain view (the same as `correct` without)


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DeviceLoader, tta: TTAMode = "none") -> Scores:
    """Scores over the whole loader, with the logits averaged over the test-time augmentation
    `tta`'s views, and of the plain view alone (which TTA computes anyway); in fp32, whatever
    the training precision (the figure is the shipped model's)."""
    model.eval()
    device = loader.labels.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    correct_plain = torch.zeros((), device=device, dtype=torch.long)
    for x, y in loader:
        plain = model(x)
        out = tta_logits(model, x, tta, plain=plain)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
        correct += (out.argmax(1) == y).sum()
        correct_plain += (plain.argmax(1) == y).sum()
    return Scores(loss_sum.item() / loader.num_samples, int(correct.item()),
                  int(correct_plain.item()))
