import json
import math

import pytest
import torch

from cnnlab.cli import main
from cnnlab.config import OptimConfig, ScheduleConfig, load_recipe, parse_recipe
from cnnlab.data import load_dataset
from cnnlab.errors import ConfigError, RunFolderError, TrainingError
from cnnlab.run_folder import RunFolder
from cnnlab.run_folder.checkpoint import load_checkpoint
from cnnlab.run_folder.history import first_reaching, seconds_to_target
from cnnlab.training import trainer
from cnnlab.training.device import describe_device
from cnnlab.training.optim import build_optimizer, build_schedule
from cnnlab.training.precision import run_precision
from tests.conftest import (
    run_killed_in_epoch,
    separable_dataset,
    small_recipe,
    train_run,
    without_timings,
)


# EMA off unless a test turns it on: on a few dozen steps the average lags the raw weights.
def _run(recipe, tmp_path, **kwargs):
    return train_run(recipe, dataset=separable_dataset(), out_dir=tmp_path / "runs", **kwargs)


@pytest.mark.slow
def test_training_learns_and_writes_the_run_folder(tmp_path):
    result = _run(small_recipe(epochs=5), tmp_path)
    history = result.history
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_acc"] > 90.0
    run = RunFolder(result.run_dir)
    assert run.history() == history
    recipe = small_recipe(epochs=5)
    assert run.recipe() == recipe.for_precision(run_precision(recipe.train))  # as it trained
    assert load_checkpoint(run.last_checkpoint)["epoch"] == 5
    best = load_checkpoint(run.best_checkpoint)
    assert best["test_acc"] == max(row["test_acc"] for row in history)
    assert "Accuracy:" in (result.run_dir / "log.txt").read_text()
    assert not [p for p in result.run_dir.rglob(".*")]  # no temporary files left


@pytest.mark.slow
def test_log_lines_use_the_seed_format(tmp_path):
    lines = []
    train_run(small_recipe(epochs=1), dataset=separable_dataset(), out_dir=tmp_path,
              echo=lines.append)
    assert lines[0] == "Epoch : 1/1"
    assert lines[1].startswith("Test set: Average loss: ")
    assert lines[1].endswith("/256 (" + lines[1].split("(")[1])
    assert "Accuracy: " in lines[1] and lines[1].endswith("%)")


@pytest.mark.slow
def test_same_seed_gives_identical_histories(tmp_path):
    first = _run(small_recipe(), tmp_path / "a").history
    second = _run(small_recipe(), tmp_path / "b").history
    other = _run(small_recipe("train.seed=1"), tmp_path / "c").history
    assert without_timings(first) == without_timings(second)
    assert first[-1]["train_loss"] != other[-1]["train_loss"]


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_result(tmp_path, monkeypatch):
    # Dropout, augmentation, OneCycle and EMA all draw on state that a resume must restore.
    recipe = small_recipe("train.ema_decay=0.9", "train.lookahead_every=3", epochs=3)
    straight = _run(recipe, tmp_path / "straight")

    run_dir = run_killed_in_epoch(3, recipe, tmp_path / "killed", monkeypatch)
    assert len(RunFolder(run_dir).history()) == 2
    resumed = train_run(resume=run_dir, dataset=separable_dataset())
    assert without_timings(resumed.history) == without_timings(straight.history)
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def _partial_checkpoint_after_every_step(monkeypatch) -> None:
    monkeypatch.setattr(trainer, "PARTIAL_EVERY_SECONDS", 0.0)
    monkeypatch.setattr(trainer, "BAR_EVERY", 1)


def _killed_at_step(doomed: int, monkeypatch):
    """Make training raise KeyboardInterrupt as its `doomed`-th optimiser step (counted over
    the whole run, from 1) starts, with a partial checkpoint saved after every step."""
    _partial_checkpoint_after_every_step(monkeypatch)
    real_step, taken = trainer.Trainer.step, []

    def step(self, x, y):
        taken.append(1)
        if len(taken) == doomed:
            raise KeyboardInterrupt
        return real_step(self, x, y)

    monkeypatch.setattr(trainer.Trainer, "step", step)
    return real_step


@pytest.mark.slow
@pytest.mark.parametrize("epoch", [1, 2])
def test_a_run_killed_inside_an_epoch_resumes_from_its_partial_checkpoint_exactly(
        tmp_path, monkeypatch, capsys, epoch):
    # 512 images in batches of 64: 8 steps an epoch; killed as batch 5 of `epoch` starts.
    recipe = small_recipe("train.ema_decay=0.9", "train.lookahead_every=3", epochs=2)
    straight = _run(recipe, tmp_path / "straight")
    real_step = _killed_at_step(8 * (epoch - 1) + 6, monkeypatch)
    with pytest.raises(KeyboardInterrupt) as stopped:
        _run(recipe, tmp_path / "killed")
    monkeypatch.setattr(trainer.Trainer, "step", real_step)
    (run_dir,) = (tmp_path / "killed" / "runs").iterdir()
    assert stopped.value.run_dir == run_dir  # offered for --resume, even inside epoch 1
    assert str(stopped.value) == f"stopped by SIGINT; continue with cnnlab.resume('{run_dir}')"
    if epoch == 1:  # nothing to ship yet: said before any data or model is looked for
        for verb in (["export", str(run_dir), "--onnx"], ["app", str(run_dir)]):
            assert main(verb) == 2
            assert "has no trained weights yet" in capsys.readouterr().err
    folder = RunFolder(run_dir)
    assert len(folder.history()) == epoch - 1
    assert load_checkpoint(folder.partial_checkpoint)["partway"]["step"] == 5
    resumed = train_run(resume=run_dir, dataset=separable_dataset())
    assert without_timings(resumed.history) == without_timings(straight.history)
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert f"resumed in epoch {epoch} at batch 5 of 8" in (run_dir / "log.txt").read_text()
    assert not folder.partial_checkpoint.exists()  # the epoch saved whole replaces it


@pytest.mark.slow
def test_a_partial_checkpoint_older_than_the_last_epoch_is_passed_over(tmp_path, monkeypatch):
    # A crash between saving an epoch's last.pt and removing partial.pt leaves both.
    recipe = small_recipe(epochs=3)
    straight = _run(recipe, tmp_path / "straight")
    run_dir = run_killed_in_epoch(3, recipe, tmp_path / "killed", monkeypatch)
    folder = RunFolder(run_dir)
    stale = {**load_checkpoint(folder.last_checkpoint), "epoch": 1,
             "partway": {"step": 3, "order": None, "seen": 192, "loss_sum": torch.tensor(9.0),
                         "correct": torch.tensor(7), "seconds": 1.0}}
    torch.save(stale, folder.partial_checkpoint.path)
    resumed = train_run(resume=run_dir, dataset=separable_dataset())
    assert without_timings(resumed.history) == without_timings(straight.history)
    assert "resumed after epoch 2" in (run_dir / "log.txt").read_text()


def _bf16_units(monkeypatch, present: bool, speedup: float = 2.0) -> list[int]:
    """A CPU with or without bf16 units, on which bf16 autocast times `speedup` x fp32's speed;
    returns the list each timing appends to."""
    from cnnlab.training import precision

    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: present, raising=False)
    timed = []
    monkeypatch.setattr(precision, "bf16_speedup", lambda: timed.append(1) or speedup)
    monkeypatch.setattr(precision, "_verdicts", {})  # this process's verdict, forgotten
    return timed


@pytest.mark.slow
def test_a_resume_elsewhere_is_noted_and_each_epoch_says_where_it_ran(tmp_path, monkeypatch):
    # train.amp = "auto" on a CPU without bf16 units, resumed on one with them: bf16 from then on.
    _bf16_units(monkeypatch, False)
    recipe = small_recipe("train.amp=auto", epochs=3)
    run_dir = run_killed_in_epoch(2, recipe, tmp_path, monkeypatch)
    _bf16_units(monkeypatch, True)
    said = []
    resumed = train_run(resume=run_dir, dataset=separable_dataset(), echo=said.append)
    assert [row["precision"] for row in resumed.history] == ["fp32", "bf16 autocast",
                                                             "bf16 autocast"]
    assert {row["torch"] for row in resumed.history} == {torch.__version__}
    cpu = describe_device(torch.device("cpu"))
    assert cpu.startswith(f"cpu, {torch.get_num_threads()} thread")
    assert {row["device"] for row in resumed.history} == {cpu}
    note = [line for line in said if line.startswith("note:")]
    assert note == [f"note: epochs so far ran on {cpu}, fp32, torch {torch.__version__}; "
                    f"the rest run on {cpu}, bf16 autocast, torch {torch.__version__}"]
    assert note[0] in (run_dir / "log.txt").read_text()


def test_trained_on_spans_group_consecutive_epochs():
    from cnnlab.report.run_report import _trained_on_line

    cpu = {"device": "cpu, 2 threads", "precision": "fp32", "torch": "2.13.0"}
    gpu = {"device": "NVIDIA T4", "precision": "fp16 autocast", "torch": "2.13.0"}
    history = [{"epoch": 1, **cpu}, {"epoch": 2, **cpu}, {"epoch": 3, **gpu}]
    assert _trained_on_line(history[:2]) == "Trained on: cpu, 2 threads, fp32, torch 2.13.0."
    assert _trained_on_line(history) == (
        "Trained on: epochs 1-2 on cpu, 2 threads, fp32, torch 2.13.0; "
        "epoch 3 on NVIDIA T4, fp16 autocast, torch 2.13.0.")
    assert _trained_on_line([{"epoch": 1}]) == "Trained on: not recorded."  # older runs


DIVERGING_MODEL = """
import torch
from torch import nn

class GoesBad(nn.Module):
    def __init__(self, good_steps):
        super().__init__()
        self.good_steps = good_steps
        self.calls = 0
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))

    def forward(self, x):
        out = self.body(x)
        if self.training:
            self.calls += 1
            if self.calls > self.good_steps:
                out = out * float("nan")
        return out

def build(good_steps=12):
    return GoesBad(good_steps)
"""


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    # A partial checkpoint after every step: the diverging epoch's are not kept, since a
    # resume from one runs into the same divergence.
    _partial_checkpoint_after_every_step(monkeypatch)
    path = tmp_path / "bad_model.py"
    path.write_text(DIVERGING_MODEL)
    recipe = small_recipe(f'model.name="{path}:build"', "model.args.good_steps=10", epochs=3)
    with pytest.raises(TrainingError, match="diverged.*epoch 2"):
        _run(recipe, tmp_path, enforce_spec=False)  # 8 steps per epoch: step 11 is in epoch 2
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert not (run_dir / "checkpoints" / "partial.pt").exists()
    state = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())
    assert len(RunFolder(run_dir).history()) == 1


def test_resume_refuses_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(RunFolderError, match="not a cnnlab run folder"):
        train_run(resume=tmp_path, dataset=separable_dataset())


def test_cuda_request_without_cuda_is_a_clear_error(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        _run(small_recipe("train.device=cuda"), tmp_path)
    assert not (tmp_path / "runs").exists()  # nothing written before the error


@pytest.mark.slow
def test_real_mnist_slice_learns(real_data_root, tmp_path):
    data = load_dataset("mnist", real_data_root)
    recipe = load_recipe("mnist-s5-10ep", ["train.epochs=2", "data.train_limit=4096",
                                        "data.test_limit=1000", "train.device=cpu"])
    result = train_run(recipe, dataset=data, out_dir=tmp_path)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.history[-1]["test_acc"] > 90.0


def _lrs(schedule_config, optim_config=None, steps=10, epochs=3):
    model = torch.nn.Linear(2, 2)
    optimizer = build_optimizer(model, optim_config or OptimConfig(lr=0.1))
    schedule = build_schedule(optimizer, schedule_config, steps, epochs)
    lrs = []
    for _ in range(steps * epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return lrs


def test_schedules_have_their_shapes():
    onecycle = _lrs(ScheduleConfig(name="onecycle", max_lr=0.4, pct_start=0.3))
    assert max(onecycle) == pytest.approx(0.4, rel=1e-3)
    assert onecycle[0] == pytest.approx(0.4 / 25)
    assert onecycle.index(max(onecycle)) == pytest.approx(9, abs=1)
    step = _lrs(ScheduleConfig(name="step", step_epochs=1, gamma=0.5))
    assert step[0] == pytest.approx(0.1) and step[10] == pytest.approx(0.05)
    assert step[20] == pytest.approx(0.025)
    cosine = _lrs(ScheduleConfig(name="cosine", min_lr=0.01))
    assert cosine[0] == pytest.approx(0.1) and cosine[15] == pytest.approx(0.055, rel=1e-2)
    assert all(a >= b for a, b in zip(cosine, cosine[1:], strict=False))
    assert set(_lrs(ScheduleConfig(name="constant"))) == {0.1}


def test_a_held_one_cycle_ends_early_and_keeps_its_final_rate():
    held = _lrs(ScheduleConfig(name="onecycle", max_lr=0.4, pct_start=0.3, hold_epochs=2),
                epochs=5)
    short = _lrs(ScheduleConfig(name="onecycle", max_lr=0.4, pct_start=0.3), epochs=3)
    assert held[:30] == pytest.approx(short)  # the cycle of the first 3 epochs, as it was
    assert set(held[29:]) == {short[-1]}  # then its last rate, to the end of the run
    with pytest.raises(ConfigError, match="hold_epochs = 3 leaves no epoch of the 3"):
        _lrs(ScheduleConfig(name="onecycle", hold_epochs=3))


def test_a_held_one_cycle_resumes_within_its_hold():
    config = ScheduleConfig(name="onecycle", max_lr=0.4, hold_epochs=2)
    optimizer = build_optimizer(torch.nn.Linear(2, 2), OptimConfig(lr=0.1))
    schedule = build_schedule(optimizer, config, 10, 5)
    for _ in range(35):  # into the hold
        optimizer.step()
        schedule.step()
    state, held = schedule.state_dict(), optimizer.param_groups[0]["lr"]
    again = build_optimizer(torch.nn.Linear(2, 2), OptimConfig(lr=0.1))
    resumed = build_schedule(again, config, 10, 5)
    resumed.load_state_dict(state)
    for _ in range(15):  # to the run's end and one step past it: no error, the same rate
        again.step()
        resumed.step()
        assert resumed.get_last_lr()[0] == held


def test_held_epochs_average_the_batchnorm_statistics_over_every_held_batch():
    from cnnlab.models import build_model

    data = separable_dataset(n_train=64 * 4)
    run = trainer.Trainer(small_recipe("data.batch_size=64", "schedule.hold_epochs=1",
                                       epochs=3), data, build_model("mnist_strided", width=4))
    norms = [m for m in run.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    run.train_epoch(2, None, progress=False)  # in the cycle: a momentum average
    assert norms[0].momentum == 0.1 and int(norms[0].num_batches_tracked) == 4
    sums = []
    norms[0].register_forward_hook(lambda layer, inputs, _: sums.append(
        inputs[0].detach().float().mean((0, 2, 3))))
    run.train_epoch(3, None, progress=False)  # held: restarted, the plain mean of its batches
    assert norms[0].momentum is None and int(norms[0].num_batches_tracked) == 4
    assert torch.allclose(norms[0].running_mean, torch.stack(sums).mean(0), atol=1e-5)


@pytest.mark.parametrize(("name", "kind"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                            ("adamw", torch.optim.AdamW)])
def test_optimizers(name, kind):
    optimizer = build_optimizer(torch.nn.Linear(2, 2), OptimConfig(name=name, lr=0.3,
                                                                  weight_decay=0.01))
    assert isinstance(optimizer, kind)
    assert optimizer.param_groups[0]["weight_decay"] == 0.01


@pytest.mark.slow
def test_amp_off_is_plain_fp32_and_bf16_runs_when_asked(tmp_path):
    from cnnlab.models import build_model

    data = separable_dataset()
    plain = trainer.Trainer(small_recipe("train.amp=off"), data, build_model("mnist_pool"))
    assert plain.amp_dtype is None and plain.forward is plain.model
    assert not plain.scaler.is_enabled()
    result = _run(small_recipe("train.amp=bf16", epochs=2), tmp_path)  # the GPU path's autocast
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


@pytest.mark.parametrize(("bar_seconds", "synced"), [(1e9, [0, 20, 40, 60, 63]),
                                                     (0.0, list(range(64)))])
def test_the_bar_reads_the_loss_every_20_steps_and_on_slow_steps_every_step(
        monkeypatch, bar_seconds, synced):
    from cnnlab.models import build_model

    reads = []
    monkeypatch.setattr(trainer, "BAR_SECONDS", bar_seconds)
    monkeypatch.setattr(trainer, "_stop_if_diverged", lambda value, epoch, step, *_:
                        reads.append(step))
    data = separable_dataset(n_train=64 * 16)
    run = trainer.Trainer(small_recipe("data.batch_size=16", "train.channels_last=false"), data,
                          build_model("mnist_strided", width=4))
    run.train_epoch(1, None, progress=False)
    assert reads == [*synced, 63]  # and the epoch's mean loss, checked once at its end


@pytest.mark.slow
def test_the_test_time_augmentation_changes_nothing_the_run_trains(tmp_path):
    # what lets a benchmark test plain each epoch and add the TTA figure once, at the end
    plain = _run(small_recipe("train.tta=none"), tmp_path / "plain").history
    views = _run(small_recipe("train.tta=flip_shift"), tmp_path / "views").history
    assert [row["train_loss"] for row in views] == [row["train_loss"] for row in plain]
    assert [row["test_acc_no_tta"] for row in views] == [row["test_acc"] for row in plain]
    assert "test_acc_no_tta" not in plain[-1]


def test_evaluation_builds_no_autograd_graph():
    from cnnlab.data.loader import DeviceLoader

    data = separable_dataset()
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    grad_modes = []
    model.register_forward_hook(lambda *_: grad_modes.append(torch.is_grad_enabled()))
    loader = DeviceLoader(data.test_images, data.test_labels, 100, mean=data.mean, std=data.std)
    trainer.evaluate(model, loader)
    assert grad_modes and not any(grad_modes)
    assert model.training is False


@pytest.mark.parametrize(("amp", "device", "bf16_units", "expected"), [
    ("auto", "cpu", True, torch.bfloat16),  # AVX512-BF16 (Zen 4, Cooper Lake) or AMX
    ("auto", "cpu", False, None),  # older CPUs would emulate bf16: fp32
    ("off", "cpu", True, None),
    ("auto", "cuda", True, torch.bfloat16),  # A100, H100, RTX 30xx and newer
    ("auto", "cuda", False, torch.float16),  # T4, V100: fp16 tensor cores, no bf16
    ("off", "cuda", True, None),
    ("fp16", "cpu", False, torch.float16),
    ("bf16", "cpu", False, torch.bfloat16),
])
def test_amp_picks_the_precision_the_device_has(monkeypatch, amp, device, bf16_units, expected):
    from cnnlab.training.precision import autocast_dtype

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16_units)
    _bf16_units(monkeypatch, bf16_units)
    assert autocast_dtype(amp, torch.device(device)) == expected


def test_auto_takes_bf16_on_a_cpu_only_where_it_was_timed_faster(monkeypatch, tmp_path):
    """bf16 units are not enough: on some CPUs with them bf16 autocast trains slower than
    fp32. The verdict is timed once per CPU and kept in the cache folder."""
    from cnnlab.training import precision
    from cnnlab.training.precision import autocast_dtype

    cpu = torch.device("cpu")
    timed = _bf16_units(monkeypatch, True, speedup=0.6)
    assert autocast_dtype("auto", cpu) is None
    assert autocast_dtype("auto", cpu) is None and len(timed) == 1  # this process remembers
    monkeypatch.setattr(precision, "_verdicts", {})
    assert autocast_dtype("auto", cpu) is None and len(timed) == 1  # ... and the cache folder
    assert autocast_dtype("bf16", cpu) == torch.bfloat16  # asked for: no timing decides it
    kept = json.loads((tmp_path / "cache" / "cpu_precision.json").read_text())
    assert [v["speedup"] for v in kept.values()] == [0.6]

    (tmp_path / "cache" / "cpu_precision.json").write_text("{not json")  # damaged: timed again
    timed = _bf16_units(monkeypatch, True, speedup=precision.BF16_PAYS_AT)
    assert autocast_dtype("auto", cpu) == torch.bfloat16 and len(timed) == 1
    timed = _bf16_units(monkeypatch, False)
    assert autocast_dtype("auto", cpu) is None and timed == []  # no units: nothing to time


def test_the_bf16_timing_leaves_the_random_state_as_it_was():
    from cnnlab.training.precision import bf16_speedup

    torch.manual_seed(7)
    before = torch.random.get_rng_state()
    assert bf16_speedup(batch=4, steps=1) > 0
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.slow
def test_fp16_trains_through_the_gradient_scaler_and_resumes_with_it(tmp_path, monkeypatch):
    recipe = small_recipe("train.amp=fp16", epochs=2)
    steps = []
    real_step = torch.amp.GradScaler.step

    def counted(self, optimizer, *args, **kwargs):
        steps.append(self.get_scale())
        return real_step(self, optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.amp.GradScaler, "step", counted)
    result = _run(recipe, tmp_path)
    assert steps and all(scale > 1 for scale in steps)  # the loss really was scaled
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    saved = load_checkpoint(result.run_dir / "checkpoints" / "last.pt")["scaler"]
    assert saved["scale"] in (steps[-1], steps[-1] / 2)  # kept, or halved after an overflow


def test_seconds_to_target_counts_the_epochs_up_to_the_first_that_reaches_it():
    rows = [{"epoch": e, "seconds": s, "val_acc": v, "test_acc": t} for e, s, v, t in
            ((1, 10.0, 98.0, 98.5), (2, 20.0, 99.45, 99.1), (3, 30.0, 99.6, 99.5))]
    assert seconds_to_target(rows, 99.4, key="val_acc") == 30.0
    assert seconds_to_target(rows, 99.4) == 60.0  # test accuracy: epoch 3
    assert seconds_to_target(rows, 99.9) == math.inf
    assert first_reaching(rows, 99.0)["epoch"] == 2


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_run_trains_with_its_precisions_settings_and_records_them(tmp_path, monkeypatch,
                                                                    precision):
    monkeypatch.setattr("cnnlab.prepare.run_precision", lambda train: precision)
    recipe = small_recipe("train.amp=off", epochs=1).to_dict()
    recipe["by_precision"] = {"fp32": {"data": {"batch_size": 32}},
                              "bf16": {"data": {"batch_size": 64}}}
    result = _run(parse_recipe(recipe), tmp_path)
    recorded = RunFolder(result.run_dir).recipe()
    assert recorded.data.batch_size == {"fp32": 32, "bf16": 64}[precision]
    assert recorded.by_precision == {}  # a resume trains as this run did, on any machine
    assert result.history[-1]["steps"] == 512 // recorded.data.batch_size  # and trained so


def test_the_last_epochs_train_on_the_images_as_they_are():
    from cnnlab.data.loader import normaliser
    from cnnlab.models import build_model

    data = separable_dataset(n_train=256)
    recipe = small_recipe("augment.translate=2.0", "augment.off_last_epochs=1",
                     "train.channels_last=false", "train.amp=off", epochs=3)
    run = trainer.Trainer(recipe, data, build_model("mnist_pool"))
    assert run.plain_loader.images is run.train_loader.images  # one copy on the device
    scale, shift = normaliser(data.mean, data.std, torch.device("cpu"))
    as_they_are = torch.addcmul(shift, data.train_images.float(), scale).flatten(1)
    seen = []
    run.model.register_forward_pre_hook(lambda module, args: seen.append(args[0].flatten(1)))

    def off_by(epoch):  # how far each image the epoch trained on lies from every training image
        seen.clear()
        run.train_epoch(epoch, None, progress=False)
        return torch.cat([torch.cdist(x.detach(), as_they_are).amin(1) for x in seen])

    shifted, plain = off_by(2), off_by(3)
    assert len(shifted) == len(plain) == 256
    assert (shifted > 1.0).float().mean() > 0.5 and plain.max() < 0.1  # cdist rounds a little
