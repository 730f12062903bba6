"""The design's README, written by the tool: the pick (its layer and RF tables, its last
epochs on each confirmation seed), the candidates that failed confirmation and why, and the
search behind it (its own README holds the Pareto front and what mattered)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.design.confirm import UNSEEN_HOLDS, Confirmation, rule_met
from cnnlab.design.design_file import DesignPlan
from cnnlab.design.library import SPREAD_DOF
from cnnlab.design.rungs import RungResult, ranking
from cnnlab.inspection.spec import last_epochs_phrase
from cnnlab.prepare import prepare
from cnnlab.report.document import Code, Heading, Image, Paragraph, Table, to_markdown
from cnnlab.run_folder.confined import FolderFile
from cnnlab.sweep.sweep_file import SweepPlan
from cnnlab.sweep.sweep_report import resume_command
from cnnlab.sweep.trial import counted


def write_design_report(folder: Path, spec: DesignPlan, search: SweepPlan,
                        rungs: list[RungResult], candidates: list[Confirmation],
                        pick: Confirmation | None, recipe_path: Path | None,
                        starts: list[dict[str, Any]] = (), storage: str | None = None) -> Path:
    rule = search.base.spec
    tried = [c for c in candidates if c.runs]  # confirmation stops at the first pick
    trials = rungs[0].study.get_trials(deepcopy=False)
    rejected = sum("rejected" in t.user_attrs for t in trials)
    trained = [t for t in trials if counted(t) and "seconds" in t.user_attrs]
    pruned = sum("pruned_at_epoch" in t.user_attrs for t in trials)
    searched = [t for r in rungs for t in r.study.get_trials(deepcopy=False)
                if counted(t) and "seconds" in t.user_attrs]
    search_seconds = sum(t.user_attrs["seconds"] for t in searched)
    confirm_seconds = sum(row["seconds"] for c in candidates for r in c.runs for row in r.history)
    blocks: list = [
        Heading(f"Design {spec.name}", 1),
        Paragraph(f"The target: at least {rule.min_test_acc}% test accuracy "
                  f"{last_epochs_phrase(rule.last_epochs, search.base.train.epochs)}"
                  + (f" and at least {rule.min_int8_acc}% for its int8 model"
                     if rule.min_int8_acc is not None else "")
                  + f", {_on_seeds(spec.seeds)}, within the budget of `[spec]` "
                  f"({_budget(search)})."),
        Paragraph(f"The search trained {len(trained)} design{'' if len(trained) == 1 else 's'} "
                  "of `compact_cnn` on "
                  f"{search.base.data.dataset} ({pruned} of them stopped early as hopeless) and "
                  f"rejected {rejected} proposed designs over the budget without training them"
                  f"{_repeats(trials)}: "
                  f"{_duration(search_seconds)} of training, "
                  f"{_duration(_wall_seconds(searched))} from its first trial's start to its "
                  "last's end. Confirmation trained "
                  f"{_runs(sum(len(c.runs) for c in candidates))}: {_duration(confirm_seconds)}. "
                  f"The search's own report (Pareto front, what mattered): "
                  f"[{search.name}/README.md]({search.name}/README.md)."),
    ]
    if starts:
        blocks.append(Paragraph(
            f"It started from {len(starts)} design{'s' if len(starts) > 1 else ''}, scaled to "
            "the budget (the design library's nearest, cnnlab/design/library/, then the "
            "space's own base design, last): " + "; ".join(_widths(s) for s in starts) + "."))
    if spec.val_offset or spec.seed_margin:
        runs = "below" if spec.val_offset > 0 else "above"
        margin = (f"plus a seed margin of {spec.seed_margin:.2f}: {spec.seed_margin_source}"
                  if spec.seed_margin_source else
                  "with no seed margin: no design of this input shape was confirmed yet")
        blocks.append(Paragraph(
            f"The validation target, {search.val_target:.2f}%, is the spec's "
            f"{rule.min_test_acc}% {'less' if spec.val_offset > 0 else 'plus'} "
            f"{abs(spec.val_offset):.2f} (the points by which this input shape's held-out "
            f"training images run {runs} its test split), {margin}."))
    if len(rungs) > 1:
        blocks += [Heading("Rungs"),
                   Paragraph(f"Each design trained short first; 1/{spec.eta} of a rung went "
                             "on to the next, taken in turn from the smallest on course for "
                             "the rung's target and the most accurate. A short rung's target "
                             f"is the validation target ({search.val_target:.2f}%) "
                             + (("less the points such a rung leaves to the full training, as "
                                 "`benchmarks/rung_correlation.py` measured them for this input "
                                 "shape (" + ", ".join(f"{e} epochs: {g:.2f}" for e, g in
                                                       sorted(spec.rung_gaps.items())) + "). ")
                                if spec.rung_gaps else
                                "itself: no gap to the full training is measured for this "
                                "input shape. ")
                             + ("The order they rely on: Spearman's rank correlation of each "
                                "length's figure with the full training's, " + ", ".join(
                                    f"{r:.2f} at {e} epochs" for e, r in
                                    sorted(spec.rung_spearman.items())) + ". "
                                if spec.rung_spearman else "")
                             + "The last rung trains at full length on two seeds; a design's "
                             "figure there is the lower."
                             + _carried_sentence(rungs)),
                   Table(["rung", "epochs", "seeds", "on course at (val %)", "trainings",
                          "on course", "went on", "training", "wall clock"],
                         [_rung_row(n, r, n == len(rungs) - 1) for n, r in enumerate(rungs)])]
    if pick is not None:
        prepared = prepare(pick.recipe, progress=False)
        relative = recipe_path.relative_to(folder) if recipe_path else ""
        blocks += [
            Heading("The pick"),
            Paragraph(f"Trial {pick.trial}: **{pick.params:,} parameters**, shipped as the "
                      f"recipe [{relative}]({relative}): `cnnlab train {recipe_path}`."),
            Code(_arguments(pick)),
            Heading("Layers", 3), Paragraph(prepared.inspection.summary.to_markdown()),
            Heading("Receptive field", 3), Paragraph(prepared.inspection.field.to_markdown()),
            Heading("Budget", 3), Paragraph(prepared.inspection.check.to_markdown()),
        ]
    else:
        blocks += [Heading("No pick"), Paragraph(_no_pick(tried, searched=bool(candidates)))]
    pareto = folder / search.name / "plots" / "pareto.png"
    if pareto.is_file():
        blocks += [Heading("The search: accuracy against size"),
                   Image(f"{search.name}/plots/pareto.png", "validation accuracy against "
                         "parameters, each design the search trained")]
    if candidates:
        blocks += [Heading("Confirmation"),
                   Table(["trial", "params", "seed", "precision",
                          (f"last {rule.last_epochs} epochs (test %)" if rule.last_epochs > 1
                           else "last epoch (test %)"),
                          *(["int8 (test %)"] if rule.min_int8_acc is not None else []), "met"],
                         [_seed_row(c, r, rule.last_epochs, rule.min_int8_acc is not None)
                          for c in candidates for r in c.runs])]
        failed = [c for c in tried if not c.confirmed]
        blocks += [Paragraph(f"Trial {c.trial} trained {c.bf16_slowdown:.2f}x as long per epoch "
                             f"in bf16 autocast as in fp32 on seed {c.runs[0].seed}: bf16 "
                             "buys it no speed, so its recipe trains in fp32 on "
                             "every machine (`train.amp = \"off\"`) and its rule is judged in "
                             "fp32 alone.")
                   for c in tried if c.bf16_dropped]
        blocks.append(Paragraph(
            f"{len(tried)} of {len(candidates)} candidates went to confirmation (it stops at "
            f"the first that meets the rule); {len(failed)} failed"
            + (": " + "; ".join(
                _failure(c) for c in failed) if failed else "") + "."))
        predicted = pick or next((c for c in tried if c.thin), None)
        if predicted is not None:
            blocks.append(Paragraph(_unseen_sentence(predicted)))
    blocks += [Heading("Reproduce"), Code(resume_command("design", folder, storage))]
    FolderFile(folder, "README.md").write_text(to_markdown(blocks))
    return folder / "README.md"


def _rung_row(number: int, result: RungResult, last: bool) -> list[str]:
    trained = [t for t in result.study.get_trials(deepcopy=False)
               if counted(t) and "seconds" in t.user_attrs]
    on_course = sum(figure >= result.rung.target
                    for _, _, figure in ranking(result.study, result.rung))
    return [str(number), str(result.rung.epochs), ", ".join(map(str, result.rung.seeds)),
            f"{result.rung.target:.2f}", str(len(trained)), str(on_course),
            "-" if last else str(len(result.promoted))
            + (f" + {len(result.carried)} to the last" if result.carried else ""),
            _duration(sum(t.user_attrs["seconds"] for t in trained)),
            _duration(_wall_seconds(trained))]


def _widths(design: dict) -> str:
    return "widths " + ", ".join(str(v) for k, v in sorted(design.items()) if ".widths." in k)


def _carried_sentence(rungs: list[RungResult]) -> str:
    carried = rungs[0].carried
    if not carried:
        return ""
    return (f" The starts on course at rung 0 ({len(carried)}: "
        + "; ".join(_widths(d) for d in carried) + ") went on to the last rung whatever the "
        "rungs between made of them: earlier studies judged them at full length, and a short "
        "rung favours the designs that learn fast.")


def _wall_seconds(trials: list) -> float:
    """From the first of `trials` to start to the last to end: what `workers` trainings side
    by side took (their summed training time is up to `workers` times more)."""
    spans = [(t.datetime_start, t.datetime_complete) for t in trials
             if t.datetime_start is not None and t.datetime_complete is not None]
    if not spans:
        return 0.0
    return (max(end for _, end in spans) - min(start for start, _ in spans)).total_seconds()


def _on_seeds(seeds: tuple[int, ...]) -> str:
    return (f"on seed {seeds[0]}" if len(seeds) == 1
            else f"on every one of seeds {', '.join(map(str, seeds))}")


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} hours" if seconds >= 3600 else f"{seconds / 60:.1f} minutes"


def _budget(search: SweepPlan) -> str:
    spec = search.base.spec
    parts = [f"{key.replace('_', ' ')} {value:,}" for key, value in
             (("max_params", spec.max_params), ("max_epochs", spec.max_epochs),
              ("max_mult_adds", spec.max_mult_adds),
              ("max_activation_bytes", spec.max_activation_bytes),
              ("max_flash_bytes", spec.max_flash_bytes), ("max_ram_bytes", spec.max_ram_bytes),
              ("min_rf", spec.min_rf))
             if value is not None]
    parts += [f"requires {', '.join(spec.require)}"] if spec.require else []
    parts += [f"forbids {', '.join(spec.forbid)}"] if spec.forbid else []
    return "; ".join(parts) or "none"


def _arguments(pick: Confirmation) -> str:
    args = pick.recipe.model.args
    return "\n".join(f"{key} = {value!r}" for key, value in args.items())


def _seed_row(candidate: Confirmation, seed_run: Any, last: int, int8: bool) -> list[str]:
    accuracies = ", ".join(f"{a:.2f}" for a in seed_run.last_accuracies(last))
    # each run by its own figures: runs trained side by side can both miss
    met = "✓" if rule_met(seed_run.history, candidate.recipe, seed_run.int8_acc) else "✗"
    if seed_run.precision not in candidate.precisions:
        met += " (not judged: it trains in fp32)"
    int8_cell = ([f"{seed_run.int8_acc:.2f}" if seed_run.int8_acc is not None else "-"]
                 if int8 else [])
    return [str(candidate.trial), f"{candidate.params:,}", str(seed_run.seed),
            seed_run.precision, accuracies, *int8_cell, met]


def _no_pick(tried: list[Confirmation], searched: bool) -> str:
    """Why a study ended without a pick, and the design it teaches the library instead."""
    # a design that met every run yet was turned away for unseen seeds did not miss one
    verdict = ("No design was kept" if any(c.thin for c in tried)
               else "No design met the rule on every confirmation seed")
    if not searched:
        verdict += " (none reached the target on the validation split in the search)"
    nearest = min(tried, key=lambda c: c.short_by, default=None)
    if nearest is None:
        return verdict + "."
    return (f"{verdict}. The nearest: {_failure(nearest)}; it is what `cnnlab design-library` "
            "keeps of this study for the next one to start from.")


def _failure(candidate: Confirmation) -> str:
    if candidate.thin:
        return (f"trial {candidate.trial} ({candidate.params:,} parameters) met the rule on "
                f"every run, {-candidate.short_by:.2f} points above the target at its lowest, "
                f"but is predicted to meet it on {candidate.holds_unseen:.0%} of unseen seeds")
    return (f"trial {candidate.trial} ({candidate.params:,} parameters) missed the rule on "
            f"seed {candidate.failed_on} in {candidate.failed_in}, by {candidate.short_by:.2f} "
            "points")


def _unseen_sentence(candidate: Confirmation) -> str:
    """How the prediction for unseen seeds was made, on the pick (or a design it turned away)."""
    spread, dof = candidate.spread
    if candidate.holds_unseen is None:
        return (f"No share of unseen seeds was predicted: the spread between one design's "
                f"runs rests on {dof} degrees of freedom here (the design library's designs "
                f"for this input shape and trial {candidate.trial}'s own runs), under "
                f"{SPREAD_DOF}; meeting the rule on every run sufficed.")
    return (f"A design is kept where it is predicted to meet the rule on {UNSEEN_HOLDS:.0%} "
            "of the seeds it was not confirmed on: a new run falls about the mean of its "
            f"judged runs with the spread between one design's runs, {spread:.3f} points over "
            f"{dof} degrees of freedom (the design library's designs for this input shape and "
            f"this design's own runs). Trial {candidate.trial}: {candidate.mean_margin:.3f} points "
            f"above the target on average over {_runs(len(candidate.margins))}, predicted to meet "
            f"it on {candidate.holds_unseen:.1%} of unseen seeds ({UNSEEN_HOLDS:.0%} asks "
            f"{candidate.margin_needed:.3f} above on average).")


def _runs(count: int) -> str:
    return f"{count} run{'' if count == 1 else 's'}"


def _repeats(trials: list) -> str:
    repeats = sum("repeat_of" in t.user_attrs for t in trials)
    return (f"; {repeats} proposals repeated a design already trained and took its result "
            "untrained" if repeats else "")
