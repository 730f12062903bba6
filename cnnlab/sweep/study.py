"""A sweep on an Optuna study: one folder `sweeps/<name>/` with the sweep file, the study
(an embedded SQLite file, or any database Optuna accepts, shared by workers on many machines:
storage.py), every trial's run folder (trial.py), and the sweep's README. The workers
(workers.py) run trials until the study holds the number asked for, counting the finished
ones (complete, pruned, rejected) and those running; failed ones are tried again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.models.model_object import ModelObject
from cnnlab.run_folder.confined import FolderFile, refuse_links_within
from cnnlab.sweep.progress import sweep_progress
from cnnlab.sweep.search_method import study_of
from cnnlab.sweep.storage import open_storage, shown
from cnnlab.sweep.sweep_file import SweepPlan, load_sweep
from cnnlab.sweep.sweep_report import write_sweep_report
from cnnlab.sweep.trial import counted
from cnnlab.sweep.workers import SweepPlace, max_untrained, run_workers, work
from cnnlab.training.trainer import Echo

HEARTBEAT_SECONDS = 10  # a running trial says it is alive this often


def sweep(
    sweep_file: str | Path | SweepPlan,
    *,
    out_dir: str | Path = "sweeps",
    storage: str | None = None,
    workers: int = 1,
    resume: bool = False,
    data_dir: str | Path | None = None,
    progress: bool = True,
    echo: Echo | None = print,
    heartbeat_seconds: int = HEARTBEAT_SECONDS,
    model: ModelObject | None = None,
) -> Any:
    """Run the sweep `sweep_file` (a file, or a SweepPlan already loaded and checked) until its
    study holds the trials it asks for; return the optuna.Study. `storage` (an SQLAlchemy
    URL, e.g. postgresql://user@host/db) replaces the sweep folder's SQLite file: any number
    of machines can run the same sweep against it.
    `workers` local processes share this machine. `resume` continues the sweep already in
    the folder (a fresh worker against a shared `storage` joins without it). `model`, an
    nn.Module class or builder function (say, from a notebook cell), replaces the recipe's
    model: each trial calls it with the searched `model.args`."""
    require_optuna()
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    if model is not None and (workers > 1 or isinstance(model, nn.Module)):
        raise ConfigError("a sweep over model= needs a class or builder function (called with "
                          "each trial's model.args) and one worker: worker processes cannot "
                          "import a notebook's classes; name a model file for several")
    spec = sweep_file if isinstance(sweep_file, SweepPlan) else load_sweep(sweep_file, model)
    folder = Path(out_dir) / spec.name
    if folder.exists() and not resume and storage is None:
        raise ConfigError(f"{folder} holds a sweep already: continue it with --resume, or "
                          "give the sweep another name (sweep.name)")
    if resume and not (folder / "sweep.toml").is_file():
        raise ConfigError(f"nothing to resume: {folder} holds no sweep")
    folder.mkdir(parents=True, exist_ok=True)
    refuse_links_within(folder, "sweep")  # a folder from someone else, as its README resumes
    url = storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    study = open_study(spec, url, heartbeat_seconds, create=True)  # refuses changed settings
    FolderFile(folder, "sweep.toml").write_text(spec.to_toml())
    say = echo or (lambda line: None)
    say(f"sweep {spec.name}: {spec.trials} trials, objective {spec.objective}, storage "
        f"{shown(url)}, {workers} worker{'s' if workers > 1 else ''}")
    place = SweepPlace(folder, url, None if data_dir is None else str(data_dir),
                       heartbeat_seconds)
    if workers == 1:
        with sweep_progress(study, spec, say, progress):
            work(spec, place, model)
    else:
        run_workers(spec, place, workers, study, say, progress)
    study = open_study(spec, url, heartbeat_seconds)
    trials = study.get_trials(deepcopy=False)
    if sum(not counted(t) for t in trials) >= max_untrained(spec):
        rejected = sum("rejected" in t.user_attrs for t in trials)
        say(f"stopped after {rejected} designs over the budget and "
            f"{sum('repeat_of' in t.user_attrs for t in trials)} repeats of designs already "
            "trained: the space holds few new designs that fit it; narrow it where designs "
            "broke the budget (the report lists them), widen it where they repeat")
    readme = write_sweep_report(folder, study, spec, data_dir, storage)
    say(f"sweep report: {readme}")
    return SweepResult(study, folder)


class SweepResult:
    """A finished sweep: its optuna.Study (whose attributes it answers: `.trials`,
    `.best_trials`, ...) and its folder; in Jupyter, its report (best trials, plots)."""

    def __init__(self, study: Any, folder: Path):
        self.study, self.folder = study, folder

    def __getattr__(self, name: str) -> Any:
        if name == "study":  # not set yet (an object being unpickled): no recursion
            raise AttributeError(name)
        return getattr(self.study, name)

    def _repr_html_(self) -> str:
        return (self.folder / "report.html").read_text(encoding="utf-8")


def open_study(spec: SweepPlan, url: str, heartbeat_seconds: int, create: bool = False) -> Any:
    """The sweep's optuna.Study on the database at `url` (created if `create`)."""
    return study_of(spec, open_storage(url, heartbeat_seconds), create=create)


def require_optuna() -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("sweeps need Optuna: pip install 'cnnlab[sweep]'") from None
