"""The processes that run a sweep's trials. Each asks the study for a trial, runs it, tells
the result, and goes on until the study holds the trials asked for. Local workers share the
CPU cores (two trainings with all threads each run 10x slower on 2 cores) or take a GPU each.
A worker that dies loses only its current trial: its heartbeat stops, and the next worker to
look marks the trial failed and runs a replacement: a sampled trial is replaced by a new
sample, an enqueued one (a design promoted into a rung) by itself."""

from __future__ import annotations

import contextlib
import fcntl
import math
import multiprocessing
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from cnnlab.data import load_recipe_data
from cnnlab.models.model_object import ModelObject
from cnnlab.sweep.progress import every, sweep_progress
from cnnlab.sweep.search_method import study_of
from cnnlab.sweep.storage import open_storage
from cnnlab.sweep.sweep_file import SweepPlan, load_sweep
from cnnlab.sweep.trial import TRIALS_FOLDER, Rejected, Repeated, counted, run_trial
from cnnlab.training.trainer import Echo


@dataclass(frozen=True)
class SweepPlace:
    """Where a sweep's pieces are: its folder (sweep.toml, trials/), its study's database,
    the data root, and how often a running trial must say it is alive."""

    folder: Path
    url: str
    data_dir: str | None
    heartbeat_seconds: int


def work(spec: SweepPlan, place: SweepPlace, model: ModelObject | None = None,
         worker: int = 0) -> None:
    """One worker: ask for trials and run them until the study holds enough, or the sweep's
    hours (counted from this worker's start) are spent (with `model` in place of the
    recipe's, in this process)."""
    import optuna

    storage = open_storage(place.url, place.heartbeat_seconds)
    study = study_of(spec, storage, worker=worker)
    data = load_recipe_data(spec.base.data, place.data_dir, progress=False)  # once per worker
    deadline = math.inf if spec.hours is None else time.monotonic() + spec.hours * 3600
    while True:
        with _counting_lock(place.folder):
            optuna.storages.fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            if retry_enqueued(study, trials):
                trials = study.get_trials(deepcopy=False)
            active = [t for t in trials if t.state in _counted_states() and counted(t)]
            untrained = sum(not counted(t) for t in trials)
            running = [t for t in active if t.state == optuna.trial.TrialState.RUNNING]
            if untrained >= max_untrained(spec) and not running:
                return  # the space proposes little that fits and is new: the report says so
            # an enqueued trial (a design promoted into a rung: design/rungs.py) is asked
            # for first, and counts from the start
            waiting = any(t.state == optuna.trial.TrialState.WAITING for t in active)
            wanted = (len(active) < spec.trials or waiting) and time.monotonic() < deadline
            trial = study.ask() if wanted else None
        if trial is None:
            if not running:
                return
            # Enough trials, but some still run: wait, in case their worker died (its trial
            # then fails once its heartbeat is stale, and this worker runs a replacement).
            time.sleep(place.heartbeat_seconds)
            continue
        trial_id = storage.get_trial_id_from_study_id_trial_number(
            storage.get_study_id_from_name(spec.name), trial.number)
        with every(place.heartbeat_seconds, partial(storage.record_heartbeat, trial_id)):
            try:
                values = run_trial(spec, trial, data, place.folder / TRIALS_FOLDER, model)
            except Rejected as rejected_design:  # infeasible: the sampler learns from it
                if spec.constraints:
                    study.tell(trial, rejected_design.worst)
                else:  # failed: the sampler ignores it
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            except Repeated as repeat:
                if repeat.twin.state == optuna.trial.TrialState.PRUNED:
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                else:
                    study.tell(trial, repeat.twin.values)
                continue
            except optuna.TrialPruned:
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                continue
            except Exception as exc:
                trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:500])
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
        study.tell(trial, values)


def retry_enqueued(study: Any, trials: list) -> bool:
    """Enqueue again each enqueued trial of `trials` (the study's, just read) that failed (its
    worker killed, or stopped by an error), once: a design promoted into a rung is trained,
    not replaced by whatever the sampler proposes next. A design rejected over the budget is
    not retried. Whether any was enqueued."""
    from optuna.trial import TrialState

    pending = [t.system_attrs["fixed_params"] for t in trials
               if "fixed_params" in t.system_attrs and t.state != TrialState.FAIL]
    enqueued = False
    for trial in trials:
        fixed = trial.system_attrs.get("fixed_params")
        if (trial.state == TrialState.FAIL and fixed is not None and fixed not in pending
                and "rejected" not in trial.user_attrs):
            study.enqueue_trial(fixed)
            pending.append(fixed)
            enqueued = True
    return enqueued


def max_untrained(spec: SweepPlan) -> int:
    """Designs over the budget, or already trained, that a sweep proposes before it gives up
    on finding the trials it asks for (each costs a trace at most, not a training)."""
    return max(50, 10 * spec.trials)


def run_workers(spec: SweepPlan, place: SweepPlace, workers: int, study: Any, say: Echo,
                progress: bool) -> None:
    """`workers` local processes, each with its share of the cores or a GPU of its own."""
    import torch

    threads = threads_per_worker(workers)
    gpus = torch.cuda.device_count()
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker_main, daemon=False,
                                 args=(place, i, threads, i % gpus if gpus > 1 else None))
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


def threads_per_worker(workers: int) -> int:
    """Each of `workers` local processes' share of this machine's cores (at least one)."""
    return max(1, (os.cpu_count() or 1) // workers)


def _worker_main(place: SweepPlace, worker: int, threads: int, gpu: int | None) -> None:
    """Entry point of a worker process (spawned: a fresh interpreter, torch not yet loaded)."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    import torch

    torch.set_num_threads(threads)
    work(load_sweep(place.folder / "sweep.toml"), place, worker=worker)


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
