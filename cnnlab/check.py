"""`cnnlab check`: a recipe against its `[spec]` budget, before training and, given a finished
run, after it."""

from __future__ import annotations

from pathlib import Path

from cnnlab.config import Recipe
from cnnlab.inspection.spec import CheckReport, Verdict, check_history, check_int8
from cnnlab.models.model_object import ModelObject
from cnnlab.prepare import prepare
from cnnlab.run_folder import RunFolder


def check(recipe: Recipe, run_dir: str | Path | None = None,
          data_dir: str | Path | None = None, model: ModelObject | None = None) -> CheckReport:
    """All rules of `recipe.spec`; accuracy rules need `run_dir` (a run folder that trained all
    its epochs: one short of them is reported so far, undecided, as still training or
    stopped). The model (the recipe's, or `model`: a class, builder or instance) is built for
    the recipe's data (its channels and classes)."""
    report = prepare(recipe, model=model, data_dir=data_dir, progress=False).inspection.check
    if run_dir is None:
        if recipe.spec.min_test_acc is not None:
            report.verdicts.append(Verdict(f"test accuracy >= {recipe.spec.min_test_acc}%", None,
                                           "needs a finished run: --run RUN_DIR"))
        report.verdicts += check_int8(recipe, None)
        return report
    folder = RunFolder.existing(run_dir)
    report.verdicts += check_history(recipe, folder.history(), folder.recipe().train.epochs,
                                     training=folder.is_training())
    report.verdicts += check_int8(recipe, folder.int8_record())
    return report
