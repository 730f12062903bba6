"""The training loop: plain PyTorch, seeded, resumable, with the seeds' log format."""

from __future__ import annotations

import copy
import dataclasses
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

from cnnlab.config import Recipe, ScheduleConfig
from cnnlab.data import BatchAugment, Dataset, DeviceLoader, load_dataset
from cnnlab.data.albumentations_loader import AlbumentationsLoader
from cnnlab.data.dataset import INPUT_SHAPES
from cnnlab.data.loader import normaliser
from cnnlab.errors import ConfigError, SpecError, TrainingError
from cnnlab.inspect.graph import trace
from cnnlab.inspect.receptive_field import receptive_field_of
from cnnlab.inspect.spec import CheckReport, check_graph, check_history
from cnnlab.inspect.summary import summary_of
from cnnlab.models import build_model, count_parameters
from cnnlab.run_folder import RunFolder
from cnnlab.train.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_atomic
from cnnlab.train.ema import WeightEMA
from cnnlab.train.lr_finder import LRFindResult, lr_find
from cnnlab.train.optim import build_optimizer, build_schedule
from cnnlab.train.tta import tta_logits

INIT_SAMPLE = 5000  # training images a model's `init_from_data` sees
BAR_EVERY = 20  # steps between progress-bar updates; each update syncs with the device
Echo = Callable[[str], None]


@dataclass
class RunResult:
    run_dir: Path
    history: list[dict[str, Any]]
    model: nn.Module  # the evaluated model (the EMA copy when EMA is on)
    check: CheckReport  # the recipe's [spec], verdicts before and after training
    dataset: Dataset  # what it was trained and tested on

    @property
    def final_accuracy(self) -> float:
        return self.history[-1]["test_acc"]

    @property
    def best_accuracy(self) -> float:
        return max(row["test_acc"] for row in self.history)


def train(
    recipe: Recipe | None = None,
    *,
    resume: str | Path | None = None,
    data_dir: str | Path | None = None,
    out_dir: str | Path = "runs",
    dataset: Dataset | None = None,
    progress: bool = True,
    echo: Echo | None = print,
    check: bool = True,
) -> RunResult:
    """Train `recipe` into a new run folder under `out_dir`, or continue the run at `resume`.

    `dataset` replaces loading from disk (tests pass small tensors); `echo` receives the log
    lines (epoch header, the seeds' "Test set: ..." line), `None` silences them. With `check`,
    a model or recipe that breaks the recipe's `[spec]` is refused before anything is written.
    """
    run = RunFolder.existing(resume) if resume else None
    if run is not None:
        recipe = run.recipe()
    if recipe is None:
        raise ConfigError("give a recipe to train, or a run folder to resume")
    say = echo or (lambda line: None)
    pick_device(recipe.train.device)  # fail early on a device this machine lacks
    torch.manual_seed(recipe.train.seed)  # the model's initial weights follow the seed
    model = build_model(recipe.model.name, **recipe.model.args)
    graph = trace(model, INPUT_SHAPES[recipe.data.dataset])
    report = check_graph(recipe, model, graph)
    if check and not report.passed:
        raise SpecError("\n".join(
            [f"{recipe.name} breaks its [spec] (train anyway with --no-check):"]
            + [f"  {v.line()}" for v in report.failures]
        ))
    data = dataset if dataset is not None else load_dataset(recipe.data.dataset, data_dir)
    data = data.limited(recipe.data.train_limit, recipe.data.test_limit)
    found = None
    if recipe.schedule.max_lr == "find":
        found = find_lr(recipe, data, model=model, progress=progress)
        say(f"LR range test: {found.summary_line()}")
        recipe = dataclasses.replace(
            recipe, schedule=dataclasses.replace(recipe.schedule,
                                                 max_lr=found.pick(recipe.schedule.find_pick)))
    trainer = Trainer(recipe, data, model)
    # The run folder is made only once everything above has been validated.
    if run is None:
        run = RunFolder.create(out_dir, recipe)
        run.log(f"recipe {recipe.name}: model {recipe.model.name} "
                f"({count_parameters(trainer.model):,} parameters) on {trainer.device}")
        run.write_text("summary.txt", summary_of(graph, trainer.model).to_text() + "\n")
        run.write_text("rf.md", receptive_field_of(graph).to_markdown() + "\n")
        if found is not None:  # the report plots it
            run.write_text(run.lr_find_path.name, found.to_json())
            run.log(f"LR range test: {found.summary_line()}")
    else:
        trainer.load_state(load_checkpoint(run.last_checkpoint))
        run.write_history(trainer.history)  # the checkpoint is the truth if a crash cut the log
        run.log(f"resumed after epoch {len(trainer.history)}")
    try:
        trainer.fit(run, progress, say)
    except KeyboardInterrupt:
        run.log(f"interrupted in epoch {len(trainer.history) + 1}")
        raise KeyboardInterrupt(str(run.path)) from None  # tells the caller what to resume
    report.verdicts += check_history(recipe, trainer.history)
    run.write_text("check.md", report.to_markdown() + "\n")
    return RunResult(run.path, trainer.history, trainer.evaluated, report, data)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA is not available on this machine: use --device cpu")
    return torch.device(name)


def find_lr(
    recipe: Recipe,
    data: Dataset,
    *,
    model: nn.Module | None = None,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    progress: bool = True,
) -> LRFindResult:
    """LR range test for `recipe` on `data`'s training batches (its loader, augmentation,
    optimiser). `model` is left untouched: the test runs on a copy."""
    if model is None:
        torch.manual_seed(recipe.train.seed)
        model = build_model(recipe.model.name, **recipe.model.args)
    steady = dataclasses.replace(recipe, schedule=ScheduleConfig(name="constant"))
    probe = Trainer(steady, data, copy.deepcopy(model))
    return lr_find(probe.model, probe.optimizer, probe.train_loader, start, end, steps, progress)


class Trainer:
    """Everything a run holds in memory: model, loaders, optimiser, schedule, EMA, history."""

    def __init__(self, recipe: Recipe, data: Dataset, model: nn.Module):
        cfg = self.cfg = recipe.train
        self.device = pick_device(cfg.device)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=layout)
        init_from_data = getattr(self.model, "init_from_data", None)
        if callable(init_from_data):  # data-dependent init (patch whitening); before the EMA copy
            scale, shift = normaliser(data.mean, data.std, self.device)
            sample = data.train_images[:INIT_SAMPLE].to(self.device).float()
            init_from_data(torch.addcmul(shift, sample, scale))
        loader_args = dict(mean=data.mean, std=data.std, device=self.device,
                           channels_last=cfg.channels_last)
        if recipe.augment.engine == "albumentations":
            self.train_loader = AlbumentationsLoader(
                data.train_images, data.train_labels, recipe.data.batch_size,
                transforms=recipe.augment.transforms, workers=recipe.augment.workers,
                seed=cfg.seed, **loader_args)
        else:
            augment = BatchAugment(recipe.augment)
            self.train_loader = DeviceLoader(
                data.train_images, data.train_labels, recipe.data.batch_size, shuffle=True,
                generator=self.generator, augment=augment if augment.active else None,
                **loader_args)
        self.test_loader = DeviceLoader(
            data.test_images, data.test_labels, recipe.data.eval_batch_size, **loader_args
        )
        # bf16 autocast where it pays (CUDA) or where asked; fp32 master weights either way.
        self.amp = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")
        # The compiled module shares parameters with self.model, whose state_dict stays clean.
        self.forward = torch.compile(self.model) if cfg.compile else self.model
        self.optimizer = build_optimizer(self.model, recipe.optim)
        self.schedule = build_schedule(
            self.optimizer, recipe.schedule, len(self.train_loader), cfg.epochs
        )
        self.ema = WeightEMA(self.model, cfg.ema_decay) if cfg.ema_decay else None
        self.evaluated = self.ema.model if self.ema is not None else self.model
        self.history: list[dict[str, Any]] = []

    def state(self) -> dict[str, Any]:
        state = {
            "epoch": len(self.history), "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(),
            "rng": rng_states(self.generator), "history": self.history,
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        restore_rng_states(state["rng"], self.generator)
        self.history = list(state["history"])
        self.train_loader.epoch = len(self.history)  # alternating flips continue in phase

    def fit(self, run: RunFolder, progress: bool, echo: Echo) -> None:
        epochs = self.cfg.epochs
        for epoch in range(len(self.history) + 1, epochs + 1):
            echo(f"Epoch : {epoch}/{epochs}")
            started = time.perf_counter()
            train_loss, train_acc = self.train_epoch(epoch, run, progress)
            train_seconds = time.perf_counter() - started
            row = {"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                   **self.test(), "lr": self.optimizer.param_groups[0]["lr"],
                   "steps": len(self.train_loader), "train_seconds": round(train_seconds, 3),
                   "seconds": round(time.perf_counter() - started, 3)}
            best_before = max((r["test_acc"] for r in self.history), default=-1.0)
            self.history.append(row)
            line = (f"Test set: Average loss: {row['test_loss']:.4f}, Accuracy: "
                    f"{row['test_correct']}/{row['test_total']} ({row['test_acc']:.2f}%)")
            echo(line)
            plain = (f" ({self.cfg.tta} TTA; {row['test_acc_no_tta']:.2f}% without)"
                     if "test_acc_no_tta" in row else "")
            run.log(f"epoch {epoch}: train loss {train_loss:.4f} acc {train_acc:.2f}% | "
                    f"{line}{plain} | {row['seconds']:.1f}s")
            save_atomic(self.state(), run.last_checkpoint)
            if row["test_acc"] > best_before:
                save_atomic({"epoch": epoch, "model": self.evaluated.state_dict(),
                             "test_acc": row["test_acc"]}, run.best_checkpoint)
            run.write_history(self.history)

    def test(self) -> dict[str, Any]:
        """Test loss and accuracy of the evaluated model (with the recipe's test-time
        augmentation); with TTA on, the accuracy without it too, so its gain is never hidden."""
        loss, correct = evaluate(self.evaluated, self.test_loader, self.amp, self.cfg.tta)
        total = self.test_loader.num_samples
        row = {"test_loss": loss, "test_acc": 100.0 * correct / total, "test_correct": correct,
               "test_total": total}
        if self.cfg.tta != "none":
            _, plain = evaluate(self.evaluated, self.test_loader, self.amp)
            row["test_acc_no_tta"] = 100.0 * plain / total
        return row

    def train_epoch(self, epoch: int, run: RunFolder | None, progress: bool
                    ) -> tuple[float, float]:
        """One pass over the training set; returns mean loss and accuracy (percent). `run`
        (if any) gets a line in its log when the loss diverges."""
        model, optimizer, loader = self.model, self.optimizer, self.train_loader
        model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        bar = tqdm(loader, total=len(loader), disable=not progress, file=sys.stderr,
                   dynamic_ncols=True)
        for step, (x, y) in enumerate(bar):
            with torch.autocast(self.device.type, torch.bfloat16, enabled=self.amp):
                out = self.forward(x)
                loss = F.cross_entropy(out, y, label_smoothing=self.cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            self.schedule.step()
            if self.ema is not None:
                self.ema.update(model)
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


def _stop_if_diverged(value: float, epoch: int, step: int, run: RunFolder | None) -> None:
    if math.isfinite(value):
        return
    message = f"training diverged: loss is {value} at epoch {epoch}, batch {step}"
    if run is not None:
        message += (f"; the last good checkpoint is kept in {run.last_checkpoint.parent}. "
                    "Lower the learning rate and retry")
        run.log(message)
    raise TrainingError(message)


@torch.inference_mode()
def evaluate(model: nn.Module, loader: DeviceLoader, amp: bool = False, tta: str = "none"
             ) -> tuple[float, int]:
    """Mean cross-entropy and number of correct predictions over the whole loader, with the
    logits averaged over the test-time augmentation `tta`'s views."""
    model.eval()
    device = loader.labels.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for x, y in loader:
        with torch.autocast(device.type, torch.bfloat16, enabled=amp):
            out = tta_logits(model, x, tta)
        loss_sum += F.cross_entropy(out.float(), y, reduction="sum")
        correct += (out.argmax(1) == y).sum()
    return loss_sum.item() / loader.num_samples, int(correct.item())
