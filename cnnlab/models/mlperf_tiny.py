"""MLPerf Tiny's image-classification reference model: the ResNet-8 of mlcommons/tiny
(`resnet_v1_eembc`), written in PyTorch layer for layer. A 3x3 stem, then three stacks of two
3x3 convolutions at 16, 32 and 64 channels (the second and third halve the map, with a
strided 1x1 convolution on the shortcut), 8x8 average pooling and a linear layer: the net
MLPerf Tiny's CIFAR-10 task is scored with (>= 85% top-1 for the int8 model)."""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models.blocks import FeaturesThenHead
from cnnlab.models.registration import register


class _Stack(nn.Module):
    """relu(shortcut(x) + bn(conv(relu(bn(conv(x)))))): the reference's stack, its shortcut
    the identity or, where the stack changes size, a strided 1x1 convolution (no BatchNorm)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
            nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout))
        self.shortcut = (nn.Identity() if stride == 1 and cin == cout
                         else nn.Conv2d(cin, cout, 1, stride=stride))
        self.out = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.shortcut(x) + self.body(x))


@register(dataset="cifar10")
def mlperf_resnet8(num_classes: int = 10, in_channels: int = 3, filters: int = 16
                   ) -> nn.Module:
    """ResNet-8 as MLPerf Tiny's reference: `filters` 16 (the reference's; 26 is its 200k
    variant). Convolutions keep their biases, as Keras's do."""
    features = nn.Sequential(
        nn.Conv2d(in_channels, filters, 3, padding=1), nn.BatchNorm2d(filters), nn.ReLU(),
        _Stack(filters, filters, 1), _Stack(filters, 2 * filters, 2),
        _Stack(2 * filters, 4 * filters, 2), nn.AdaptiveAvgPool2d(1))
    return FeaturesThenHead(features, nn.Linear(4 * filters, num_classes))
