"""What a user asks for, across stages: a run (train, then its plots and README) and an LR
range test (data, test, plot)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.config import Recipe
from cnnlab.data import load_dataset
from cnnlab.report.curves import plot_lr_find
from cnnlab.report.run_report import write_report
from cnnlab.train.lr_finder import LRFindResult
from cnnlab.train.trainer import RunResult, find_lr
from cnnlab.train.trainer import train as train_only


def train(*args: Any, report: bool = True, html: bool = False, **kwargs: Any) -> RunResult:
    """`cnnlab.train.trainer.train` (same arguments), then `write_report` on the run folder
    unless `report=False`."""
    result = train_only(*args, **kwargs)
    if report:
        write_report(result.run_dir, model=result.model, dataset=result.dataset, html=html)
    return result


def lr_find(
    recipe: Recipe,
    *,
    data_dir: str | Path | None = None,
    plot: str | Path | None = None,
    **kwargs: Any,
) -> LRFindResult:
    """LR range test on the recipe's training data (`find_lr`'s keyword arguments: start,
    end, steps, progress); the loss curve goes to the PNG `plot` if given."""
    data = load_dataset(recipe.data.dataset, data_dir)
    result = find_lr(recipe, data.limited(recipe.data.train_limit, recipe.data.test_limit),
                     **kwargs)
    if plot is not None:
        plot_lr_find(result, Path(plot))
    return result
