"""Confirmation: a design the search found is retrained on the full training split, on seeds
the search never used, in each precision a user's `train.amp = "auto"` may pick for it on a
CPU (fp32; bf16 where the CPU has bf16 units, as autocast), and kept only if it meets the
target rule in every one of those runs: where the spec sets `min_int8_acc`, each run's model
is exported to int8 (`cnnlab export --int8`) and that model's test accuracy must hold it too.

Meeting the rule on three seeds is not holding it: a design at the line passes three and
misses the fourth. So a design that met it on every run is kept only where it is predicted to
meet it on UNSEEN_HOLDS of the seeds it was not confirmed on: a new run's judged figure (its
lowest last-epoch accuracy, above the target) falls about the mean of its judged runs' with the
spread between runs that the design library's designs and its own runs show
(library.pooled_spread); the mean itself is known to that spread over the square root of the
runs. Where the spread rests on fewer than SPREAD_DOF degrees of freedom, no prediction is
made and meeting the rule on every run suffices.

bf16 autocast is there for speed. Where the first seed's bf16 run took at least as long per
epoch as its fp32 run (small convs, whose bf16 kernels cost more in reorders than they save;
with two workers the two train side by side), the design trains in fp32 everywhere
(`train.amp = "off"`): its later seeds run in fp32 only, and the bf16 run is kept as the
measurement, not judged."""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import shutil
import statistics
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

from cnnlab.config import Recipe
from cnnlab.data import Dataset, load_recipe_data
from cnnlab.design.library import SPREAD_DOF, pooled_spread
from cnnlab.pipeline import resume, train, with_data_recorded
from cnnlab.run_folder import RunFolder
from cnnlab.run_folder.history import History
from cnnlab.ship.int8_export import export_int8
from cnnlab.sweep.workers import threads_per_worker
from cnnlab.training.precision import run_precision
from cnnlab.training.trainer import Echo

# What `train.amp = "auto"` can resolve to on a CPU, as the recipe setting that forces it.
CPU_PRECISIONS = {"fp32": "off", "bf16": "bf16"}
# The share of unseen seeds on which a kept design must be predicted to meet its rule.
UNSEEN_HOLDS = 0.95


@dataclass
class SeedRun:
    seed: int
    run_dir: Path
    history: History
    precision: str = "fp32"
    int8_acc: float | None = None  # the int8 model's test %, where the spec has min_int8_acc

    def epoch_seconds(self) -> float:
        """Its median training seconds per epoch."""
        return statistics.median(row["train_seconds"] for row in self.history)

    def met(self, recipe: Recipe) -> bool:
        return rule_met(self.history, recipe, self.int8_acc)

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
    values: dict[str, Any] = field(default_factory=dict)  # its searched values
    val_acc: list[float] = field(default_factory=list)  # at the search's last rung, per seed
    precisions: tuple[str, ...] = ("fp32",)  # those its recipe trains in: each is judged
    bf16_slowdown: float | None = None  # bf16's epoch time over fp32's, on the first seed
    # the spread between one design's runs in the design library, and its degrees of freedom
    library_spread: tuple[float, int] = (0.0, 0)

    @property
    def bf16_dropped(self) -> bool:
        """Whether its bf16 run only measured bf16's speed: no faster, so it trains in fp32."""
        return self.bf16_slowdown is not None and "bf16" not in self.precisions

    @property
    def judged(self) -> list[SeedRun]:
        """Its runs in a precision its recipe trains in."""
        return [r for r in self.runs if r.precision in self.precisions]

    @property
    def first_miss(self) -> SeedRun | None:
        return next((r for r in self.judged if not r.met(self.recipe)), None)

    @property
    def failed_on(self) -> int | None:
        """The seed on which it missed the rule first."""
        return None if self.first_miss is None else self.first_miss.seed

    @property
    def failed_in(self) -> str | None:
        return None if self.first_miss is None else self.first_miss.precision

    @property
    def spread(self) -> tuple[float, int]:
        """How far its judged figure moves between runs: the library's spread pooled with its
        own judged runs', and the degrees of freedom that rests on."""
        return pooled_spread([self.margins], self.library_spread)

    @property
    def holds_unseen(self) -> float | None:
        """The share of unseen seeds on which it is predicted to meet the rule (module
        docstring); None where the spread rests on too few degrees of freedom."""
        margins = self.margins
        spread, dof = self.spread
        if not margins or dof < SPREAD_DOF:
            return None
        if spread == 0:
            return float(self.mean_margin >= 0)
        return NormalDist().cdf(self.mean_margin / (spread * math.sqrt(1 + 1 / len(margins))))

    @property
    def margin_needed(self) -> float | None:
        """Points above the target its judged runs must hold on average to be predicted to
        meet the rule on UNSEEN_HOLDS of unseen seeds; None where no prediction is made."""
        if self.holds_unseen is None:
            return None
        spread, _ = self.spread
        return (NormalDist().inv_cdf(UNSEEN_HOLDS) * spread
                * math.sqrt(1 + 1 / len(self.margins)))

    @property
    def thin(self) -> bool:
        """Met the rule on every judged run, yet predicted to miss it on too many unseen
        seeds."""
        holds = self.holds_unseen
        return self.first_miss is None and holds is not None and holds < UNSEEN_HOLDS

    @property
    def confirmed(self) -> bool:
        return self.first_miss is None and bool(self.judged) and not self.thin

    @property
    def short_by(self) -> float:
        """Points by which its worst judged run missed the target (<= 0: every one met it)."""
        return max(r.shortfall(self.recipe) for r in self.judged)

    @property
    def margins(self) -> list[float]:
        """Points by which each judged run held the target (negative: missed it)."""
        return [-r.shortfall(self.recipe) for r in self.judged]

    @property
    def mean_margin(self) -> float:
        """Points by which its judged runs held the target, on average."""
        return statistics.fmean(self.margins)


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
            echo: Echo | None, precisions: tuple[str, ...] = ("fp32",), *, workers: int = 1,
            data_dir: str | Path | None = None) -> Confirmation:
    """Train `candidate` on each of `seeds` in each of `precisions` (a run already in `folder`
    is reused, or resumed where it stopped), stopping after the first run that misses the
    rule. With `workers` > 1 the runs go that many at a time, each in a process of its own
    with its share of the cores (loading the data from `data_dir`), and a batch with a miss
    is the last: its other runs are kept too."""
    say = echo or (lambda line: None)
    candidate.precisions = tuple(precisions)
    planned = [(seed, precision) for seed in seeds for precision in precisions]
    with _trainer(workers, candidate.recipe, data, data_dir) as train_batch:
        while planned:
            batch, planned = planned[:workers], planned[workers:]
            for (seed, precision), run_dir in zip(batch, train_batch(batch, folder),
                                                  strict=True):
                _record_run(candidate, seed, precision, run_dir, data, say)
            if candidate.bf16_slowdown is None:
                candidate.bf16_slowdown = _bf16_slowdown(candidate, seeds[0])
                if candidate.bf16_slowdown is not None and candidate.bf16_slowdown >= 1.0:
                    _train_in_fp32(candidate, say)
                    planned = [(seed, precision) for seed, precision in planned
                               if precision == "fp32"]
            if candidate.failed_on is not None:
                return candidate
    if candidate.thin:
        say(f"  trial {candidate.trial}: met the rule on every run, but is predicted to meet "
            f"it on {candidate.holds_unseen:.0%} of unseen seeds, under {UNSEEN_HOLDS:.0%} "
            f"(its runs held {candidate.mean_margin:.2f} points above the target on average; "
            f"{UNSEEN_HOLDS:.0%} asks {candidate.margin_needed:.2f}): not kept")
    return candidate


def _bf16_slowdown(candidate: Confirmation, first_seed: int) -> float | None:
    """The first seed's bf16 epoch time over its fp32 one, once both runs are recorded; None
    before that, and where the design does not train in both."""
    pair = {r.precision: r for r in candidate.runs if r.seed == first_seed}
    if not {"fp32", "bf16"} <= pair.keys() & set(candidate.precisions):
        return None
    return pair["bf16"].epoch_seconds() / pair["fp32"].epoch_seconds()


def _train_in_fp32(candidate: Confirmation, say: Echo) -> None:
    candidate.recipe = candidate.recipe.with_values({"train.amp": "off"})
    candidate.precisions = tuple(p for p in candidate.precisions if p != "bf16")
    say(f"  trial {candidate.trial}: bf16 autocast took {candidate.bf16_slowdown:.2f}x fp32's "
        "time per epoch, so it trains in fp32 everywhere (train.amp = \"off\"): its rule is "
        "judged in fp32")


def _record_run(candidate: Confirmation, seed: int, precision: str, run_dir: Path,
                data: Dataset, say: Echo) -> None:
    history = RunFolder.existing(run_dir).history()
    int8 = (_int8_accuracy(run_dir, data)
            if candidate.recipe.spec.min_int8_acc is not None else None)
    seed_run = SeedRun(seed, run_dir, history, precision, int8)
    candidate.runs.append(seed_run)
    last = ", ".join(f"{a:.2f}" for a in
                     seed_run.last_accuracies(candidate.recipe.spec.last_epochs))
    met = seed_run.met(candidate.recipe)
    say(f"  trial {candidate.trial} ({candidate.params:,} parameters), seed {seed}, "
        f"{precision}: last epochs {last}%"
        + (f", int8 {int8:.2f}%" if int8 is not None else "")
        + f" -> {'met' if met else 'missed'}")


TrainBatch = Callable[[list[tuple[int, str]], Path], list[Path]]


@contextlib.contextmanager
def _trainer(workers: int, recipe: Recipe, data: Dataset, data_dir: str | Path | None
             ) -> Iterator[TrainBatch]:
    """What trains a batch of (seed, precision) runs of `recipe` and gives their folders: in
    this process, or with `workers` > 1 in as many processes, started once for all batches."""
    if workers == 1:
        yield lambda batch, folder: [_trained(recipe, seed, precision, folder, data)[1]
                                     for seed, precision in batch]
        return
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked threads
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_start,
                             initargs=(threads_per_worker(workers), recipe,
                                       None if data_dir is None else str(data_dir))) as pool:
        yield lambda batch, folder: list(pool.map(_worker_trained, [recipe] * len(batch),
                                                  *zip(*batch, strict=True),
                                                  [folder] * len(batch)))


_worker_data: Dataset | None = None  # a confirmation worker's data, loaded once


def _worker_start(threads: int, recipe: Recipe, data_dir: str | None) -> None:
    import torch

    global _worker_data
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    _worker_data = load_recipe_data(recipe.data, data_dir, progress=False)


def _worker_trained(recipe: Recipe, seed: int, precision: str, folder: Path) -> Path:
    assert _worker_data is not None, "started by _worker_start"
    return _trained(recipe, seed, precision, folder, _worker_data)[1]


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
        # a user's data is recorded in the run with what it resolved to (its classes,
        # normalisation, fingerprint): compared so, a changed file is a changed design
        if _as_recorded(existing.recipe()) == _as_recorded(with_data_recorded(recipe, data)):
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
    precision it trains in applied; where its model's code came from and the words that
    describe it left out)."""
    raw = recipe.for_precision(run_precision(recipe.train)).to_dict()
    raw.pop("description", None)
    raw["model"] = {"name": raw["model"]["name"], "args": raw["model"].get("args", {})}
    return raw


def _with_seed(recipe: Recipe, seed: int, amp: str | None = None) -> Recipe:
    return recipe.with_values({"train.seed": seed, **({"train.amp": amp} if amp else {})})
