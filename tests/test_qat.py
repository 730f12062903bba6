"""Quantization-aware training (train.qat_epochs): each convolution and linear layer computes
as its int8 self, by the exporter's scheme, without changing the model's parameters."""

import pytest
import torch
from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.run_folder import RunFolder
from cnnlab.training import qat
from tests.conftest import (
    run_killed_in_epoch,
    separable_dataset,
    small_recipe,
    train_run,
    without_timings,
)


def _by_hand(x, low, high, weight, bias):
    """What ONNX Runtime's QDQ int8 conv computes: the input on the asymmetric grid of its
    range, the weights on a symmetric grid per output channel."""
    scale = (high - low) / 255
    zero = round(-128 - low / scale)
    q = torch.clamp(torch.round(x / scale) + zero, -128, 127)
    x_int8 = (q - zero) * scale
    reach = weight.abs().flatten(1).amax(1) / 127
    w_int8 = torch.clamp(torch.round(weight / reach[:, None, None, None]), -127, 127) \
        * reach[:, None, None, None]
    return nn.functional.conv2d(x_int8, w_int8, bias, padding=1)


def test_a_simulated_conv_computes_what_the_int8_scheme_does_by_hand():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(4, 2, 5, 5)
    plain = conv(x)
    keys = list(conv.state_dict())
    qat.enable(conv)
    conv.train()
    conv(x)  # the first batch sets the range
    low, high = float(x.min()), float(x.max())
    assert torch.allclose(conv.int8_range, torch.tensor([low, high]))
    conv.eval()
    simulated = conv(x)
    assert torch.allclose(simulated, _by_hand(x, low, high, conv.weight, conv.bias), atol=1e-5)
    assert not torch.allclose(simulated, plain)  # it does round
    assert list(conv.state_dict()) == keys  # the parameters are the plain model's


def test_gradients_pass_straight_through_the_rounding():
    linear = nn.Linear(4, 2)
    qat.enable(linear)
    linear.train()
    x = torch.randn(8, 4, requires_grad=True)
    linear(x).sum().backward()
    assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_qat_epochs_must_fit_the_run_and_not_be_compiled():
    with pytest.raises(ConfigError, match="more than the run's 2 epochs"):
        small_recipe("train.qat_epochs=3")
    with pytest.raises(ConfigError, match="train.qat_epochs and train.compile"):
        small_recipe("train.qat_epochs=1", "train.compile=true")


@pytest.mark.slow
def test_the_last_epochs_train_quantization_aware_and_resume_exactly(tmp_path, monkeypatch):
    recipe = small_recipe("train.ema_decay=0.9", "train.qat_epochs=2", epochs=3)
    straight = train_run(recipe, dataset=separable_dataset(), out_dir=tmp_path / "straight")
    assert qat.is_enabled(straight.model)  # the EMA copy, evaluated as int8
    run_dir = run_killed_in_epoch(3, recipe, tmp_path / "killed", monkeypatch)
    ranges = RunFolder(run_dir).checkpoints.training_state()["int8_ranges"]
    assert len(ranges) == len(qat.simulated_layers(straight.model)) and all(
        r is not None for r in ranges)  # epoch 2, the first quantization-aware one, saved them
    resumed = train_run(resume=run_dir, dataset=separable_dataset())
    assert without_timings(resumed.history) == without_timings(straight.history)
    for a, b in zip(resumed.model.state_dict().values(), straight.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
