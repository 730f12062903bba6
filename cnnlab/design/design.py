"""`cnnlab design`: from a budget and a target to a confirmed recipe.

1. The design file becomes a sweep of the `compact_cnn` family (design_file.py), checked
   first: a space in which no sampled design fits the budget stops here, before any training.
2. The sweep searches it, steered by the validation split: designs over the budget are
   rejected untrained and fed back to the sampler as infeasible; designs are trained short
   first and the most promising go on, rung by rung, to the full length on two seeds
   (rungs.py); trials that fall behind every target-reaching trial are stopped early.
3. The smallest designs that reached the target on validation are retrained on the full
   training split, on seeds the search never used (confirm.py), smallest first; the first to
   meet the rule on every seed, with the margin to hold it on unseen seeds, is the pick.
4. The pick is written out as a recipe, beside a README (design_report.py).

Everything lands in `designs/<name>/`; a stopped design continues with `resume`.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.config import Recipe
from cnnlab.data import data_facts, load_recipe_data
from cnnlab.design.confirm import Confirmation, confirm
from cnnlab.design.design_file import DesignPlan, load_design, named_source
from cnnlab.design.design_report import write_design_report
from cnnlab.design.library import RECORD_FILE, seed_spread, shape_name, starting_points
from cnnlab.design.rungs import (
    SEED_KEY,
    RungResult,
    first_rung_hours,
    plan,
    ranking,
    successive_halving,
)
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.inspection.spec import last_epochs_phrase
from cnnlab.prepare import prepare
from cnnlab.run_folder.confined import FolderFile, refuse_links_within
from cnnlab.sweep.study import require_optuna
from cnnlab.sweep.sweep_file import SweepPlan, sweep_from_document
from cnnlab.training.trainer import Echo

NEAR_MISS = 0.3  # points of validation accuracy below the target still worth confirming
FEASIBILITY_SAMPLES = 48  # random designs tried against the budget before the search


@dataclass
class DesignResult:
    folder: Path
    study: Any  # the search's optuna.Study
    candidates: list[Confirmation]
    pick: Confirmation | None  # the smallest design confirmed on every seed
    recipe_path: Path | None  # the pick, as a recipe file
    rungs: list[RungResult] = dataclasses.field(default_factory=list)  # the search, by rung

    def _repr_markdown_(self) -> str:
        return (self.folder / "README.md").read_text(encoding="utf-8")


def design(
    design_file: str | Path,
    *,
    out_dir: str | Path = "designs",
    resume: bool = False,
    data_dir: str | Path | None = None,
    storage: str | None = None,
    workers: int = 1,
    progress: bool = True,
    echo: Echo | None = print,
) -> DesignResult:
    """Search, confirm and ship the smallest `compact_cnn` that meets the design file's spec.
    `storage`, `workers` and `resume` work as for `cnnlab.sweep`; `workers` local processes
    also share the confirmation's runs."""
    require_optuna()
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    spec = load_design(design_file)
    folder = Path(out_dir) / spec.name
    if folder.exists() and not resume:
        raise ConfigError(f"{folder} holds a design already: continue it with --resume, or "
                          "give the design another name (design.name)")
    if resume and not (folder / "design.toml").is_file():
        raise ConfigError(f"nothing to resume: {folder} holds no design")
    # checked whole before the folder is made, and said of the user's file in its words
    search = sweep_from_document(spec.sweep_document, Path(design_file), where="design")
    _some_design_fits(search, design_file)
    folder.mkdir(parents=True, exist_ok=True)
    refuse_links_within(folder, "design")  # a folder from someone else, as its README resumes
    FolderFile(folder, "design.toml").write_text(named_source(spec))
    say = echo or (lambda line: None)
    planned = plan(search.base.train.epochs, spec.rungs, spec.rung_gaps, search.val_target,
                   search.seed)
    shape = data_facts(search.base.data, data_dir)[0]
    starts = starting_points(search, shape, search.base.spec.max_params)
    if search.hours is not None:
        search = _first_rung_limited(search, planned, spec, len(starts), say)
    rungs = successive_halving(search, planned, spec.eta, folder, storage=storage,
                               workers=workers, data_dir=data_dir, progress=progress,
                               echo=echo, starts=starts)
    candidates = _candidates(rungs[-1], search, spec)
    if not candidates:
        say(f"no design reached {search.val_target}% on the validation split: widen the space, "
            "train longer, or lower the target")
    else:
        say(f"confirming up to {len(candidates)} designs on seeds "
            f"{', '.join(map(str, spec.seeds))} (the search used seed {search.base.train.seed})"
            f" in {' and '.join(spec.precisions)}")
    data = load_recipe_data(search.base.data, data_dir, progress=False) if candidates else None
    pick = None
    for candidate in candidates:
        # the library's spread, but the design's own entry: its runs are counted as its own
        candidate.library_spread = seed_spread(shape, besides=candidate.values)
        confirm(candidate, spec.seeds, folder / "confirm" / f"trial{candidate.trial}", data,
                echo, spec.precisions, workers=workers, data_dir=data_dir)
        if candidate.confirmed:
            pick = candidate
            break
    recipe_path = _ship(pick, folder, spec) if pick else None
    _record(folder, spec, search, shape, candidates, pick)
    readme = write_design_report(folder, spec, search, rungs, candidates, pick, recipe_path,
                                 starts, storage)
    say(f"design report: {readme}" + (f"; the pick: {recipe_path}" if recipe_path else ""))
    return DesignResult(folder, rungs[0].study, candidates, pick, recipe_path, rungs)


def _first_rung_limited(search: SweepPlan, planned: list, spec: DesignPlan, starts: int,
                        say: Echo) -> SweepPlan:
    """`design.hours` is the whole design's: the search's first rung samples for its share."""
    hours = first_rung_hours(search.hours, planned, search.trials, spec.eta,
                             len(spec.seeds) * len(spec.precisions), starts)
    say(f"of the design's {search.hours * 60:.0f} minutes, the first rung samples designs for "
        f"{hours * 60:.0f}; the later rungs and the confirmation take the rest")
    return search.with_sweep(hours=hours)


def _some_design_fits(search: SweepPlan, design_file: str | Path) -> None:
    """Try the space's smallest corner and random designs against the budget: a space with
    none that fits fails here, in seconds, instead of after the sweep rejected fifty."""
    rng = random.Random(search.seed)
    points = [{d.key: d.corners()[0] for d in search.space}]
    points += [{d.key: _random_value(d, rng) for d in search.space}
               for _ in range(FEASIBILITY_SAMPLES)]
    smallest = None
    for values in points:
        try:
            prepared = prepare(search.recipe_for(values), progress=False)
        except CnnlabError:
            continue  # a layout the family refuses: the sweep rejects it the same way
        if prepared.inspection.check.passed:
            return
        params = prepared.inspection.summary.total_params
        if smallest is None or params < smallest[0]:
            smallest = (params, prepared.inspection.check.failures[0].line())
    detail = f"; the smallest had {smallest[0]:,} parameters ({smallest[1]})" if smallest else ""
    raise ConfigError(f"{design_file}: none of {len(points)} designs sampled from the space "
                      f"meets the budget{detail}: widen the space or loosen the [spec]")


def _random_value(dim: Any, rng: random.Random) -> Any:
    if dim.kind == "choice":
        return rng.choice(dim.values)
    if dim.kind == "int":
        return rng.randrange(int(dim.low), int(dim.high) + 1, dim.step)
    return rng.uniform(dim.low, dim.high)


def _candidates(last: RungResult, search: SweepPlan, spec: DesignPlan) -> list[Confirmation]:
    """The smallest distinct designs whose figure at the last rung (the lowest over its seeds)
    reached the target on validation, smallest first; then, where fewer did, those that came
    within NEAR_MISS of it, closest first."""
    chosen = []
    ranked = ranking(last.study, last.rung)
    reached = [d for d in ranked if d[2] >= search.val_target]
    # Too few reached it: the closest within NEAR_MISS points are confirmed too (the target
    # on validation is an estimate; confirmation on the test split decides).
    near = sorted((d for d in ranked if search.val_target - NEAR_MISS <= d[2]
                   < search.val_target), key=lambda d: -d[2])
    for params, size, _ in [*reached, *near]:
        searched = search.recipe_for(params, name=spec.name)
        recipe = searched.with_values({"data.val_split": None})  # the whole training split
        trials = [t for t in last.study.get_trials(deepcopy=False)
                  if {k: v for k, v in t.params.items() if k != SEED_KEY} == params]
        chosen.append(Confirmation(min(t.number for t in trials), size, recipe, values=params,
                                   val_acc=[t.user_attrs["val_acc"] for t in trials
                                            if "val_acc" in t.user_attrs]))
        if len(chosen) == spec.candidates:
            break
    return chosen


def _record(folder: Path, spec: DesignPlan, search: SweepPlan, shape: tuple[int, int, int],
            candidates: list[Confirmation], pick: Confirmation | None) -> None:
    """design.json: what `cnnlab design-library` keeps of this study: every design that went
    to confirmation, with its runs, whether it met the rule or not (a near miss is where the
    next study of that budget should start)."""
    def confirmed(candidate: Confirmation) -> dict[str, Any]:
        last = candidate.recipe.spec.last_epochs
        summary = prepare(candidate.recipe, progress=False).inspection.summary
        return {"values": candidate.values, "params": candidate.params,
                "mult_adds": summary.mult_adds,
                "activation_bytes": summary.peak_activation_bytes,
                "val_acc": candidate.val_acc, "met": candidate.confirmed,
                "short_by": round(candidate.short_by, 3),
                **({"holds_unseen": round(candidate.holds_unseen, 3)}
                   if candidate.holds_unseen is not None else {}),
                "precisions": list(candidate.precisions),
                **({"bf16_slowdown": round(candidate.bf16_slowdown, 3)}
                   if candidate.bf16_slowdown is not None else {}),
                "runs": [{"seed": r.seed, "precision": r.precision,
                          "last_test_acc": r.last_accuracies(last),
                          **({"int8_test_acc": r.int8_acc} if r.int8_acc is not None else {})}
                         for r in candidate.runs]}

    tried = [c for c in candidates if c.runs]
    record: dict[str, Any] = {
        "name": spec.name, "dataset": search.base.data.dataset, "input_shape": shape_name(shape),
        "spec": search.base.to_dict()["spec"],
        "pick": confirmed(pick) if pick is not None else None,
        "candidates": [confirmed(c) for c in tried],
        "failed": [{"params": c.params, "seed": c.failed_on, "precision": c.failed_in,
                    "short_by": round(c.short_by, 3),
                    **({"holds_unseen": round(c.holds_unseen, 3)} if c.thin else {})}
                   for c in tried if not c.confirmed]}
    FolderFile(folder, RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n")


def _ship(pick: Confirmation, folder: Path, spec: DesignPlan) -> Path:
    distinct = list(dict.fromkeys(r.seed for r in pick.judged))
    seeds = f"seed{'s' if len(distinct) > 1 else ''} {', '.join(map(str, distinct))}"
    precisions = " and ".join(pick.precisions)
    header = (f"# Designed by `cnnlab design` ({folder / 'design.toml'}): the smallest design\n"
              f"# of its search that met [spec] on every confirmation run ({seeds}, in\n"
              f"# {precisions})"
              + (f", predicted to meet it on {pick.holds_unseen:.0%} of unseen seeds.\n"
                 if pick.holds_unseen is not None else ".\n")
              + (f"# It trains in fp32 everywhere: bf16 autocast took {pick.bf16_slowdown:.2f}x "
                 "fp32's time\n# per epoch for it (confirmation, first seed).\n"
                 if pick.bf16_dropped else "")
              + f"# The search and the per-seed results: {folder / 'README.md'}.\n")
    FolderFile(folder, f"{spec.name}.toml").write_text(header + _described(pick.recipe).to_toml())
    return folder / f"{spec.name}.toml"


def _described(recipe: Recipe) -> Recipe:
    rule = last_epochs_phrase(recipe.spec.last_epochs, recipe.train.epochs)
    return recipe.with_values({"description": f"compact_cnn designed for {recipe.data.dataset}: "
                                              f"{recipe.spec.min_test_acc}% {rule}"})
