"""`cifar_speed`: a small CIFAR-10 net built for time-to-94%, after the techniques the fastest
public trainers describe (airbench): a fixed patch-whitening first layer fitted to the data,
identity-initialised convolutions, BatchNorm with frozen scales, GELU, a scaled linear head.
cnnlab's own implementation; the recipe `cifar-94-10ep` adds the training-side techniques."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.config import TrainConfig
from cnnlab.errors import ModelError
from cnnlab.models.registration import register


class PatchWhitening(nn.Conv2d):
    """A 2x2 convolution whose filters whiten the 12-dimensional 2x2x3 patches of the
    training images: each eigenvector of their covariance scaled by 1/sqrt(eigenvalue), and
    its negative (so a following GELU keeps both signs). Weights stay fixed; the bias trains,
    for the first `train.whitening_bias_epochs` epochs when a recipe sets it."""

    train_settings = ("whitening_bias_epochs",)  # what prepare.py lets a recipe set for it

    def __init__(self, in_channels: int = 3, eps: float = 5e-4):
        patch = in_channels * 4
        super().__init__(in_channels, 2 * patch, kernel_size=2, padding=0, bias=True)
        self.eps = eps
        self.weight.requires_grad_(False)

    def on_epoch_start(self, epoch: int, train: TrainConfig) -> None:
        """The trainer's per-epoch hook: the bias trains until `whitening_bias_epochs`."""
        if train.whitening_bias_epochs is not None:
            self.bias.requires_grad_(epoch <= train.whitening_bias_epochs)

    @torch.no_grad()
    def init_from_data(self, images: torch.Tensor) -> None:
        """Fit the filters to normalised training images [N, C, H, W]."""
        patches = F.unfold(images.float(), kernel_size=2).transpose(1, 2)
        patches = patches.reshape(-1, self.in_channels * 4)
        mean = patches.mean(0)
        centred = patches - mean
        covariance = centred.T @ centred / len(centred)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance.double())
        filters = (eigenvectors.T / (eigenvalues.clamp_min(0) + self.eps).sqrt()[:, None]).float()
        filters = torch.cat([filters, -filters])  # [2 * C * 4, C * 4]
        self.weight.copy_(filters.view_as(self.weight))
        self.bias.copy_(-filters @ mean)  # zero-mean outputs on the data it was fitted to


def speed_bn(channels: int, momentum: float, freeze_scale: bool) -> nn.BatchNorm2d:
    """BatchNorm with fast statistics; with `freeze_scale` its scale stays 1 and only the shift
    trains (fewer, better-conditioned parameters; the next conv's weights carry the scale)."""
    bn = nn.BatchNorm2d(channels, momentum=momentum, eps=1e-12)
    bn.weight.requires_grad_(not freeze_scale)
    return bn


def identity_init_conv(cin: int, cout: int, identity: bool = True) -> nn.Conv2d:
    """3x3 conv whose first min(cin, cout) filters start as the identity (Dirac) plus its
    default random init: the block starts close to passing its input through."""
    conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
    if identity:
        with torch.no_grad():
            n = min(cin, cout)
            nn.init.dirac_(conv.weight[:n, :n])
    return conv


class ConvGroup(nn.Sequential):
    """conv -> 2x2 max-pool -> BN -> GELU -> conv -> BN -> GELU."""

    def __init__(self, cin: int, cout: int, bn_momentum: float, freeze_bn_scale: bool,
                 identity_init: bool):
        super().__init__(
            identity_init_conv(cin, cout, identity_init), nn.MaxPool2d(2),
            speed_bn(cout, bn_momentum, freeze_bn_scale), nn.GELU(),
            identity_init_conv(cout, cout, identity_init),
            speed_bn(cout, bn_momentum, freeze_bn_scale), nn.GELU(),
        )


class SpeedNet(nn.Module):
    def __init__(self, widths: tuple[int, int, int], num_classes: int, head_scale: float,
                 in_channels: int = 3, **group_options):
        super().__init__()
        self.whiten = PatchWhitening(in_channels)
        self.act = nn.GELU()
        self.groups = nn.Sequential(
            ConvGroup(self.whiten.out_channels, widths[0], **group_options),
            ConvGroup(widths[0], widths[1], **group_options),
            ConvGroup(widths[1], widths[2], **group_options),
        )
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.head_scale = head_scale

    def init_from_data(self, images: torch.Tensor) -> None:
        """Called by the trainer before the first step with normalised training images."""
        self.whiten.init_from_data(images)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.groups(self.act(self.whiten(x)))
        return self.head(self.pool(x).flatten(1)) * self.head_scale


@register(dataset="cifar10")
def cifar_speed(num_classes: int = 10, widths: tuple[int, int, int] = (64, 256, 256),
                head_scale: float = 1 / 9, in_channels: int = 3, bn_momentum: float = 0.4,
                freeze_bn_scale: bool = True, identity_init: bool = True) -> nn.Module:
    """Whitening 2x2 conv (24 maps, 31x31) -> three conv groups (64, 256, 256 channels;
    31 -> 15 -> 7 -> 3) -> global max-pool -> linear, logits scaled down by `head_scale`
    (a softer start for the cross-entropy). ~1.97M parameters.

    `bn_momentum` is PyTorch's: the weight of each batch in the running statistics (airbench's
    0.6 is the weight of the old average). `freeze_bn_scale` and `identity_init` switch off
    those two techniques, for ablations (BENCHMARKS.md, cifar-94-10ep)."""
    if not 0 < bn_momentum <= 1:
        raise ModelError(f"cifar_speed: bn_momentum must be in (0, 1], not {bn_momentum}")
    return SpeedNet(tuple(widths), num_classes, head_scale, in_channels, bn_momentum=bn_momentum,
                    freeze_bn_scale=freeze_bn_scale, identity_init=identity_init)
