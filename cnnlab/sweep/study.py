"""A sweep on an Optuna study: one folder `sweeps/<name>/` with the sweep file, the study
(an embedded SQLite file, or any database Optuna accepts, shared by workers on many machines),
every trial's run folder, and the sweep's README.

Local workers are processes, each with its share of the CPU cores (two trainings with all
threads each run 10x slower on 2 cores) or its own GPU. A worker that dies loses only its
current trial: its heartbeat stops, and the next worker to start marks the trial failed and
goes on. The number of trials asked for counts the finished ones (complete, pruned, rejected)
and those running; failed ones are tried again.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnlab.data import Dataset, load_recipe_data
from cnnlab.errors import ConfigError
from cnnlab.sweep.progress import every, sweep_progress
from cnnlab.sweep.sweep_file import SweepSpec, load_sweep
from cnnlab.sweep.sweep_report import write_sweep_report
from cnnlab.sweep.trial import run_trial
from cnnlab.train.trainer import Echo

HEARTBEAT_SECONDS = 10  # a running trial says it is alive this often


def sweep(
    sweep_file: str | Path,
    *,
    out_dir: str | Path = "sweeps",
    storage: str | None = None,
    workers: int = 1,
    resume: bool = False,
    data_dir: str | Path | None = None,
    progress: bool = True,
    echo: Echo | None = print,
    heartbeat_seconds: int = HEARTBEAT_SECONDS,
) -> Any:
    """Run the sweep `sweep_file` until its study holds the trials it asks for; return the
    optuna.Study. `storage` (an SQLAlchemy URL, e.g. postgresql://user@host/db) replaces the
    sweep folder's SQLite file: any number of machines can run the same sweep against it.
    `workers` local processes share this machine. `resume` continues the sweep already in
    the folder (a fresh worker against a shared `storage` joins without it)."""
    _require_optuna()
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    spec = load_sweep(sweep_file)
    folder = Path(out_dir) / spec.name
    if folder.exists() and not resume and storage is None:
        raise ConfigError(f"{folder} holds a sweep already: continue it with --resume, or "
                          "give the sweep another name (sweep.name)")
    if resume and not (folder / "sweep.toml").is_file():
        raise ConfigError(f"nothing to resume: {folder} holds no sweep")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sweep.toml").write_text(spec.source, encoding="utf-8")
    url = storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    study = open_study(spec, url, heartbeat_seconds, create=True)
    say = echo or (lambda line: None)
    say(f"sweep {spec.name}: {spec.trials} trials, objective {spec.objective}, storage "
        f"{_shown(url)}, {workers} worker{'s' if workers > 1 else ''}")
    if workers == 1:
        with sweep_progress(study, spec, say, progress):
            work(spec, url, folder, data_dir, heartbeat_seconds)
    else:
        _run_workers(spec, url, folder, data_dir, heartbeat_seconds, workers, say, progress,
                     study)
    study = open_study(spec, url, heartbeat_seconds)
    readme = write_sweep_report(folder, study, spec, data_dir)
    say(f"sweep report: {readme}")
    return study


def open_study(spec: SweepSpec, url: str, heartbeat_seconds: int, create: bool = False) -> Any:
    """The sweep's optuna.Study on the database at `url` (created if `create`)."""
    return _open(spec, open_storage(url, heartbeat_seconds), create)


def open_storage(url: str, heartbeat_seconds: int) -> Any:
    """An optuna RDBStorage whose running trials must beat every `heartbeat_seconds`."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats are experimental in Optuna, and it expects them from study.optimize; cnnlab
    # asks and tells itself (to start exactly the trials asked for) and beats on its own.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
    with _database_errors(url):
        return optuna.storages.RDBStorage(
            with_driver(url), heartbeat_interval=heartbeat_seconds,
            grace_period=3 * heartbeat_seconds, engine_kwargs={"pool_pre_ping": True})


def with_driver(url: str) -> str:
    """`url` naming the PostgreSQL driver cnnlab installs (psycopg 3) when it names none:
    SQLAlchemy's default for a bare postgresql:// is psycopg2 before 2.1 and psycopg after."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg://{rest}" if sep and scheme in ("postgresql", "postgres") else url


def _open(spec: SweepSpec, storage: Any, create: bool) -> Any:
    import optuna

    with _database_errors(storage.url):
        if not create:
            return optuna.load_study(study_name=spec.name, storage=storage)
        return optuna.create_study(
            study_name=spec.name, storage=storage, directions=spec.directions,
            sampler=_sampler(spec), pruner=_pruner(spec), load_if_exists=True)


@contextlib.contextmanager
def _database_errors(url: str) -> Iterator[None]:
    import sqlalchemy.exc

    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot open the sweep's database {_shown(url)}: {first}") from None


def work(spec: SweepSpec, url: str, folder: Path, data_dir: str | Path | None,
         heartbeat_seconds: int) -> None:
    """One worker: ask for trials and run them until the study holds enough."""
    import optuna

    storage = open_storage(url, heartbeat_seconds)
    study = _open(spec, storage, create=False)
    data = _load_data(spec, data_dir)
    while True:
        with _counting_lock(folder):
            optuna.storages.fail_stale_trials(study)
            active = study.get_trials(deepcopy=False, states=_counted_states())
            running = [t for t in active if t.state == optuna.trial.TrialState.RUNNING]
            trial = study.ask() if len(active) < spec.trials else None
        if trial is None:
            if not running:
                return
            # Enough trials, but some still run: wait, in case their worker died (its trial
            # then fails once its heartbeat is stale, and this worker runs a replacement).
            time.sleep(heartbeat_seconds)
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(spec.name), trial.number)
        with _heartbeat(storage, trial_id, heartbeat_seconds):
            try:
                values = run_trial(spec, trial, data, folder / "trials")
            except optuna.TrialPruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            except Exception as exc:
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
        study.tell(trial, values)


def _load_data(spec: SweepSpec, data_dir: str | Path | None) -> Dataset:
    """The base recipe's data, once per worker; each trial limits and splits it as its
    recipe says."""
    return load_recipe_data(spec.base.data, data_dir, progress=False)


def _worker_main(spec_path: str, url: str, folder: str, data_dir: str | None,
                 heartbeat_seconds: int, threads: int, gpu: int | None) -> None:
    """Entry point of a worker process (spawned: a fresh interpreter, torch not yet loaded)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    import torch

    torch.set_num_threads(threads)
    work(load_sweep(spec_path), url, Path(folder), data_dir, heartbeat_seconds)


def _run_workers(spec: SweepSpec, url: str, folder: Path, data_dir: str | Path | None,
                 heartbeat_seconds: int, workers: int, say: Echo, progress: bool,
                 study: Any) -> None:
    import torch

    threads = max(1, (os.cpu_count() or 1) // workers)
    gpus = torch.cuda.device_count()
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker_main, daemon=False, args=(
            str(folder / "sweep.toml"), url, str(folder), None if data_dir is None
            else str(data_dir), heartbeat_seconds, threads, i % gpus if gpus > 1 else None))
        for i in range(workers)]
    say(f"{workers} workers, {threads} thread{'s' if threads > 1 else ''} each"
        + (f", GPUs 0-{gpus - 1}" if gpus > 1 else ""))
    with sweep_progress(study, spec, say, progress):
        for process in processes:
            process.start()
        for process in processes:
            process.join()
    failed = [p.exitcode for p in processes if p.exitcode]
    if failed:
        say(f"{len(failed)} worker(s) stopped with an error; the study keeps every finished "
            "trial: continue with --resume")


def _counted_states() -> tuple:
    """The trial states that count toward the sweep's total: all but failed."""
    from optuna.trial import TrialState

    return (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


@contextlib.contextmanager
def _counting_lock(folder: Path) -> Iterator[None]:
    """Local workers count the trials and ask for a new one as one step, so together they
    start exactly as many as the sweep asks for."""
    with open(folder / ".ask.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _heartbeat(storage: Any, trial_id: int, seconds: int) -> Iterator[None]:
    """Record that the trial is alive every `seconds` while the block runs."""
    with every(seconds, lambda: storage.record_heartbeat(trial_id)):
        yield


def _sampler(spec: SweepSpec) -> Any:
    import optuna

    if len(spec.directions) > 1:
        return optuna.samplers.NSGAIISampler(seed=spec.seed)
    return optuna.samplers.TPESampler(seed=spec.seed)


def _pruner(spec: SweepSpec) -> Any:
    import optuna

    if spec.pruner == "none" or len(spec.directions) > 1:
        return optuna.pruners.NopPruner()
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1,
                                              max_resource=spec.base.train.epochs)
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)


def _shown(url: str) -> str:
    """The URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        return f"{scheme}://{credentials.split(':')[0]}@{host}"
    return url


def _require_optuna() -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("sweeps need Optuna: pip install 'cnnlab[sweep]'") from None

