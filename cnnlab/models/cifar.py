"""CIFAR-10 models: the S9 two-branch dilated/depthwise net and the S10 custom ResNet."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from cnnlab.models.blocks import (
    FeaturesThenHead,
    Residual,
    conv_pool_bn_relu,
    conv_relu_bn,
    depthwise_separable_relu_bn,
    scaled_channels,
)
from cnnlab.models.registration import register


class TwoBranchNet(nn.Module):
    """Two branches read the input; their maps are concatenated and reduced by `trunk`."""

    def __init__(self, branch_a: nn.Module, branch_b: nn.Module, trunk: nn.Module):
        super().__init__()
        self.branch_a = branch_a
        self.branch_b = branch_b
        self.trunk = trunk

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trunk(torch.cat([self.branch_a(x), self.branch_b(x)], dim=1)).flatten(1)


@register(dataset="cifar10")
def cifar_s9(num_classes: int = 10, dropout: float = 0.01, in_channels: int = 3,
             width_multiplier: float = 1.0) -> nn.Module:
    """S9 seed, C1C2C3C40 per its RF table: branch A dilated, branch B plain, strided convs
    instead of MaxPool, a depthwise-separable conv, GAP. 94,292 parameters, as the seed.

    The seed's table is inconsistent in places (B's nin column, Conv5's padding); this reads
    it so every map size chains: 32 -> 14 in both branches, 14 -> 12 -> 6 -> 1 after them.
    The seed's total is matched exactly with no BatchNorm between the depthwise and the
    pointwise conv, and one after the last conv. `width_multiplier` scales every layer's channels.
    """
    c = partial(scaled_channels, multiplier=width_multiplier)
    def branch(dilation: int) -> nn.Sequential:
        pad = dilation - 1  # dilated: 32 -> 30 -> 28; plain: same sizes without padding
        return nn.Sequential(
            conv_relu_bn(in_channels, c(12), padding=pad, dilation=dilation, bias=False,
                         dropout=dropout),
            conv_relu_bn(c(12), c(24), padding=pad, dilation=dilation, bias=False,
                         dropout=dropout),
            conv_relu_bn(c(24), c(48), padding=1, stride=2, bias=False, dropout=dropout),  # 14
            conv_relu_bn(c(48), c(48), padding=1, bias=False, dropout=dropout),  # 14
        )

    trunk = nn.Sequential(
        depthwise_separable_relu_bn(2 * c(48), c(60)),  # both branches' maps; 14 -> 12
        conv_relu_bn(c(60), c(30), padding=1, stride=2, bias=False, dropout=dropout),  # 6
        nn.Conv2d(c(30), num_classes, 3, padding=1, bias=False),  # 6
        nn.BatchNorm2d(num_classes),
        nn.AdaptiveAvgPool2d(1),  # GAP
    )
    return TwoBranchNet(branch(2), branch(1), trunk)


@register(dataset="cifar10")
def cifar_s10_resnet(num_classes: int = 10, dropout: float = 0.0, in_channels: int = 3,
                     width_multiplier: float = 1.0) -> nn.Module:
    """S10 seed (David Page's DAWNBench ResNet): prep 64 -> [128, pool] + res(128) ->
    [256, pool] -> [512, pool] + res(512) -> MaxPool 4 -> FC. 6,573,130 parameters.
    `width_multiplier` scales every layer's channels."""
    a, b, d, e = (scaled_channels(n, width_multiplier) for n in (64, 128, 256, 512))
    features = nn.Sequential(
        conv_pool_bn_relu(in_channels, a, dropout=dropout),
        conv_pool_bn_relu(a, b, pool=True, dropout=dropout),
        Residual(nn.Sequential(conv_pool_bn_relu(b, b, dropout=dropout),
                               conv_pool_bn_relu(b, b, dropout=dropout))),
        conv_pool_bn_relu(b, d, pool=True, dropout=dropout),
        conv_pool_bn_relu(d, e, pool=True, dropout=dropout),
        Residual(nn.Sequential(conv_pool_bn_relu(e, e, dropout=dropout),
                               conv_pool_bn_relu(e, e, dropout=dropout))),
        nn.MaxPool2d(4),
    )
    return FeaturesThenHead(features, nn.Linear(e, num_classes))


@register(dataset="cifar10")
def cifar_s9_res(num_classes: int = 10, dropout: float = 0.0, in_channels: int = 3,
                 width_multiplier: float = 1.0) -> nn.Module:
    """Within the S9 rules, built to converge in few epochs: C1 C2 C3 C4, each ending in a
    strided conv instead of MaxPool, residual blocks in C2-C4 (a dilated one in C2,
    depthwise-separable ones in C3-C4, where a full conv would spend the parameter budget),
    then a 1x1 conv to the classes and GAP. RF 87 (the rule: > 44); 160,152 parameters.
    `width_multiplier` scales every layer's channels."""
    c = partial(scaled_channels, multiplier=width_multiplier)
    unit = partial(conv_relu_bn, padding=1, bias=False, dropout=dropout)
    def separable(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
        return depthwise_separable_relu_bn(cin, cout, padding=1, stride=stride)

    features = nn.Sequential(
        # C1, 32x32: a thin stem, then halve the map
        unit(in_channels, c(24)), unit(c(24), c(32)), unit(c(32), c(64), stride=2),  # 16
        # C2, 16x16: a residual pair, its first conv dilated (RF grows 2x per layer)
        Residual(nn.Sequential(unit(c(64), c(64), padding=2, dilation=2),
                               unit(c(64), c(64)))),
        separable(c(64), c(96), stride=2),  # 8
        # C3, 8x8
        Residual(nn.Sequential(separable(c(96), c(96)), separable(c(96), c(96)))),
        separable(c(96), c(128), stride=2),  # 4
        # C4, 4x4
        Residual(separable(c(128), c(128))),
        nn.Conv2d(c(128), num_classes, 1, bias=False),
        nn.AdaptiveAvgPool2d(1),  # GAP
    )
    return FeaturesThenHead(features, nn.Identity())
