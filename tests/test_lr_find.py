import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.config import load_recipe
from cnnlab.data import load_dataset
from cnnlab.errors import ConfigError
from cnnlab.pipeline import lr_find
from cnnlab.report.run_report import write_report
from cnnlab.run_folder import RunFolder
from cnnlab.run_folder.lr_find_result import LRFindResult
from cnnlab.training.range_test import _suggestions, range_test
from cnnlab.training.trainer import Trainer
from tests.conftest import separable_dataset, small_recipe, train_run


def _recipe(*overrides):
    return small_recipe("data.batch_size=32", *overrides)


@pytest.mark.slow
def test_lr_find_sweeps_suggests_and_stops_on_divergence():
    result = lr_find(_recipe(), dataset=separable_dataset(), start=1e-5, end=1e3, steps=60,
                     progress=False)
    assert result.diverged  # lr 1000 blows any model up
    assert len(result.lrs) < 60
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:], strict=False)]
    assert max(ratios) == pytest.approx(min(ratios))  # exponential
    for suggestion in (result.minimum, result.valley, result.steepest):
        assert 1e-5 <= suggestion <= result.lrs[-1]
    low = result.losses[: len(result.losses) // 3]
    assert min(result.losses) < min(low)  # the loss fell somewhere along the sweep


def test_a_sweep_that_never_turns_up_says_its_suggestion_is_no_limit():
    falling = LRFindResult(lrs=[10.0 ** (k / 10) for k in range(-40, 1)],
                           losses=[3.0 - k / 100 for k in range(41)],
                           minimum=0.1, valley=0.5, steepest=1.0, diverged=False)
    assert falling.open_ended and "still falling" in falling.summary_line()
    turned = LRFindResult(falling.lrs, falling.losses, minimum=1e-3, valley=5e-3,
                          steepest=1e-2, diverged=False)
    assert not turned.open_ended and "warning" not in turned.summary_line()


def test_the_three_suggestions_on_a_curve_whose_answers_are_known():
    # Flat at 3 for lrs 1e-6..1e-5, falls to ~1 by 1e-3 (steepest at 1e-4), lowest at 1e-3,
    # then rises.
    lrs = [10.0 ** (-6 + k / 10) for k in range(51)]  # 1e-6 .. 1e-1
    losses = [3.0 if k <= 10 else 2.0 - math.tanh((k - 20) / 4) if k <= 30
              else 1.0 + (k - 30) / 5 for k in range(51)]
    losses[15] += 0.1  # a blip on the way down: the descent goes on past it
    found = _suggestions(lrs, losses)
    lowest = min(range(51), key=losses.__getitem__)
    assert found["minimum"] == pytest.approx(lrs[lowest] / 10)
    assert found["steepest"] == pytest.approx(1e-4, rel=0.3)
    # The descent runs from k = 10 (last flat point) to the minimum: its middle is ~k = 20.
    assert lrs[18] <= found["valley"] <= lrs[22]


@pytest.mark.slow
def test_lr_find_leaves_the_model_untouched():
    torch.manual_seed(0)
    from cnnlab.models import build_model

    model = build_model("mnist_pool")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    lr_find(_recipe(), dataset=separable_dataset(), model=model, steps=20, progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())
@pytest.mark.slow


def test_the_range_test_steps_as_the_run_trains():
    """The run's precision (bf16 autocast here) and its loss (label smoothing) in every step."""
    recipe = _recipe('train.amp="bf16"', "train.label_smoothing=0.5")
    data = separable_dataset()
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    with torch.no_grad():
        model[1].weight.mul_(30)  # confident logits, where smoothing changes the loss
    seen = []
    model.register_forward_hook(
        lambda module, inputs, out: seen.append((torch.is_autocast_enabled("cpu"), out.dtype)))
    result = lr_find(recipe, dataset=data, model=model, start=1e-6, end=1e-5, steps=5,
                     progress=False)
    assert len(seen) == 5 and all(on and dtype == torch.bfloat16 for on, dtype in seen)
    # The sweep's first point is the first batch's loss before any step: the run's loss.
    x, y = next(iter(Trainer(recipe, data, copy.deepcopy(model)).train_loader))
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        logits = model(x)
    smoothed, plain = (F.cross_entropy(logits.float(), y, label_smoothing=eps).item()
                       for eps in (0.5, 0))
    assert result.losses[0] == pytest.approx(smoothed, rel=1e-3)
    assert abs(smoothed - plain) > 0.1  # the two losses are told apart
@pytest.mark.slow


def test_the_range_test_of_a_compiled_recipe_steps_eagerly(monkeypatch):
    """A compile costs more than the test's hundred steps save: the run compiles, not the test."""
    def no_compile(*args, **kwargs):
        raise AssertionError("the range test compiled the model")
    monkeypatch.setattr(torch, "compile", no_compile)
    recipe = _recipe("train.compile=true")
    assert recipe.train.compile
    result = lr_find(recipe, dataset=separable_dataset(),
                     model=nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10)),
                     start=1e-6, end=1e-5, steps=5, progress=False)
    assert len(result.losses) == 5


def test_the_range_test_keeps_the_batchnorm_shifts_own_rate():
    from cnnlab.models import build_model

    probe = Trainer(_recipe("optim.bn_bias_lr_scale=64"), separable_dataset(),
                    build_model("mnist_pool"))
    rates = []

    def step(x, y):
        rates.append([group["lr"] for group in probe.optimizer.param_groups])
        return probe.step(x, y)

    range_test(probe.model, probe.optimizer, probe.train_loader, step, start=1e-4, end=1e-3,
               steps=5, progress=False)
    assert [rate for rate, _ in rates] == pytest.approx([1e-4 * 10 ** (k / 4) for k in range(5)])
    assert all(shifts == pytest.approx(64 * rate) for rate, shifts in rates)


def test_bad_range_is_a_config_error():
    with pytest.raises(ConfigError, match="start < end"):
        lr_find(_recipe(), dataset=separable_dataset(), start=1.0, end=0.1, progress=False)


@pytest.mark.slow
def test_max_lr_find_runs_the_range_test_and_records_the_number(tmp_path):
    lines = []
    recipe = _recipe('schedule.max_lr="find"', "train.epochs=1")
    result = train_run(recipe, dataset=separable_dataset(), out_dir=tmp_path,
                       echo=lines.append)
    assert lines[0].startswith("LR range test: suggested max lr:")
    found = RunFolder(result.run_dir).recipe().schedule.max_lr
    assert isinstance(found, float) and found > 0
    assert f"{found:.3g}" in lines[0]
    run = RunFolder(result.run_dir)
    assert run.lr_find_record().minimum == found  # the default
    assert "LR range test" in (run.path / "log.txt").read_text()
    readme = write_report(run.path, model=result.model, dataset=result.dataset)
    assert (run.path / "plots" / "lr-find.png").stat().st_size > 1000
    assert "## LR range test" in readme.read_text() and "plots/lr-find.png" in readme.read_text()


@pytest.mark.slow
def test_find_pick_chooses_the_suggestion(tmp_path):
    results = {}
    for pick in ("minimum", "valley", "steepest"):
        recipe = _recipe('schedule.max_lr="find"', f'schedule.find_pick="{pick}"',
                         "train.epochs=1")
        result = train_run(recipe, dataset=separable_dataset(), out_dir=tmp_path / pick)
        run = RunFolder(result.run_dir)
        found = run.lr_find_record()
        results[pick] = run.recipe().schedule.max_lr
        assert results[pick] == getattr(found, pick)
    assert len(set(results.values())) == 3


@pytest.mark.slow
def test_lr_find_on_the_cifar_recipes(cifar_data_root):
    data = load_dataset("cifar10", cifar_data_root).limited(train=256, test=10)
    for name, steps in (("cifar-s9-batched", 12), ("cifar-s10", 6)):
        recipe = load_recipe(name, ["data.batch_size=16", "train.device=cpu"])
        result = lr_find(recipe, dataset=data, start=1e-4, end=1.0, steps=steps, progress=False)
        # each recipe's own model, loader and optimiser ran every step, or stopped at a blow-up
        assert len(result.lrs) == steps or result.diverged, name
        assert result.lrs[0] == pytest.approx(1e-4) and result.lrs[-1] <= 1.0
        assert all(math.isfinite(loss) for loss in result.losses), name
        for suggestion in (result.minimum, result.valley, result.steepest):
            assert 1e-5 <= suggestion <= result.lrs[-1], (name, suggestion)
