"""The small set of named blocks the models are built from."""

from __future__ import annotations

import torch
from torch import nn


def conv_relu_bn(
    cin: int,
    cout: int,
    kernel: int = 3,
    *,
    padding: int = 0,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = True,
    dropout: float = 0.0,
    dropout2d: bool = False,
) -> nn.Sequential:
    """Conv -> ReLU -> BatchNorm -> [Dropout]: the order the S4-S9 seed models use."""
    layers = [*conv_relu(cin, cout, kernel, padding=padding, stride=stride, dilation=dilation,
                         groups=groups, bias=bias), nn.BatchNorm2d(cout)]
    if dropout:
        layers.append(nn.Dropout2d(dropout) if dropout2d else nn.Dropout(dropout))
    return nn.Sequential(*layers)


def conv_relu(cin: int, cout: int, kernel: int = 3, *, padding: int = 0, stride: int = 1,
              dilation: int = 1, groups: int = 1, bias: bool = True) -> nn.Sequential:
    """Conv -> ReLU, no BatchNorm: the seeds' 1x1 squeezes."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding,
                                   dilation=dilation, groups=groups, bias=bias), nn.ReLU())


def scaled_channels(channels: int, multiplier: float) -> int:
    """`channels` times a width multiplier (at least 1): how the seed models take a
    `width_multiplier` argument for a search, 1.0 giving the seed's own layer sizes."""
    return max(1, round(channels * multiplier))


class FeaturesThenHead(nn.Module):
    """`features` (any module ending in a [N, C, H, W] map), flattened, then `head`.

    Flattening happens in `forward`, not as a module, so layer tables list the same rows as
    the seeds' torchsummary tables.
    """

    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def conv_pool_bn_relu(
    cin: int, cout: int, *, pool: bool = False, dropout: float = 0.0
) -> nn.Sequential:
    """3x3 conv (no bias) -> [MaxPool 2] -> BatchNorm -> ReLU -> Dropout (p may be 0, as in
    the seed's table): the S10 ResNet's unit."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
    if pool:
        layers.append(nn.MaxPool2d(2, 2))
    layers += [nn.BatchNorm2d(cout), nn.ReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + body(x)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def depthwise_separable_relu_bn(
    cin: int, cout: int, kernel: int = 3, padding: int = 0, stride: int = 1
) -> nn.Sequential:
    """Depthwise kxk conv (groups = cin) then pointwise 1x1 conv -> ReLU -> BatchNorm."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, kernel, stride=stride, padding=padding, groups=cin, bias=False),
        nn.Conv2d(cin, cout, 1, bias=False),
        nn.ReLU(),
        nn.BatchNorm2d(cout),
    )
