"""Confirmation: a design the search found is retrained on the full training split, on seeds
the search never used, and kept only if it meets the target rule on every one of them."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnnlab.config import Recipe, parse_recipe
from cnnlab.data import Dataset
from cnnlab.pipeline import run
from cnnlab.run_folder import RunFolder
from cnnlab.train.history import History
from cnnlab.train.precision import run_precision
from cnnlab.train.trainer import Echo


@dataclass
class SeedRun:
    seed: int
    run_dir: Path
    history: History

    def last_accuracies(self, last: int) -> list[float]:
        return [row["test_acc"] for row in self.history[-last:]]


@dataclass
class Confirmation:
    trial: int  # the search trial the design came from
    params: int
    recipe: Recipe  # the design, as trained on the full split (seed: the search's)
    runs: list[SeedRun] = field(default_factory=list)
    failed_on: int | None = None  # the seed on which it missed the rule

    @property
    def confirmed(self) -> bool:
        return self.failed_on is None and bool(self.runs)


def rule_met(history: History, recipe: Recipe) -> bool:
    """The spec's "reached": every one of the last `last_epochs` epochs at or above
    `min_test_acc`, after all the epochs the recipe trains."""
    last, target = recipe.spec.last_epochs, recipe.spec.min_test_acc
    done = len(history) >= recipe.train.epochs
    return done and all(row["test_acc"] >= target for row in history[-last:])


def confirm(candidate: Confirmation, seeds: tuple[int, ...], folder: Path, data: Dataset,
            echo: Echo | None) -> Confirmation:
    """Train `candidate` on each of `seeds` in turn (a run already in `folder` is reused, or
    resumed where it stopped), stopping at the first seed that misses the rule."""
    say = echo or (lambda line: None)
    for seed in seeds:
        history, run_dir = _trained(candidate.recipe, seed, folder, data)
        candidate.runs.append(SeedRun(seed, run_dir, history))
        last = ", ".join(f"{a:.2f}" for a in
                         candidate.runs[-1].last_accuracies(candidate.recipe.spec.last_epochs))
        met = rule_met(history, candidate.recipe)
        say(f"  trial {candidate.trial} ({candidate.params:,} parameters), seed {seed}: "
            f"last epochs {last}% -> {'met' if met else 'missed'}")
        if not met:
            candidate.failed_on = seed
            break
    return candidate


def _trained(recipe: Recipe, seed: int, folder: Path, data: Dataset) -> tuple[History, Path]:
    name = f"seed{seed}"
    run_dir = folder / name
    seeded = _with_seed(recipe, seed)
    if run_dir.is_dir():
        existing = RunFolder.existing(run_dir)
        if _as_recorded(existing.recipe()) == _as_recorded(seeded):
            history = existing.history()
            if len(history) >= seeded.train.epochs:
                return history, run_dir
            if existing.last_checkpoint.is_file():
                result = run(resume=run_dir, dataset=data, progress=False, echo=None,
                             report=False)
                return result.history, run_dir
        # stopped before its first epoch, or a run of this design before the file was edited
        shutil.rmtree(run_dir)
    result = run(seeded, out_dir=folder, run_name=name, dataset=data, progress=False,
                 echo=None, report=False)
    return result.history, result.run_dir


def _as_recorded(recipe: Recipe) -> dict[str, Any]:
    """What a run of `recipe` trains with, as its folder records it (the settings of the
    precision it trains in applied; where its model's code came from left out)."""
    raw = recipe.for_precision(run_precision(recipe.train)).to_dict()
    raw["model"] = {"name": raw["model"]["name"], "args": raw["model"].get("args", {})}
    return raw


def _with_seed(recipe: Recipe, seed: int) -> Recipe:
    raw: dict[str, Any] = recipe.to_dict()
    raw["train"]["seed"] = seed
    return parse_recipe(raw, recipe.name)
