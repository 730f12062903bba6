"""Quantization-aware training for a run's last epochs (`train.qat_epochs = N`): the int8
arithmetic `cnnlab export --int8` will use (ONNX Runtime's static QDQ: weights int8,
symmetric, one scale per output channel; activations int8 with a scale and a zero point per
tensor) simulated in each convolution and linear layer's forward pass, gradients passed
straight through the rounding, so that the weights settle where rounding costs least.

Built on torch's own fake-quantize operators (`torch.fake_quantize_per_channel_affine`,
`torch.fake_quantize_per_tensor_affine`), not on the deprecated `torch.ao.quantization` flow,
nor on torchao (its QAT targets the linear layers of language models, and its PT2E flow needs
a backend quantizer and a `torch.export` of the model), NNCF or Brevitas (each a large
dependency tree for what is here the exporter's one scheme). The layers keep their
parameters and state_dict: the trained weights load into the plain model, which the exporter
quantizes.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn

RANGE_MOMENTUM = 0.01  # how fast an activation range follows each new batch (torch's default)
_SIMULATED = (nn.Conv2d, nn.Linear)


def simulated_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, _SIMULATED)]


def enable(model: nn.Module) -> None:
    """From now on, each convolution and linear layer of `model` computes as its int8 self."""
    for layer in simulated_layers(model):
        if not hasattr(layer, "int8_range"):
            layer.int8_range = None  # (low, high) of its input, followed while training
            layer.forward = types.MethodType(_int8_forward, layer)


def is_enabled(model: nn.Module) -> bool:
    return any(hasattr(layer, "int8_range") for layer in simulated_layers(model))


def ranges(model: nn.Module) -> list[torch.Tensor | None]:
    return [getattr(layer, "int8_range", None) for layer in simulated_layers(model)]


def set_ranges(model: nn.Module, values: list[torch.Tensor | None]) -> None:
    for layer, value in zip(simulated_layers(model), values, strict=True):
        layer.int8_range = None if value is None else value.detach().clone()


def fake_int8(x: torch.Tensor, low_high: torch.Tensor) -> torch.Tensor:
    """`x` rounded to the int8 grid spanning `low_high` (widened to hold 0)."""
    # kept as tensors, so that a GPU never waits to hand a number back
    low, high = low_high[0].clamp(max=0.0), low_high[1].clamp(min=0.0)
    scale = ((high - low) / 255.0).clamp(min=1e-8)
    zero = (-128 - low / scale).round().clamp(-128, 127).to(torch.int32)
    rounded = torch.fake_quantize_per_tensor_affine(x.float(), scale, zero, -128, 127)
    return rounded.to(x.dtype)


def fake_int8_weights(weight: torch.Tensor) -> torch.Tensor:
    """`weight` rounded to int8, symmetric, one scale per output channel."""
    reach = weight.detach().abs().flatten(1).amax(1).clamp_min(1e-8)
    zeros = torch.zeros(len(reach), dtype=torch.int32, device=weight.device)
    return torch.fake_quantize_per_channel_affine(weight, reach / 127.0, zeros, 0, -127, 127)


def _int8_forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    low_high = self.int8_range
    if self.training or low_high is None:  # evaluation reads the range training followed
        seen = torch.stack([x.detach().min(), x.detach().max()]).float()
        low_high = seen if low_high is None else torch.lerp(low_high, seen, RANGE_MOMENTUM)
        if self.training:
            self.int8_range = low_high
    x = fake_int8(x, low_high)
    weight = fake_int8_weights(self.weight)
    if isinstance(self, nn.Conv2d):
        return self._conv_forward(x, weight, self.bias)
    return F.linear(x, weight, self.bias)
