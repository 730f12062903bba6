"""The GPU speed recipe's pieces, exercised on the CPU: patch whitening, identity init, frozen
BatchNorm scales, alternating flips, test-time augmentation, and the recipe end to end."""

import pytest
import torch
from torch import nn

from cnnlab.config import AugmentConfig, load_recipe
from cnnlab.data import BatchAugment, Dataset, DeviceLoader
from cnnlab.data.loader import normaliser
from cnnlab.errors import ConfigError, ModelError
from cnnlab.models import build_model
from cnnlab.models.cifar_speed import PatchWhitening, identity_init_conv
from cnnlab.training.lookahead import Lookahead
from cnnlab.training.optim import build_optimizer, build_schedule, lr_curve
from cnnlab.training.trainer import evaluate
from cnnlab.training.tta import tta_logits
from tests.conftest import train_run


def test_patch_whitening_decorrelates_the_patches_it_was_fitted_to():
    gen = torch.Generator().manual_seed(0)
    # Smooth, correlated, unevenly scaled channels: far from white to begin with.
    x = torch.nn.functional.avg_pool2d(torch.randn(256, 3, 34, 34, generator=gen), 3, 1)
    x = x * torch.tensor([3.0, 1.0, 0.2]).view(1, 3, 1, 1) + 1.5
    layer = PatchWhitening(3, eps=0.0)
    layer.init_from_data(x)
    out = layer(x)
    assert out.shape == (256, 24, 31, 31)
    half = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    covariance = torch.cov(half.T)
    assert torch.allclose(covariance, torch.eye(12), atol=2e-2)
    assert half.mean(0).abs().max() < 1e-3
    assert torch.allclose(out[:, 12:], -out[:, :12], atol=1e-4)  # the negated filters
    assert not layer.weight.requires_grad and layer.bias.requires_grad


def test_identity_init_conv_starts_as_a_pass_through_plus_noise():
    conv = identity_init_conv(8, 16)
    centre = conv.weight[:8, :8, 1, 1]
    off_centre = conv.weight[:8, :8].clone()
    off_centre[:, :, 1, 1] = 0
    assert torch.equal(centre, torch.eye(8)) and off_centre.abs().sum() == 0
    assert conv.weight[8:].abs().sum() > 0  # the remaining filters keep their random init


def test_cifar_speed_trains_only_bn_shifts_and_not_the_whitening_weights():
    model = build_model("cifar_speed")
    optimised = {id(p) for group in build_optimizer(model, load_recipe("cifar-94-10ep").optim)
                 .param_groups for p in group["params"]}
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            assert id(module.weight) not in optimised and id(module.bias) in optimised, name
    assert id(model.whiten.weight) not in optimised


def test_cifar_speed_ablation_switches_change_only_what_they_name():
    plain = build_model("cifar_speed", widths=[8, 16, 16], bn_momentum=0.1,
                        freeze_bn_scale=False, identity_init=False)
    norms = [m for m in plain.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.momentum == 0.1 and m.weight.requires_grad for m in norms)
    first = plain.groups[0][0].weight  # 24 whitened maps in, 8 out: no Dirac centre left
    assert not torch.equal(first[:8, :8, 1, 1], torch.eye(8))
    default = build_model("cifar_speed", widths=[8, 16, 16])
    assert all(m.momentum == 0.4 and not m.weight.requires_grad
               for m in default.modules() if isinstance(m, nn.BatchNorm2d))
    with pytest.raises(ModelError, match="bn_momentum"):
        build_model("cifar_speed", bn_momentum=0.0)

def test_alternating_flip_shows_every_image_both_ways_over_two_epochs():
    n = 200
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, :, 0] = 255  # left column white: a flip moves it right
    augment = BatchAugment(AugmentConfig(hflip=0.5, hflip_mode="alternate"))
    loader = DeviceLoader(images, torch.arange(n), 64, mean=(0.0,), std=(1 / 255,),
                          shuffle=True, augment=augment, generator=torch.Generator().manual_seed(0))

    def flipped_per_image():
        state = torch.zeros(n, dtype=torch.bool)
        for x, y in loader:
            state[y] = x[:, 0, 0, 1] > 0
        return state

    first, second, third = flipped_per_image(), flipped_per_image(), flipped_per_image()
    assert torch.equal(second, ~first) and torch.equal(third, first)
    assert 0.35 < first.float().mean() < 0.65  # about half start mirrored
    loader.epoch = 1  # what the trainer does on resume after one epoch
    assert torch.equal(flipped_per_image(), second)


def test_flip_tta_averages_the_image_and_its_mirror():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(10))
    x = torch.randn(5, 3, 8, 8)
    model(x)
    expected = (model(x) + model(x.flip(3))) / 2
    assert torch.allclose(tta_logits(model, x, "flip"), expected, atol=1e-6)
    assert torch.equal(tta_logits(model, x, "none"), model(x))


def test_flip_shift_tta_uses_shifted_views():
    # A model that reads one pixel: shifting the image changes what it sees.
    class Pixel(nn.Module):
        def forward(self, x):
            return x[:, :1, 2, 2].expand(-1, 2)

    x = torch.arange(25.0).view(1, 1, 5, 5).expand(1, 3, 5, 5)
    # (2, 2) = 12 and its mirror (2, 2) = 12; shifted by +1: (1, 1) = 6, mirror (1, 3) = 8;
    # shifted by -1: (3, 3) = 18, mirror (3, 1) = 16.
    expected = 12 / 2 + (6 + 8) / 2 / 4 + (18 + 16) / 2 / 4
    assert tta_logits(Pixel(), x, "flip_shift")[0, 0].item() == pytest.approx(expected)
    # `shift`: the same views without their mirrors (digits must not be mirrored).
    assert tta_logits(Pixel(), x, "shift")[0, 0].item() == pytest.approx(12 / 2 + 6 / 4 + 18 / 4)


def test_evaluate_applies_tta_where_it_changes_the_answer():
    # Class 0's logit is the top-left pixel, class 1's a constant 60: the image says 0
    # (100 > 60), its mirror says 1 (0 < 60), their average says 1 (50 < 60).
    class TopLeft(nn.Module):
        def forward(self, x):
            return torch.stack([x[:, 0, 0, 0], torch.full_like(x[:, 0, 0, 0], 60.0)], 1)

    images = torch.zeros(4, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = 100
    loader = DeviceLoader(images, torch.zeros(4, dtype=torch.long), 4, mean=(0.0,),
                          std=(1 / 255,))
    assert evaluate(TopLeft(), loader).correct == 4
    with_flip = evaluate(TopLeft(), loader, tta="flip")
    assert (with_flip.correct, with_flip.correct_without_tta) == (0, 4)


def test_evaluate_runs_the_plain_view_once():
    # The figure without TTA comes from the pass TTA makes anyway: 3 forward passes a batch
    # for `flip_shift` with its mirrors is 6, not 7.
    calls = []
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.LazyLinear(2))
    model.register_forward_hook(lambda *_: calls.append(1))
    images = torch.randint(0, 255, (8, 1, 6, 6), dtype=torch.uint8)
    loader = DeviceLoader(images, torch.zeros(8, dtype=torch.long), 8, mean=(0.5,),
                          std=(0.25,))
    evaluate(model, loader, tta="flip_shift")
    assert len(calls) == 6


def test_a_bad_flip_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="hflip_mode"):
        load_recipe("cifar-94-10ep", ["augment.hflip_mode=sometimes"])


def _learnable_cifar(n_train=512, n_test=256):
    """Colour tells the class: a task the speed net can learn in a few hundred steps."""
    gen = torch.Generator().manual_seed(0)

    def split(n):
        labels = torch.arange(n) % 10
        images = torch.randint(0, 80, (n, 3, 32, 32), generator=gen)
        images[:, 0] += (labels * 17).view(-1, 1, 1)
        return images.to(torch.uint8), labels

    return Dataset("cifar10", *split(n_train), *split(n_test), (0.2, 0.15, 0.15),
                   (0.25, 0.2, 0.2), tuple(str(i) for i in range(10)))


@pytest.mark.slow
def test_cifar_speed_recipe_learns_and_fits_its_whitening_first(tmp_path):
    # The recipe's peak rate is set for batch 1024; at batch 64 it is scaled down to match.
    recipe = load_recipe("cifar-94-10ep", ["train.epochs=5", "data.batch_size=64",
                                         "schedule.max_lr=0.2", "train.device=cpu",
                                         "model.args={widths=[16,32,32]}"])
    data = _learnable_cifar()
    result = train_run(recipe, dataset=data, out_dir=tmp_path)
    history = result.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_acc"] > 40  # chance is 10%
    # The trained model's first layer whitens the training images as the network sees them
    # (normalised): its first 12 maps are uncorrelated with unit variance on that data.
    scale, shift = normaliser(data.mean, data.std, "cpu")
    seen = torch.addcmul(shift, data.train_images.float(), scale)
    with torch.no_grad():
        maps = result.model.whiten(seen)[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    assert torch.allclose(torch.cov(maps.T), torch.eye(12), atol=0.05)
    assert not result.model.whiten.weight.requires_grad
    # With TTA on, the plain figure is kept beside it, in the history and in the verdict.
    assert all(0 <= row["test_acc_no_tta"] <= 100 for row in history)
    accuracy_rule = [v for v in result.check.verdicts if "test accuracy" in v.rule][0]
    assert "flip_shift test-time augmentation" in accuracy_rule.rule
    assert f"{history[-1]['test_acc_no_tta']:.2f}% without" in accuracy_rule.measured


def test_batchnorm_shifts_learn_64x_faster_with_the_same_decay_per_step():
    recipe = load_recipe("cifar-94-10ep")
    model = build_model("cifar_speed", widths=[8, 16, 16])
    optimizer = build_optimizer(model, recipe.optim)
    schedule = build_schedule(optimizer, recipe.schedule, steps_per_epoch=10, epochs=2)
    main, shifts = optimizer.param_groups
    assert {id(p) for p in shifts["params"]} == {
        id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    for _ in range(7):
        optimizer.step()
        schedule.step()
        assert shifts["lr"] == pytest.approx(64 * main["lr"])
        assert shifts["lr"] * shifts["weight_decay"] == pytest.approx(
            main["lr"] * main["weight_decay"])
        assert main["momentum"] == 0.85  # cycle_momentum = false: airbench's is constant


def test_the_triangular_schedule_goes_from_20_to_100_to_7_percent_in_straight_lines():
    recipe = load_recipe("cifar-94-10ep")
    lrs = lr_curve(recipe.schedule, recipe.optim, steps_per_epoch=100, epochs=1)
    peak = lrs.index(max(lrs))
    assert lrs[0] == pytest.approx(0.2 * 1.5) and max(lrs) == pytest.approx(1.5)
    assert 21 <= peak <= 23 and lrs[-1] == pytest.approx(0.07 * 1.5, rel=0.05)
    middle = (peak + len(lrs) - 1) // 2  # linear, not cosine: halfway down is half the drop
    assert lrs[middle] == pytest.approx((lrs[peak] + lrs[-1]) / 2, rel=0.03)


def test_lookahead_pulls_the_weights_to_their_average_and_ends_on_it():
    model = nn.Linear(2, 1, bias=False)
    nn.init.zeros_(model.weight)
    look = Lookahead(model, decay=0.5, every=2, total_steps=4)
    with torch.no_grad():
        model.weight.fill_(1.0)
    look.step(model, 1)  # not a multiple of 2: nothing happens
    assert model.weight.eq(1.0).all()
    look.step(model, 2)  # keep 0.5**2 x (2/4)**3 of the average (0), take the rest from 1.0
    assert torch.allclose(model.weight, torch.full((1, 2), 1 - 0.25 / 8))
    with torch.no_grad():
        model.weight.fill_(3.0)
    look.step(model, 4)  # keep 0.25 of the average, then end on the average
    assert torch.allclose(model.weight, torch.full((1, 2), 0.25 * (1 - 0.25 / 8) + 0.75 * 3))


@pytest.mark.slow
def test_the_whitening_bias_trains_only_in_its_first_epochs(tmp_path):
    recipe = load_recipe("cifar-94-10ep", ["train.epochs=3", "data.batch_size=64",
                                         "train.device=cpu", "model.args={widths=[8,16,16]}",
                                         "train.whitening_bias_epochs=2",
                                         "train.lookahead_every=0"])
    seen = []  # the bias after each epoch
    train_run(recipe, dataset=_learnable_cifar(128, 64), out_dir=tmp_path,
              callbacks=(lambda row, trainer: seen.append(trainer.model.whiten.bias.clone()),))
    assert not torch.equal(seen[0], seen[1])  # epoch 2 still trains it
    assert torch.equal(seen[1], seen[2])  # epoch 3 holds it


def test_holding_a_whitening_bias_the_model_lacks_is_refused_before_anything_is_written(
        tmp_path):
    recipe = load_recipe("mnist-s5-10ep", ["train.whitening_bias_epochs=2"])
    with pytest.raises(ConfigError, match="whitening_bias_epochs does nothing for model "
                                          "'mnist_strided'"):
        train_run(recipe, dataset=_learnable_cifar(64, 32), out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []
