"""The one place a recipe runs, stage after stage: config -> model -> inspect -> data -> (LR range
test) -> train -> report. The first three come from `prepare`; each stage gets what the one
before made, in memory; nothing is traced, checked or loaded twice. The CLI's `train` and
`lr-find` verbs call these functions."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from cnnlab.config import USER_DATASETS, Recipe
from cnnlab.data import Dataset
from cnnlab.errors import ConfigError, SpecError
from cnnlab.inspection.spec import check_history
from cnnlab.models import count_parameters
from cnnlab.models.model_code import from_file
from cnnlab.models.model_object import ModelObject
from cnnlab.prepare import Prepared, prepare
from cnnlab.report.curves import plot_lr_find
from cnnlab.report.run_report import write_report
from cnnlab.report.tensorboard_log import TensorBoardLog
from cnnlab.run_folder import RunFolder, records
from cnnlab.run_folder.history import epoch_log_line, trained_on
from cnnlab.run_folder.lr_find_result import LRFindResult
from cnnlab.run_folder.shipped_weights import write_safetensors
from cnnlab.run_result import RunResult
from cnnlab.ship.onnx_export import onnx_bytes
from cnnlab.training.device import pick_device
from cnnlab.training.range_test import range_test
from cnnlab.training.trainer import Echo, EpochCallback, Trainer


def train(
    recipe: Recipe | None = None,
    *,
    out_dir: str | Path = "runs",
    run_name: str | None = None,
    data_dir: str | Path | None = None,
    dataset: Dataset | None = None,
    model: ModelObject | None = None,
    prepared: Prepared | None = None,
    enforce_spec: bool = True,
    progress: bool = True,
    echo: Echo | None = print,
    report: bool = True,
    html: bool = False,
    callbacks: tuple[EpochCallback, ...] = (),
) -> RunResult:
    """Train `recipe` into a new run folder under `out_dir` (named `run_name`, default
    `<recipe>-<time>`), then write its report (plots, README.md, and report.html with `html`)
    unless `report` is False.

    `dataset` replaces loading from disk (tests pass small tensors); `model`, an nn.Module
    class, a builder function or an instance (say, from a notebook cell), replaces the
    recipe's model, and the run folder keeps its source where Python can find it. `prepared`
    is `prepare(recipe, ...)` already done by the caller (a sweep trial checks the budget on
    it first). With `enforce_spec`, a model or recipe that breaks the recipe's `[spec]` is refused
    before anything is written. `echo` receives the log lines (the epoch header, the seeds'
    "Test set: ..." line), `None` silences them. After each epoch, each of `callbacks` gets
    `(row, trainer)`: the epoch's history row and the Trainer.
    """
    if prepared is None:
        if recipe is None:
            raise ConfigError("give a recipe to train (or resume a run folder)")
        prepared = prepare(recipe, model=model, dataset=dataset, data_dir=data_dir,
                           progress=progress)
    output = _Output(progress, echo, report, html, tuple(callbacks))
    return _fit(prepared, None, enforce_spec, output, out_dir, run_name)


def resume(
    run_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    dataset: Dataset | None = None,
    trust_code: bool = False,
    progress: bool = True,
    echo: Echo | None = print,
    report: bool = True,
    html: bool = False,
    callbacks: tuple[EpochCallback, ...] = (),
) -> RunResult:
    """Continue the run in `run_dir` from its last checkpoint (inside an epoch, from its
    partial checkpoint), as it was asked for (a `--no-check` run resumes as one), then write
    its report. Model code the folder names runs only if this user's cnnlab wrote the
    folder, or `trust_code`. The other arguments are `train`'s."""
    folder = RunFolder.existing(run_dir)
    folder.require_writable()  # nothing is written into a folder a later write refuses
    enforce_spec = folder.start_options().get("check", True)  # run.json's key
    prepared = prepare(None, folder=folder, dataset=dataset, data_dir=data_dir,
                       progress=progress, trust_code=trust_code)
    output = _Output(progress, echo, report, html, tuple(callbacks))
    return _fit(prepared, folder, enforce_spec, output)


@dataclass(frozen=True)
class _Output:
    """What a run shows and writes besides its checkpoints."""

    progress: bool
    echo: Echo | None
    report: bool
    html: bool
    callbacks: tuple[EpochCallback, ...]


def _fit(prepared: Prepared, resumed: RunFolder | None, enforce_spec: bool, output: _Output,
         out_dir: str | Path = "runs", run_name: str | None = None) -> RunResult:
    """Train what `prepare` made, into a new folder under `out_dir` or on in `resumed`."""
    recipe, model, inspection = prepared.recipe, prepared.model, prepared.inspection
    say: Callable[[str], None] = output.echo or (lambda line: None)
    pick_device(recipe.train.device)  # fail early on a device this machine lacks
    if enforce_spec and not inspection.check.passed:
        raise SpecError("\n".join(
            [f"{recipe.name} breaks its [spec] (train anyway with --no-check):"]
            + [f"  {v.line()}" for v in inspection.check.failures]
        ))
    data = prepared.data()
    recipe = with_data_recorded(recipe, prepared.read_data())

    found = None
    if recipe.schedule.max_lr == "find":
        found = lr_find(recipe, dataset=data, model=model, progress=output.progress)
        say(f"LR range test: {found.summary_line()}")
        peak = found.pick(recipe.schedule.find_pick)
        recipe = recipe.with_values({"schedule.max_lr": peak})

    trainer = Trainer(recipe, data, model)
    # The run folder is made only once everything above has been validated.
    folder = resumed or _new_run_folder(out_dir, recipe, trainer, prepared, found, run_name,
                                        {"check": enforce_spec, "lr_find": found is not None})
    board = TensorBoardLog(folder, recipe) if recipe.train.tensorboard else None
    callbacks = (*output.callbacks, board) if board is not None else output.callbacks
    with folder.training_lock():
        if resumed is not None:
            _continue(folder, trainer, say)
        try:
            trainer.fit(folder, output.progress, say, callbacks)
        except KeyboardInterrupt as exc:
            reason = exc.args[0] if exc.args and exc.args[0] else "SIGINT"
            folder.log(f"stopped by {reason} in epoch {len(trainer.history) + 1}")
            # Tells the caller what to resume, once an epoch or part of one is saved.
            saved = trainer.history or folder.partial_checkpoint.is_file()
            raise Interrupted(folder.path if saved else None, reason) from None

    inspection.check.verdicts += check_history(recipe, trainer.history)
    folder.write_text("check.md", inspection.check.to_markdown() + "\n")
    write_safetensors(folder, data)  # the model, shipped
    if from_file(recipe.model.name) and recipe.model.source_sha256 is None:
        _ship_onnx_instead(folder, trainer, data, say)
    if output.report:
        write_report(folder.path, model=trainer.evaluated, dataset=data, inspection=inspection,
                     html=output.html)
    if board is not None:
        board.finish(trainer.history, folder.file("plots/confusion.png"))
    return RunResult(folder.path, trainer.history, trainer.evaluated, inspection.check, data)


def _continue(folder: RunFolder, trainer: Trainer, say: Callable[[str], None]) -> None:
    """Put `trainer` where the folder's last checkpoint left it, and mend what a crash between
    the checkpoint and the other files may have left behind. Every file is read, and checked,
    before any is written."""
    state, path = folder.checkpoints.resume_state()
    folder.lr_find_record()  # read by the report at the end: refused now, not after training
    folder.int8_record()
    folder.tflite_record()
    records.check_weights(trainer.model, state["model"], path)
    with records.reading(path, "does not fit this run"):
        trainer.load_state(state)
    logged = folder.logged_epochs()  # the log line comes last: a crash may have cut it
    best_saved = (folder.best_weights(trainer.evaluated)["epoch"]
                  if folder.best_checkpoint.is_file() else None)

    folder.remove_leftovers()
    folder.write_history(trainer.history)  # the checkpoint is the truth after a crash
    for row in trainer.history:
        if row["epoch"] not in logged:
            folder.log(epoch_log_line(row, trainer.cfg.tta) + " (logged on resume)")
    repaired = folder.checkpoints.repair_best(trainer.history, trainer.evaluated, best_saved)
    if repaired is not None:
        folder.log(repaired)
    if trainer.partway is None:
        folder.log(f"resumed after epoch {len(trainer.history)}")
    else:
        folder.log(f"resumed in epoch {len(trainer.history) + 1} at batch "
                   f"{trainer.partway['step']} of {len(trainer.train_loader)} ({path.name})")
    # e.g. train.amp = "auto" resolves differently on this machine
    before = trained_on(trainer.history[-1]) if trainer.history else None
    now = trained_on(trainer.trained_on)
    if before is not None and before != now:
        note = f"note: epochs so far ran on {before}; the rest run on {now}"
        say(note)
        folder.log(note)


def _ship_onnx_instead(folder: RunFolder, trainer: Trainer, data: Dataset,
                       say: Callable[[str], None]) -> None:
    """A model whose source could not be kept: the folder cannot rebuild it, so it ships the
    best epoch's model as ONNX beside the weights, where it can."""
    best = copy.deepcopy(trainer.evaluated).cpu().eval()
    best.load_state_dict(folder.best_weights()["model"])
    try:
        folder.write_bytes("model.onnx", onnx_bytes(best, data.input_shape))
    except Exception as exc:  # optional extra missing, or a model the exporters cannot take
        note = f"note: no model.onnx ({type(exc).__name__}: {str(exc)[:200]})"
    else:
        note = "the model's source could not be kept: shipped model.onnx beside the weights"
    say(note)
    folder.log(note)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT), SIGTERM or a notebook's interrupt stopped a run; `run_dir` is what
    `--resume` continues (None when nothing was saved: no epoch finished and no partial
    checkpoint was written, so there is nothing to resume)."""

    def __init__(self, run_dir: Path | None, reason: str = "SIGINT"):
        super().__init__(reason)
        self.run_dir, self.reason = run_dir, reason

    def __str__(self) -> str:  # the line a notebook shows under the traceback
        if self.run_dir is None:
            return f"stopped by {self.reason} before anything was saved: nothing to resume"
        return f"stopped by {self.reason}; continue with cnnlab.resume({str(self.run_dir)!r})"


def with_data_recorded(recipe: Recipe, data: Dataset) -> Recipe:
    """For a user's data, the recipe with what the run trains on (classes, normalisation,
    fingerprint), so its config.toml says it and a resume can check it."""
    if recipe.data.dataset not in USER_DATASETS or recipe.data.fingerprint is not None:
        return recipe
    return recipe.with_values({"data.classes": list(data.classes), "data.mean": list(data.mean),
                               "data.std": list(data.std), "data.fingerprint": data.fingerprint()})


def _new_run_folder(out_dir: str | Path, recipe: Recipe, trainer: Trainer, prepared: Prepared,
                    found: LRFindResult | None, name: str | None, start_options: dict
                    ) -> RunFolder:
    folder = RunFolder.create(out_dir, recipe, name, start_options, prepared.model_source)
    folder.log(f"recipe {recipe.name}: model {recipe.model.name} "
               f"({count_parameters(trainer.model):,} parameters) on {trainer.device}")
    folder.write_text("summary.txt", prepared.inspection.summary.to_text() + "\n")
    folder.write_text("rf.md", prepared.inspection.field.to_markdown() + "\n")
    if found is not None:  # the report plots it
        folder.write_text(folder.lr_find_path.name, found.to_json())
        folder.log(f"LR range test: {found.summary_line()}")
    return folder


def lr_find(
    recipe: Recipe,
    *,
    data_dir: str | Path | None = None,
    dataset: Dataset | None = None,
    model: ModelObject | None = None,
    plot: str | Path | None = None,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    progress: bool = True,
) -> LRFindResult:
    """LR range test for `recipe`: its model (a copy of `model` if given, which stays
    untouched), loader, augmentation, optimiser, loss and precision, on its training data
    (`dataset`, else read from `data_dir`). The loss curve goes to the PNG `plot` if given."""
    if dataset is None or not isinstance(model, nn.Module):
        prepared = prepare(recipe, model=model, data_dir=data_dir, progress=progress)
        model = prepared.model if not isinstance(model, nn.Module) else model
        dataset = prepared.data() if dataset is None else dataset
    # A constant rate the range test sets itself; eager, as a compile would cost more than
    # the test's steps save (the run compiles for its own).
    steady = recipe.with_values({"schedule": {"name": "constant"}, "train.compile": False})
    probe = Trainer(steady, dataset, copy.deepcopy(model))
    result = range_test(probe.model, probe.optimizer, probe.train_loader, probe.step, start,
                        end, steps, progress)
    if plot is not None:
        plot_lr_find(result, Path(plot))
    return result
