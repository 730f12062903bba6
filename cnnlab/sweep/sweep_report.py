"""The sweep's README, written by the tool: what was searched, the best trials (or the Pareto
front of accuracy against parameters), the optimisation history, which keys mattered, and
the best trial's own run report."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from shlex import quote
from typing import Any

from matplotlib.figure import Figure

from cnnlab.report.document import Code, Heading, Image, Paragraph, Table, to_html, to_markdown
from cnnlab.report.png import save_png
from cnnlab.report.run_report import PNG_BYTES, write_report
from cnnlab.run_folder.confined import FolderFile, make_dirs
from cnnlab.sweep.objectives import OBJECTIVES, UNREACHED
from cnnlab.sweep.storage import shown
from cnnlab.sweep.sweep_file import SweepPlan
from cnnlab.sweep.trial import counted, trial_run_dir

SHOWN = 10  # trials in the table


def write_sweep_report(folder: Path, study: Any, spec: SweepPlan,
                       data_dir: str | Path | None = None, storage: str | None = None) -> Path:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    rejected = [t for t in trials if "rejected" in t.user_attrs]
    repeats = sum("repeat_of" in t.user_attrs for t in trials)
    trained = [t for t in trials if counted(t)]
    done = [t for t in trained if t.state == TrialState.COMPLETE]
    pruned = [t for t in trained if t.state == TrialState.PRUNED]
    failed = [t for t in trained if t.state == TrialState.FAIL]
    finished = len(done) + len(pruned) + len(failed)
    make_dirs(folder, "plots")
    two = len(spec.directions) == 2
    best = _ranked(study, done, two)
    blocks: list = [
        Heading(f"Sweep {spec.name}", 1),
        Paragraph(f"Base recipe `{spec.base.name}`, objective `{spec.objective}`, "
                  f"{finished} trial{'' if finished == 1 else 's'} trained: {len(done)} "
                  f"complete, {len(pruned)} pruned early, {len(failed)} failed; beside them, "
                  f"{len(rejected)} designs proposed over the budget, rejected before "
                  "training and fed back to the sampler as infeasible"
                  + (f", and {repeats} proposals of a design already trained, given its "
                     "result untrained" if repeats else "") + "."),
        Paragraph(f"The search steered by the accuracy on {spec.base.data.val_split:,} training "
                  "images held out as a validation split (**val**), the lowest over the "
                  f"last {spec.base.spec.last_epochs} epoch(s); the test split (**test**) was "
                  "measured for every trial but never read by the search: the test figure of "
                  "the pick is its confirmation."),
        Heading("Searched"),
        Table(["key", "range"], [[f"`{d.key}`", _range(d)] for d in spec.space]),
    ]
    if best:
        keys = [d.key for d in spec.space]
        blocks += [
            Heading("Pareto front: accuracy against parameters" if two else "Best trials"),
            Table(["trial", *keys, "params", "val", "test", "epochs", "seconds"],
                  [_row(t, keys) for t in best[:SHOWN]]),
        ]
        meeting = _smallest_meeting(best, spec) if two else best[0]
        blocks += _best_trial_blocks(meeting or best[-1], folder, data_dir,
                                     _why_picked(two, meeting is not None))
    blocks += _plots(study, done, spec, folder)
    if rejected:
        blocks += [Heading("Rejected by the budget"),
                   Table(["trial", "why"], [[str(t.number), t.user_attrs["rejected"]]
                                            for t in rejected[:SHOWN]])]
    blocks += [Heading("Reproduce"), Code(resume_command("sweep", folder, storage))]
    FolderFile(folder, "README.md").write_text(to_markdown(blocks))
    FolderFile(folder, "report.html").write_text(to_html(  # what a notebook shows
        blocks, f"Sweep {spec.name}", lambda name: FolderFile(folder, name).read_bytes(PNG_BYTES)))
    return folder / "README.md"


def resume_command(verb: str, folder: Path, storage: str | None = None) -> str:
    """The command that continues the study in `folder` (a sweep's or a design's), from any
    folder: its copy of the file names the study, --out the folder it lies in, and --storage
    the database server it ran on, if any, without the password (the README travels; the
    server's client takes it from PGPASSWORD or ~/.pgpass)."""
    own = quote(str(folder / f"{verb}.toml"))
    server = f" --storage {quote(shown(storage))}" if storage else ""
    return f"cnnlab {verb} {own} --out {quote(str(folder.parent))}{server} --resume"


def _ranked(study: Any, done: list, two: bool) -> list:
    if not done:
        return []
    if two:  # the front of the designs that fit the budget, smallest model first
        front = [t for t in study.best_trials if counted(t)]
        return sorted(front, key=lambda t: t.values[1])
    reverse = study.direction.name == "MAXIMIZE"
    return sorted(done, key=lambda t: t.values[0], reverse=reverse)


def _smallest_meeting(front: list, spec: SweepPlan) -> Any:
    """The smallest model on the front whose validation accuracy meets the target."""
    target = spec.val_target
    meeting = [t for t in front if target is None or t.user_attrs.get("val_acc", 0) >= target]
    return meeting[0] if meeting else None


def _why_picked(two: bool, meets: bool) -> str:
    if not two:
        return "the best trial"
    if meets:
        return "the smallest model on the front that meets the target on the validation split"
    return "the most accurate on the front (none met the target on the validation split)"


def _best_trial_blocks(trial: Any, folder: Path, data_dir: str | Path | None, which: str
                       ) -> list:
    run_dir = trial_run_dir(folder, trial.number)
    with contextlib.suppress(Exception):  # the link is a bonus; the table above says it all
        write_report(run_dir, data_dir=data_dir)
    relative = run_dir.relative_to(folder) if run_dir.is_relative_to(folder) else run_dir
    values = ", ".join(f"`{k}` = {v:.4g}" if isinstance(v, float) else f"`{k}` = {v}"
                       for k, v in trial.params.items())
    attrs = trial.user_attrs
    return [Heading("The pick"),
            Paragraph(f"Trial {trial.number}, {which}: {values}; {attrs['params']:,} "
                      f"parameters, val {attrs['val_acc']:.2f}%, test {attrs['test_acc']:.2f}%. "
                      f"Its run report: [{relative}/README.md]({relative}/README.md).")]


def _plots(study: Any, done: list, spec: SweepPlan, folder: Path) -> list:
    if not done:
        return []
    blocks = [Heading("Optimisation history")]
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.subplots()
    objective = OBJECTIVES[spec.objective]
    if objective.reaches_target:  # the designs that missed have no size to plot
        done_plotted = [t for t in done if t.values[0] < UNREACHED]
    else:
        done_plotted = done
    numbers = [t.number for t in done_plotted]
    first = [t.values[0] for t in done_plotted]
    axes.plot(numbers, first, "o", label="trial")
    running = []
    better = max if spec.directions[0] == "maximize" else min
    for value in first:
        running.append(value if not running else better(running[-1], value))
    axes.plot(numbers, running, "-", label="best so far")
    axes.set(xlabel="trial", ylabel=objective.axis)
    axes.legend()
    save_png(figure, FolderFile(folder, "plots/history.png"))
    blocks.append(Image("plots/history.png", "objective per trial"))
    if len(spec.directions) == 2 or objective.reaches_target:
        front = {t.number for t in _front(done)}
        figure = Figure(figsize=(7, 4.5), layout="constrained")
        axes = figure.subplots()
        for on_front, style, label in ((False, "o", "trial"), (True, "D", "Pareto front")):
            chosen = [t for t in done if (t.number in front) == on_front]
            axes.plot([t.user_attrs["params"] for t in chosen],
                      [t.user_attrs["val_acc"] for t in chosen], style, label=label)
        axes.set(xlabel="parameters", ylabel="val accuracy (%)", xscale="log")
        axes.legend()
        save_png(figure, FolderFile(folder, "plots/pareto.png"))
        blocks.append(Image("plots/pareto.png", "accuracy against parameters"))
    importances = _importances(study, done)
    if importances:
        blocks += [Heading("What mattered"),
                   Paragraph("Parameter importances (Optuna's default, PED-ANOVA) for the first "
                             "objective:"),
                   Table(["key", "importance"],
                         [[f"`{k}`", f"{v:.2f}"] for k, v in importances.items()])]
    return blocks


def _front(done: list) -> list:
    """The trials no other trial beats on both validation accuracy and size."""
    def beaten(t: Any) -> bool:
        acc, size = t.user_attrs["val_acc"], t.user_attrs["params"]
        return any(o.user_attrs["val_acc"] >= acc and o.user_attrs["params"] <= size
                   and (o.user_attrs["val_acc"], o.user_attrs["params"]) != (acc, size)
                   for o in done)

    return [t for t in done if not beaten(t)]


def _importances(study: Any, done: list) -> dict[str, float]:
    import optuna

    if len(done) < 3 or len(done[0].params) < 2:
        return {}
    sign = -1.0 if study.directions[0].name == "MAXIMIZE" else 1.0  # the evaluator minimises
    with warnings.catch_warnings():  # its notes on small studies are for its own users
        warnings.simplefilter("ignore", UserWarning)
        try:
            return optuna.importance.get_param_importances(
                study, target=lambda t: sign * t.values[0])
        except (RuntimeError, ValueError, ZeroDivisionError):
            return {}


def _row(trial: Any, keys: list[str]) -> list[str]:
    attrs = trial.user_attrs
    cells = [str(trial.number)]
    for key in keys:
        value = trial.params.get(key, "")
        cells.append(f"{value:.4g}" if isinstance(value, float) else str(value))
    return cells + [f"{attrs.get('params', 0):,}", f"{attrs.get('val_acc', 0):.2f}%",
                    f"{attrs.get('test_acc', 0):.2f}%", str(attrs.get("epochs", "")),
                    f"{attrs.get('seconds', 0):.0f}"]


def _range(dim: Any) -> str:
    if dim.kind == "choice":
        return "one of " + ", ".join(map(str, dim.values))
    step = f", step {dim.step}" if dim.kind == "int" and dim.step > 1 else ""
    return f"{dim.kind} [{dim.low:g}, {dim.high:g}]{step}"
