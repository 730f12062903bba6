"""MNIST models: the three seed models, layer for layer, and cnnlab's own fast model."""

from __future__ import annotations

from functools import partial

from torch import nn

from cnnlab.models.blocks import FeaturesThenHead, conv_relu, conv_relu_bn, scaled_channels
from cnnlab.models.registration import register


@register(dataset="mnist")
def mnist_s4(num_classes: int = 10, dropout: float = 0.1, in_channels: int = 1,
             width_multiplier: float = 1.0) -> nn.Module:
    """Session 4 seed: 18,650 parameters, bias-free convs, one MaxPool, AvgPool(8) then FC.
    `width_multiplier` scales every layer's channels."""
    c = partial(scaled_channels, multiplier=width_multiplier)
    features = nn.Sequential(
        conv_relu_bn(in_channels, c(16), padding=1, bias=False),  # 28
        conv_relu_bn(c(16), c(16), padding=1, bias=False),  # 28
        conv_relu_bn(c(16), c(64), padding=1, bias=False),  # 28
        nn.MaxPool2d(2, 2),  # 14
        conv_relu(c(64), c(8), 1, bias=False),  # 14, 1x1 squeeze
        conv_relu_bn(c(8), c(16), bias=False, dropout=dropout, dropout2d=True),  # 12
        conv_relu_bn(c(16), c(16), bias=False),  # 10
        conv_relu(c(16), c(16), 1, bias=False),  # 10
        conv_relu_bn(c(16), c(16), bias=False),  # 8
        nn.AvgPool2d(8),  # GAP: 8x8 -> 1x1
    )
    return FeaturesThenHead(features, nn.Linear(c(16), num_classes))


@register(dataset="mnist")
def mnist_s5(num_classes: int = 10, dropout: float = 0.25, in_channels: int = 1,
             width_multiplier: float = 1.0) -> nn.Module:
    """Session 5 seed: 19,290 parameters, three MaxPools down to 1x1, then FC.
    `width_multiplier` scales every layer's channels."""
    c = partial(scaled_channels, multiplier=width_multiplier)
    features = nn.Sequential(
        conv_relu_bn(in_channels, c(16), padding=1),  # 28
        conv_relu_bn(c(16), c(16)),  # 26
        nn.MaxPool2d(2, 2),  # 13
        nn.Dropout(dropout),
        conv_relu_bn(c(16), c(16), padding=1),  # 13
        conv_relu_bn(c(16), c(32), padding=1),  # 13
        conv_relu_bn(c(32), c(16), stride=2, padding=1),  # 7
        nn.MaxPool2d(2, 2),  # 3
        nn.Dropout(dropout),
        conv_relu_bn(c(16), c(32), padding=1),  # 3
        nn.MaxPool2d(2, 2),  # 1
        nn.Dropout(dropout),
    )
    return FeaturesThenHead(features, nn.Linear(c(32), num_classes))


@register(dataset="mnist")
def mnist_26k(num_classes: int = 10, dropout: float = 0.1, in_channels: int = 1,
              width_multiplier: float = 1.0) -> nn.Module:
    """The 26,314-parameter baseline: two 3-conv stages with 1x1 squeezes, a 5x5x32 FC head.
    `width_multiplier` scales every layer's channels."""
    c = partial(scaled_channels, multiplier=width_multiplier)
    features = nn.Sequential(
        conv_relu_bn(in_channels, c(8), dropout=dropout),  # 26
        conv_relu_bn(c(8), c(16), dropout=dropout),  # 24
        conv_relu_bn(c(16), c(32), dropout=dropout),  # 22
        conv_relu_bn(c(32), c(8), 1, dropout=dropout),  # 22
        conv_relu_bn(c(8), c(16), dropout=dropout),  # 20
        conv_relu_bn(c(16), c(32), dropout=dropout),  # 18
        nn.MaxPool2d(2, 2),  # 9
        conv_relu_bn(c(32), c(8), 1, dropout=dropout),  # 9
        conv_relu_bn(c(8), c(16), dropout=dropout),  # 7
        nn.Conv2d(c(16), c(32), 3),  # 5
    )
    return FeaturesThenHead(features, nn.Linear(c(32) * 5 * 5, num_classes))


@register(dataset="mnist")
def mnist_pool(num_classes: int = 10, width: int = 16, dropout: float = 0.05,
               in_channels: int = 1) -> nn.Module:
    """cnnlab's model for the S4/S5 assignment (<20k parameters, BN, Dropout, GAP, FC).

    Cheap where it matters on a CPU: few channels at 28x28, a MaxPool after two convs, so most
    of the compute happens on 12x12 and smaller maps.
    """
    w = width
    features = nn.Sequential(
        conv_relu_bn(in_channels, w // 2, bias=False),  # 26, RF 3
        conv_relu_bn(w // 2, w, bias=False, dropout=dropout),  # 24, RF 5
        nn.MaxPool2d(2, 2),  # 12, RF 6
        conv_relu_bn(w, w, bias=False, dropout=dropout),  # 10, RF 10
        conv_relu_bn(w, w, bias=False, dropout=dropout),  # 8, RF 14
        conv_relu_bn(w, 3 * w // 2, bias=False, dropout=dropout),  # 6, RF 18
        conv_relu_bn(3 * w // 2, 2 * w, padding=1, bias=False),  # 6, RF 22
        nn.AdaptiveAvgPool2d(1),  # GAP
    )
    return FeaturesThenHead(features, nn.Linear(2 * w, num_classes))


@register(dataset="mnist")
def mnist_strided(num_classes: int = 10, width: int = 16, dropout: float = 0.02,
                  in_channels: int = 1) -> nn.Module:
    """`mnist_pool` made cheap per image on a CPU, with the same 16,754 parameters:

    - its second conv strided instead of followed by a MaxPool: a third fewer multiply-adds
      (the 24x24 map that conv computed in full is never made);
    - one Dropout, on the pooled features before the FC, instead of one after each conv:
      a CPU draws a random number per masked value, so masks on every feature map are a large
      share of a training step (docs/benchmarks/cpu-tunings.md, "CPU tunings").
    """
    w = width
    features = nn.Sequential(
        conv_relu_bn(in_channels, w // 2, bias=False),  # 26, RF 3
        conv_relu_bn(w // 2, w, stride=2, bias=False),  # 12, RF 5
        conv_relu_bn(w, w, bias=False),  # 10, RF 9
        conv_relu_bn(w, w, bias=False),  # 8, RF 13
        conv_relu_bn(w, 3 * w // 2, bias=False),  # 6, RF 17
        conv_relu_bn(3 * w // 2, 2 * w, padding=1, bias=False),  # 6, RF 21
        nn.AdaptiveAvgPool2d(1),  # GAP
        nn.Dropout(dropout),  # on the pooled features, so the FC sees them masked
    )
    return FeaturesThenHead(features, nn.Linear(2 * w, num_classes))
