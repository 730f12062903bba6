"""Confirmation: a design the search found is retrained on the full training split, on seeds
the search never used, in each precision a user's `train.amp = "auto"` may pick for it on a
CPU (fp32; bf16 where the CPU has bf16 units, as autocast), and kept only if it meets the
target rule in every one of those runs: where the spec sets `min_int8_acc`, each run's model
is exported to int8 (`cnnlab export --int8`) and that model's test accuracy must hold it too."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.config import Recipe
from cnnlab.data import Dataset
from cnnlab.pipeline import resume, train
from cnnlab.run_folder import RunFolder
from cnnlab.run_folder.history import History
from cnnlab.ship.int8_export import export_int8
from cnnlab.training.precision import run_precision
from cnnlab.training.trainer import Echo

# What `train.amp = "auto"` can resolve to on a CPU, as the recipe setting that forces it.
CPU_PRECISIONS = {"fp32": "off", "bf16": "bf16"}


@dataclass
class SeedRun:
    seed: int
    run_dir: Path
    history: History
    precision: str = "fp32"
    int8_acc: float | None = None  # the int8 model's test %, where the spec has min_int8_acc

    def last_accuracies(self, last: int) -> list[float]:
        return [row["test_acc"] for row in self.history[-last:]]

    def shortfall(self, recipe: Recipe) -> float:
        """Points by which the run misses the target (<= 0: met): the lowest of the last
        epochs against min_test_acc, and the int8 model against min_int8_acc."""
        spec = recipe.spec
        missed = spec.min_test_acc - min(self.last_accuracies(spec.last_epochs))
        if spec.min_int8_acc is not None and self.int8_acc is not None:
            missed = max(missed, spec.min_int8_acc - self.int8_acc)
        return missed


@dataclass
class Confirmation:
    trial: int  # the search trial the design came from
    params: int
    recipe: Recipe  # the design, as trained on the full split (seed: the search's)
    runs: list[SeedRun] = field(default_factory=list)
    failed_on: int | None = None  # the seed on which it missed the rule
    failed_in: str | None = None  # ... and the precision
    values: dict[str, Any] = field(default_factory=dict)  # its searched values
    val_acc: list[float] = field(default_factory=list)  # at the search's last rung, per seed

    @property
    def confirmed(self) -> bool:
        return self.failed_on is None and bool(self.runs)

    @property
    def short_by(self) -> float:
        """Points by which its worst run missed the target (<= 0: every run met it)."""
        return max(r.shortfall(self.recipe) for r in self.runs)


def rule_met(history: History, recipe: Recipe, int8_acc: float | None = None) -> bool:
    """The spec's "reached": every one of the last `last_epochs` epochs at or above
    `min_test_acc`, after all the epochs the recipe trains; and the int8 model (`int8_acc`)
    at or above `min_int8_acc` where the spec sets it."""
    last, target = recipe.spec.last_epochs, recipe.spec.min_test_acc
    done = len(history) >= recipe.train.epochs
    int8_met = (recipe.spec.min_int8_acc is None
                or (int8_acc is not None and int8_acc >= recipe.spec.min_int8_acc))
    return done and int8_met and all(row["test_acc"] >= target for row in history[-last:])


def confirm(candidate: Confirmation, seeds: tuple[int, ...], folder: Path, data: Dataset,
            echo: Echo | None, precisions: tuple[str, ...] = ("fp32",)) -> Confirmation:
    """Train `candidate` on each of `seeds` in each of `precisions` in turn (a run already in
    `folder` is reused, or resumed where it stopped), stopping at the first run that misses
    the rule."""
    say = echo or (lambda line: None)
    for seed in seeds:
        for precision in precisions:
            history, run_dir = _trained(candidate.recipe, seed, precision, folder, data)
            int8 = (_int8_accuracy(run_dir, data)
                    if candidate.recipe.spec.min_int8_acc is not None else None)
            seed_run = SeedRun(seed, run_dir, history, precision, int8)
            candidate.runs.append(seed_run)
            last = ", ".join(f"{a:.2f}" for a in
                             seed_run.last_accuracies(candidate.recipe.spec.last_epochs))
            met = rule_met(history, candidate.recipe, int8)
            say(f"  trial {candidate.trial} ({candidate.params:,} parameters), seed {seed}, "
                f"{precision}: last epochs {last}%"
                + (f", int8 {int8:.2f}%" if int8 is not None else "")
                + f" -> {'met' if met else 'missed'}")
            if not met:
                candidate.failed_on, candidate.failed_in = seed, precision
                return candidate
    return candidate


def _trained(recipe: Recipe, seed: int, precision: str, folder: Path, data: Dataset
             ) -> tuple[History, Path]:
    name = f"seed{seed}" if precision == "fp32" else f"seed{seed}-{precision}"
    return trained_in(_with_seed(recipe, seed, CPU_PRECISIONS[precision]), folder, name, data)


def trained_in(recipe: Recipe, folder: Path, name: str, data: Dataset) -> tuple[History, Path]:
    """`recipe` trained into `folder/name`, quietly: a run of the same recipe already there
    is reused, or resumed from its last checkpoint; anything else there is replaced."""
    run_dir = folder / name
    if run_dir.is_dir():
        existing = RunFolder.existing(run_dir)
        if _as_recorded(existing.recipe()) == _as_recorded(recipe):
            history = existing.history()
            if len(history) >= recipe.train.epochs:
                return history, run_dir
            if existing.last_checkpoint.is_file():
                result = resume(run_dir, dataset=data, progress=False, echo=None,
                             report=False)
                return result.history, run_dir
        # stopped before its first epoch, or a run of this design before the file was edited
        shutil.rmtree(run_dir)
    result = train(recipe, out_dir=folder, run_name=name, dataset=data, progress=False,
                 echo=None, report=False)
    return result.history, result.run_dir


def _int8_accuracy(run_dir: Path, data: Dataset) -> float:
    """The run's int8 model's test accuracy: exported once (a resumed confirmation reads the
    run's int8.json)."""
    recorded = RunFolder.existing(run_dir).int8_record()
    if recorded is None:
        recorded = {"test_acc_int8": export_int8(run_dir, dataset=data).test_acc_int8}
    return recorded["test_acc_int8"]


def _as_recorded(recipe: Recipe) -> dict[str, Any]:
    """What a run of `recipe` trains with, as its folder records it (the settings of the
    precision it trains in applied; where its model's code came from left out)."""
    raw = recipe.for_precision(run_precision(recipe.train)).to_dict()
    raw["model"] = {"name": raw["model"]["name"], "args": raw["model"].get("args", {})}
    return raw


def _with_seed(recipe: Recipe, seed: int, amp: str | None = None) -> Recipe:
    return recipe.with_values({"train.seed": seed, **({"train.amp": amp} if amp else {})})
