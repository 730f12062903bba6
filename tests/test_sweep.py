"""Sweeps on real MNIST slices: trials are run folders, the budget rejects before training,
workers share a study, a killed worker loses only its trial, and a PostgreSQL server works."""

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.run_folder import RunFolder
from cnnlab.sweep import load_sweep, sweep
from cnnlab.sweep.trial import counted
from cnnlab.sweep.workers import max_untrained, retry_enqueued
from cnnlab.training.trainer import Trainer
from tests.conftest import (
    kill_cnnlab_when,
    run_reproduce_line,
    separable_dataset,
    skip_unless_required,
)

optuna = pytest.importorskip("optuna")

# A real slice: 600 training images (200 of them held out for validation), 300 test images,
# one or two epochs of a narrow mnist_pool: about a second a trial.
SLICE = ['"train.epochs=1"', '"data.train_limit=600"', '"data.test_limit=300"',
         '"data.batch_size=64"', '"train.device=\\"cpu\\""', '"train.ema_decay=0.0"']


def _sweep_file(folder: Path, name="small", trials=4, objective="accuracy_and_params",
                space='"schedule.max_lr" = { log = [0.02, 0.3] }\n'
                      '"model.args.width" = { int = [4, 8], step = 4 }\n',
                extra="", recipe="mnist-s5-10ep") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f'[sweep]\nrecipe = "{recipe}"\nset = [{", ".join(SLICE)}]\n'
                    f'trials = {trials}\nobjective = "{objective}"\nval_split = 200\n{extra}'
                    f"[sweep.space]\n{space}")
    return path


@pytest.mark.slow
def test_a_small_sweep_finishes_with_run_folders_and_a_readme(real_data_root, tmp_path):
    study = sweep(_sweep_file(tmp_path), out_dir=tmp_path / "sweeps", data_dir=real_data_root,
                  progress=False, echo=None)
    trials = study.trials
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    folder = tmp_path / "sweeps" / "small"
    for trial in trials:
        run_dir = folder / "trials" / str(trial.number)
        assert (run_dir / "config.toml").is_file() and (run_dir / "history.jsonl").is_file()
        assert (run_dir / "checkpoints" / "last.pt").is_file()
        # The objective is the validation accuracy and the parameter count, as recorded.
        assert trial.values[0] == trial.user_attrs["val_acc"]
        assert trial.values[1] == trial.user_attrs["params"]
    readme = (folder / "README.md").read_text()
    assert "## Pareto front: accuracy against parameters" in readme
    assert "(**val**)" in readme and "(**test**)" in readme
    assert (folder / "plots" / "pareto.png").stat().st_size > 5000
    pick = readme.split("## The pick")[1]
    picked = int(pick.split("Trial ")[1].split(",")[0])
    assert (folder / "trials" / str(picked) / "README.md").is_file()  # its own run report
    shown = study._repr_html_()  # in a notebook: the same report, its plots inline
    assert "Pareto front: accuracy against parameters" in shown and "base64," in shown
    assert study.folder == folder and study.best_trials  # the study's own attributes too
    # the README's own line resumes this study, from any folder: it has nothing left to train
    assert run_reproduce_line(folder / "README.md", real_data_root, tmp_path / "elsewhere") == 0
    assert len(optuna.load_study(study_name="small", storage=f"sqlite:///{folder / 'study.db'}")
               .trials) == 4


@pytest.mark.slow
def test_a_trial_over_the_budget_is_rejected_without_training(real_data_root, tmp_path,
                                                              monkeypatch):
    # mnist-s5-10ep's budget is 20,000 parameters: width 64 (about 260k) breaks it.
    space = ('"model.args.width" = { choice = [64] }\n'
             '"schedule.max_lr" = { log = [0.02, 0.3] }\n')
    path = _sweep_file(tmp_path, trials=3, objective="accuracy", space=space)
    trained = []
    monkeypatch.setattr(Trainer, "fit", lambda self, *args: trained.append(self))
    study = sweep(path, out_dir=tmp_path / "sweeps", data_dir=real_data_root, progress=False,
                  echo=None)
    assert not trained
    rejected = [t for t in study.trials if "rejected" in t.user_attrs]
    # no design in this space fits: it gives up after max_untrained proposals, not never
    assert len(rejected) == len(study.trials) == max_untrained(load_sweep(path))
    readme = (tmp_path / "sweeps/small/README.md").read_text()
    assert "## Rejected by the budget" in readme and "0 trials trained" in readme
    for trial in rejected:
        assert trial.params["model.args.width"] == 64
        assert "parameters <= 20,000" in trial.user_attrs["rejected"]
        # told to the study as infeasible, for the sampler's constraints
        assert trial.state.name == "COMPLETE" and trial.constraints == {"budget": 1.0}
        assert not (tmp_path / "sweeps" / "small" / "trials" / str(trial.number)).exists()


@pytest.mark.slow
def test_trials_count_the_designs_trained_and_rejected_ones_are_reported_beside(
        real_data_root, tmp_path):
    space = ('"model.args.width" = { choice = [4, 64] }\n'  # 64 breaks the 20k budget
             '"schedule.max_lr" = { log = [0.02, 0.3] }\n')
    path = _sweep_file(tmp_path, trials=3, objective="accuracy", space=space)
    study = sweep(path, out_dir=tmp_path / "sweeps", data_dir=real_data_root, progress=False,
                  echo=None)
    trained = [t for t in study.trials if counted(t)]
    rejected = [t for t in study.trials if "rejected" in t.user_attrs]
    assert len(trained) == 3 and all(t.params["model.args.width"] == 4 for t in trained)
    assert all(t.constraints == {"budget": 0.0} for t in trained)
    assert all(t.params["model.args.width"] == 64 for t in rejected)
    readme = (tmp_path / "sweeps/small/README.md").read_text()
    assert "3 trials trained" in readme and f"{len(rejected)} designs proposed over" in readme


@pytest.mark.slow
def test_a_design_proposed_again_is_not_trained_again(real_data_root, tmp_path):
    # two designs in all, three trials asked: the sampler can only repeat itself after two
    path = _sweep_file(tmp_path, trials=3, objective="accuracy",
                       space='"model.args.width" = { choice = [4, 8] }\n')
    lines = []
    study = sweep(path, out_dir=tmp_path / "sweeps", data_dir=real_data_root, progress=False,
                  echo=lines.append)
    trained = [t for t in study.trials if "repeat_of" not in t.user_attrs]
    repeats = [t for t in study.trials if "repeat_of" in t.user_attrs]
    assert sorted(t.params["model.args.width"] for t in trained) == [4, 8]
    assert len(repeats) == max_untrained(load_sweep(path))  # then it gives up, and says why
    for repeat in repeats:
        twin = study.trials[repeat.user_attrs["repeat_of"]]
        assert twin in trained and twin.params == repeat.params and twin.values == repeat.values
    runs = sorted(p.name for p in (tmp_path / "sweeps/small/trials").iterdir())
    assert runs == sorted(str(t.number) for t in trained)
    assert any("repeats of designs already trained" in line for line in lines)
    readme = (tmp_path / "sweeps/small/README.md").read_text()
    assert "2 trials trained" in readme and f"{len(repeats)} proposals of a design" in readme

@pytest.mark.slow
def test_two_workers_share_one_study_and_start_exactly_the_trials_asked(real_data_root,
                                                                        tmp_path):
    study = sweep(_sweep_file(tmp_path, trials=5, objective="accuracy"),
                  out_dir=tmp_path / "sweeps", data_dir=real_data_root, workers=2,
                  progress=False, echo=None)
    numbers = sorted(t.number for t in study.trials)
    assert numbers == [0, 1, 2, 3, 4]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    runs = sorted(p.name for p in (tmp_path / "sweeps" / "small" / "trials").iterdir())
    completed = sorted(str(t.number) for t in study.trials if "val_acc" in t.user_attrs)
    assert set(completed) <= set(runs)


def _long_sweep(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A sweep whose first trial trains long enough to be stopped mid-run: its file, its
    --out folder, and the first trial's history (written after each epoch)."""
    path = _sweep_file(tmp_path, trials=3, objective="accuracy",
                       space='"schedule.max_lr" = { log = [0.02, 0.3] }\n')
    path.write_text(path.read_text().replace('"train.epochs=1"', '"train.epochs=15"'))
    out = tmp_path / "sweeps"
    return path, out, out / "small" / "trials" / "0" / "history.jsonl"


@pytest.mark.slow
def test_a_killed_worker_loses_only_its_trial_and_resume_completes(real_data_root, tmp_path):
    path, out, history = _long_sweep(tmp_path)
    kill_cnnlab_when(["sweep", str(path), "--out", str(out), "--no-progress"], real_data_root,
                     lambda: history.is_file() and bool(history.read_text().strip()),  # epoch 1
                     120)
    # A fresh worker with a short heartbeat grace marks the dead trial failed and finishes.
    study = sweep(path, out_dir=out, resume=True, data_dir=real_data_root, progress=False,
                  echo=None, heartbeat_seconds=1)
    states = [t.state.name for t in study.trials]
    assert states[0] == "FAIL" and states.count("COMPLETE") == 3 and len(states) == 4


def test_a_failed_enqueued_trial_is_asked_again_and_a_sampled_one_is_not():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    distribution = optuna.distributions.IntDistribution(1, 100)
    study.enqueue_trial({"width": 7})  # a promoted design
    study.enqueue_trial({"width": 9})  # one the budget rejects
    killed = study.ask({"width": distribution})
    rejected = study.ask({"width": distribution})
    rejected.set_user_attr("rejected", "over max_params")
    sampled = study.ask({"width": distribution})
    for trial in (killed, rejected, sampled):
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    assert retry_enqueued(study, study.get_trials(deepcopy=False))
    # a second look enqueues nothing more
    assert not retry_enqueued(study, study.get_trials(deepcopy=False))
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.system_attrs["fixed_params"] for t in waiting] == [{"width": 7}]
    assert study.ask({"width": distribution}).params == {"width": 7}


@pytest.mark.slow
def test_a_stopped_sweep_says_how_to_continue_it(real_data_root, tmp_path):
    path, out, history = _long_sweep(tmp_path)
    said = kill_cnnlab_when(["sweep", str(path), "--out", str(out), "--no-progress"],
                            real_data_root, lambda: history.is_file(), 120, signal.SIGTERM)
    # the sweep's own resume, not the trial's run folder (a lone `train --resume` of it
    # would leave the study with a trial it never hears the end of)
    assert said.strip().splitlines()[-1] == (
        f"cnnlab: stopped by SIGTERM; continue with: cnnlab sweep {path} --out {out} --resume")


def test_bad_sweep_files_are_one_line_and_exit_2(tmp_path, capsys):
    cases = {
        '"optim.lrr" = { log = [0.01, 0.1] }\n': "unknown key optim.lrr",
        '"optim.lr" = { log = [0.1, 0.01] }\n': "the range [0.1, 0.01] is empty",
        '"augment.rotate" = { choice = [0, "lots"] }\n': "augment.rotate = 'lots' does not",
        '"model.args.widht" = { int = [4, 8] }\n': "does not accept these model.args",
        '"optim.lr" = 0.1\n': "give a range",
        '"schedule.gamma" = { float = [0.1, 0.5] }\n':
            "sweep.space schedule.gamma does nothing in any trial: it acts only where "
            'schedule.name = "step"',
    }
    paths = {_sweep_file(tmp_path, f"space{i}", space=space): message
             for i, (space, message) in enumerate(cases.items())}
    # The [sweep] table itself is checked as a recipe's tables are.
    paths[_sweep_file(tmp_path, "t", trials=0)] = "sweep.trials = 0 is out of range"
    paths[_sweep_file(tmp_path, "o", objective="fastest")] = "sweep.objective must be one of"
    paths[_sweep_file(tmp_path, "h", extra="hours = -1\n")] = "sweep.hours = -1 is out of range"
    paths[_sweep_file(tmp_path, "p", extra="pruner = \"median\"\n")] = "stops no trial early"
    paths[_sweep_file(tmp_path, "m", objective="time_to_target", recipe="mnist-s4",
                      extra="pruner = \"median\"\n")] = "use pruner hopeless or none"
    for path, message in paths.items():
        assert main(["sweep", str(path), "--out", str(tmp_path / "sweeps")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, (message, err)
    assert not (tmp_path / "sweeps").exists()


def test_a_setting_searched_with_what_it_needs_is_accepted(tmp_path):
    spec = load_sweep(_sweep_file(tmp_path, space='"schedule.gamma" = { float = [0.1, 0.5] }\n'
                                                  '"schedule.name" = { choice = ["step", '
                                                  '"onecycle"] }\n'))
    assert [dim.key for dim in spec.space] == ["schedule.gamma", "schedule.name"]


def test_a_point_of_the_space_the_model_cannot_be_built_at_is_rejected_untrained(tmp_path):
    import optuna

    from cnnlab.sweep.trial import Rejected, run_trial

    # each value builds with the recipe's others (checked at load); together they do not:
    # a one-conv first stage maps 1 to 7 channels, and a reused conv must keep its channels
    space = ('"model.args.depths.0" = { choice = [1, 2] }\n'
             '"model.args.reuse.0" = { choice = [0, 1] }\n')
    path = tmp_path / "reuse.toml"
    path.write_text('[sweep]\nrecipe = "mnist-s5-5k"\nset = ["augment.off_last_epochs=0", '
                    '"schedule.hold_epochs=0", "model.args.reuse=[0, 0, 0]", '
                    '"model.args.widths=[7, 13, 16]", '
                    f'{", ".join(SLICE)}]\ntrials = 2\n[sweep.space]\n{space}')
    spec = load_sweep(path)
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial({"model.args.depths.0": 1, "model.args.reuse.0": 1})
    trial = study.ask()
    with pytest.raises(Rejected):
        run_trial(spec, trial, separable_dataset(), tmp_path / "trials")
    reason = trial.user_attrs["rejected"]
    assert "building model 'compact_cnn' failed" in reason
    assert "stage 1 reuses its last conv, which maps 1 to 7 channels" in reason
    assert not (tmp_path / "trials").exists()  # nothing trained, nothing written


def test_an_unreachable_database_is_one_line(tmp_path, capsys):
    path = _sweep_file(tmp_path)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://nobody:secret@127.0.0.1:{port}/none"  # as a user writes it
    pytest.importorskip("psycopg")
    assert main(["sweep", str(path), "--out", str(tmp_path / "s"), "--storage", url]) == 2
    err = capsys.readouterr().err
    assert "cannot open the sweep's database" in err and "secret" not in err
    assert "Connection refused" in err  # the server is what is missing, not a driver
    assert len(err.strip().splitlines()) == 1


def test_the_sweep_file_sets_the_validation_split_and_checks_its_objective(tmp_path):
    spec = load_sweep(_sweep_file(tmp_path))
    assert spec.base.data.val_split == 200 and spec.directions == ["maximize", "minimize"]
    recipe = spec.recipe_for({"model.args.width": 8, "schedule.max_lr": 0.05})
    assert recipe.model.args["width"] == 8 and recipe.schedule.max_lr == 0.05
    assert spec.val_target == 99.4  # mnist-s5-10ep's test target, unless the sweep names its own
    with pytest.raises(ConfigError, match="needs sweep.val_target"):
        load_sweep(_sweep_file(tmp_path, objective="time_to_target", recipe="mnist-baseline"))
    own = load_sweep(_sweep_file(tmp_path, objective="time_to_target", recipe="mnist-baseline",
                                 extra="val_target = 98.5\n",
                                 space='"optim.lr" = { log = [0.005, 0.05] }\n'))
    assert own.val_target == 98.5 and own.base.spec.min_test_acc is None
    with pytest.raises(ConfigError, match="sweep.val_target = 250 is out of range"):
        load_sweep(_sweep_file(tmp_path, extra="val_target = 250\n"))


@pytest.fixture(scope="module")
def postgres_url():
    """A real PostgreSQL server on a temporary data directory and a free local port."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or (
        [shutil.which("initdb")] if shutil.which("initdb") else [])
    if not binaries:
        skip_unless_required("postgres", "PostgreSQL is not installed (apt-get install "
                                         "postgresql; .ci/run installs it)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        skip_unless_required("postgres", "psycopg is missing (pip install 'cnnlab[postgres]')")
    bin_dir = Path(binaries[-1]).parent
    data = Path(tempfile.mkdtemp(prefix="cnnlab-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        # runuser lives in sbin, which a root shell's PATH may lack
        runuser = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
        if runuser is None:
            skip_unless_required("postgres", "running as root, the test needs runuser (util-linux) "
                                             "to start PostgreSQL as its own user")
        shutil.chown(data, "postgres", "postgres")
        as_user = [runuser, "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data / "db"), "-A", "trust",
                    "-U", "cnnlab"], check=True, capture_output=True)
    subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-w", "-l",
                    str(data / "log"), "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://cnnlab@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data / "db"), "-m", "fast",
                        "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.mark.slow
def test_the_same_sweep_on_a_postgresql_server(postgres_url, real_data_root, tmp_path):
    path = _sweep_file(tmp_path, name="on-postgres", trials=3, objective="accuracy")
    study = sweep(path, out_dir=tmp_path / "sweeps", storage=postgres_url,
                  data_dir=real_data_root, progress=False, echo=None)
    assert len(study.trials) == 3
    # Another process (another machine, in real use) sees the same study on the server.
    again = optuna.load_study(study_name="on-postgres", storage=postgres_url)
    assert [t.values for t in again.trials] == [t.values for t in study.trials]
    assert not (tmp_path / "sweeps" / "on-postgres" / "study.db").exists()
    # The README's line continues it on the same server, from any folder: all was done.
    readme = tmp_path / "sweeps" / "on-postgres" / "README.md"
    assert f"--storage {postgres_url}" in readme.read_text()
    assert run_reproduce_line(readme, real_data_root, tmp_path / "elsewhere") == 0
    assert len(optuna.load_study(study_name="on-postgres", storage=postgres_url).trials) == 3


def test_the_readmes_line_names_the_server_a_sweep_ran_on_but_not_its_password(tmp_path):
    from cnnlab.sweep.sweep_report import resume_command

    line = resume_command("sweep", tmp_path / "my sweeps" / "s",
                          "postgresql://ann:s3cret@db.lab:5432/sweeps")
    assert "s3cret" not in line
    assert line.endswith("--storage postgresql://ann@db.lab:5432/sweeps --resume")
    assert f"'{tmp_path / 'my sweeps' / 's' / 'sweep.toml'}'" in line  # quoted for the shell
    assert "--storage" not in resume_command("sweep", tmp_path / "s")  # the folder's own file


def test_every_process_opens_the_study_with_the_sweeps_own_pruner_and_sampler(tmp_path):
    # Optuna keeps neither in its database: a worker that loaded the study bare pruned with
    # the median rule, which in a minimising study reads a high accuracy as bad.
    from cnnlab.sweep.pruning import HopelessPruner
    from cnnlab.sweep.search_method import study_of
    from cnnlab.sweep.storage import open_storage

    spec = load_sweep(_sweep_file(tmp_path, objective="time_to_target",
                                  space='"schedule.max_lr" = { log = [0.02, 0.3] }\n'))
    storage = open_storage(f"sqlite:///{tmp_path / 'study.db'}", 10)
    study_of(spec, storage, create=True)
    worker = study_of(spec, storage)
    assert isinstance(worker.pruner, HopelessPruner) and worker.pruner.target == 99.4

    def first_rate(worker: int = 0) -> float:  # a point of the space, as a trial draws it
        return study_of(spec, storage, worker=worker).ask().suggest_float(
            "schedule.max_lr", 0.02, 0.3, log=True)

    first, again = first_rate(), first_rate()
    assert first == again  # seeded: the same sweep proposes the same first designs
    assert first_rate(worker=1) != first


@pytest.mark.slow
def test_a_trial_stopped_early_records_the_training_it_cost(tmp_path):
    # what a design's README adds up as the search's cost
    import optuna

    from cnnlab.sweep.trial import run_trial

    spec = load_sweep(_sweep_file(tmp_path, objective="smallest_at_target",
                                  extra='pruner = "hopeless"\nval_target = 99.0\n'))
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(lower=101.0))
    trial = study.ask()  # stopped at its first report: no accuracy reaches 101%
    with pytest.raises(optuna.TrialPruned):
        run_trial(spec, trial, separable_dataset(n_train=1500), tmp_path / "trials")
    (row,) = RunFolder(tmp_path / "trials" / str(trial.number)).history()
    assert trial.user_attrs["pruned_at_epoch"] == 1
    # (an epoch of 1,500 tiny images can take under 0.05 s: the figure kept rounds to 0.0)
    assert trial.user_attrs["seconds"] == round(row["seconds"], 1) and row["seconds"] > 0


def test_a_sweep_resumed_from_a_file_that_changed_its_recipe_is_refused(tmp_path, capsys):
    pytest.importorskip("optuna")
    from cnnlab.sweep.study import open_study

    path = _sweep_file(tmp_path)
    folder = tmp_path / "sweeps" / "small"
    folder.mkdir(parents=True)
    url = f"sqlite:///{folder / 'study.db'}"
    started = load_sweep(path)
    open_study(started, url, 10, create=True)  # as `cnnlab sweep` starts it
    (folder / "sweep.toml").write_text(started.to_toml())
    more_trials = _sweep_file(tmp_path, trials=8)  # a budget, not what a trial trains with
    open_study(load_sweep(more_trials), url, 10, create=True)

    path.write_text(path.read_text().replace('"train.epochs=1"', '"train.epochs=2"'))
    assert main(["sweep", str(path), "--out", str(tmp_path / "sweeps"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "sweep small: its trials trained with train.epochs = 1, this file gives 2" in err
    assert len(err.strip().splitlines()) == 1
    assert (folder / "sweep.toml").read_text() == started.to_toml()  # the record is unchanged
    assert sorted(p.name for p in folder.iterdir()) == ["study.db", "sweep.toml"]  # no trial
