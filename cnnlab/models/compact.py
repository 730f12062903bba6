"""`compact_cnn`: one family of small CNNs whose arguments describe the layout, so a design
search (`cnnlab design`) and a sweep vary the layout itself, not only widths.

A network is a row of stages. Each stage is a few 3x3 convolutions of one kind; between
stages a transition shrinks the map (MaxPool, a strided or a dilated first conv in the next
stage), optionally followed by a 1x1 squeeze; a stage's last conv may be applied again with
the same weights (depth for no parameters); the head pools and classifies. The first
stages may run as parallel branches whose maps are concatenated (the S9 seed's layout).
Every argument is a plain value (numbers, strings, lists of them), so a recipe or a sweep
space sets it like any model argument; a sweep key may index a list: `model.args.widths.1`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.models.blocks import FeaturesThenHead, Residual
from cnnlab.models.registration import register

BLOCKS = ("plain", "separable", "dilated", "residual")
TRANSITIONS = ("maxpool", "strided", "dilated", "none")
HEADS = ("gap_fc", "conv_gap")
NORMS = ("after_relu", "before_relu", "none")
DROPOUT_PLACES = ("convs", "pools", "head")
PADDINGS = ("same", "valid")


@register(dataset="mnist")  # its defaults: a greyscale 28x28 net
def compact_cnn(
    num_classes: int = 10,
    in_channels: int = 1,
    widths: Sequence[int | Sequence[int]] = (8, 16, 16),
    depths: int | Sequence[int] = 2,
    block: str | Sequence[str] = "plain",
    transition: str | Sequence[str] = "maxpool",
    squeeze: int | Sequence[int] = 0,
    reuse: int | Sequence[int] = 0,
    branches: Sequence[str] = (),
    branch_stages: int = 1,
    head: str = "gap_fc",
    head_kernel: int = 1,
    norm: str = "after_relu",
    dropout: float = 0.0,
    dropout_at: str = "convs",
    padding: str | Sequence[str] = "same",
    bias: bool = False,
) -> nn.Module:
    """A compact CNN described by its layout.

    - `widths`: per stage, the channels of its convs: one number (for `depths` convs) or one
      per conv. `depths`: convs per stage (a number for all, or one per stage).
    - `block`: per stage (or one for all): `plain` 3x3 conv, `separable` (depthwise 3x3 then
      pointwise 1x1), `dilated` (3x3, dilation 2), `residual` (plain, with a skip wherever
      the conv keeps the channel count).
    - `transition`: after each stage but the last (or after every stage, for a pool before
      the head): `maxpool` (2x2), `strided` (the next stage's first conv has stride 2),
      `dilated` (the next stage's first conv is dilated, unpadded: the map shrinks by 4),
      `none`. `squeeze`: channels of a 1x1 conv right after each MaxPool (0: none), per stage
      or one for all.
    - `reuse`, per stage or one for all: how many more times the stage's last conv is
      applied right after it, with the same weights (its own BatchNorm, ReLU and dropout each
      time; padded to keep the map's size). Depth and receptive field for a BatchNorm's
      parameters: a small net is short of parameters, not of compute. The conv must keep its
      channel count and stride 1.
    - `branches`: e.g. `["dilated", "plain"]`: the first `branch_stages` stages run once per
      entry, side by side, the first stage's block being that entry; their maps are
      concatenated.
    - `head`: `gap_fc` (global average pool, then a linear layer) or `conv_gap` (a
      `head_kernel` conv to the classes, BatchNorm unless `norm` is none, then the pool).
    - `norm`: BatchNorm `after_relu` (conv -> ReLU -> BN, as the seeds), `before_relu`, or
      `none`. `dropout` (p) sits after every conv block (`convs`), after each MaxPool
      (`pools`) or on the pooled features before the head (`head`).
    - `padding`, per stage or one for all: `same` keeps a map's size through a conv; `valid`
      makes each 3x3 conv, dilated or not, trim a pixel from every side (cheaper, and the map
      shrinks toward the head). A strided conv is padded to halve the map either way.
    """
    layout = _Layout.read(widths, depths, block, transition, squeeze, reuse, branches,
                          branch_stages)
    _choose("head", head, HEADS)
    _choose("norm", norm, NORMS)
    _choose("dropout_at", dropout_at, DROPOUT_PLACES)
    paddings = _per_stage("padding", padding, layout.count)
    for kind in paddings:
        _choose("padding", kind, PADDINGS)
    if not 0 <= dropout < 1:
        raise ModelError(f"compact_cnn: dropout must be in [0, 1), not {dropout}")
    make = _Maker(norm, dropout if dropout_at == "convs" else 0.0, bias)
    pool_dropout = dropout if dropout_at == "pools" else 0.0

    def stages(first: int, last: int, channels: int, first_block: str | None) -> tuple[
            list[nn.Module], int]:
        layers: list[nn.Module] = []
        for i in range(first, last):
            kind = first_block if i == first and first_block else layout.blocks[i]
            entry = layout.transitions[i - 1] if i > 0 else "none"
            for j, width in enumerate(layout.widths[i]):
                layers.append(make.block(kind, channels, width, entry if j == 0 else "none",
                                         paddings[i] == "same"))
                channels = width
            layers += [make.again(layers[-1], i) for _ in range(layout.reuses[i])]
            if i < last - 1 or last == layout.count:
                after, channels = _after_stage(layout, i, make, pool_dropout, channels)
                layers += after
        return layers, channels

    split = layout.branch_stages if layout.branches else 0
    trunk_in = in_channels
    front: nn.Module | None = None
    if split:
        arms = []
        for kind in layout.branches:
            layers, arm_out = stages(0, split, in_channels, kind)
            arms.append(nn.Sequential(*layers))
        front = Branches(arms)
        trunk_in = arm_out * len(arms)
        # the transition where the branches join the trunk
        after_split, trunk_in = _after_stage(layout, split - 1, make, pool_dropout, trunk_in)
    else:
        after_split = []
    body, channels = stages(split, layout.count, trunk_in, None)
    layers = ([front] if front is not None else []) + after_split + body
    if head == "conv_gap":
        layers.append(nn.Conv2d(channels, num_classes, head_kernel, padding=head_kernel // 2,
                                bias=norm == "none"))
        if norm != "none":
            layers.append(nn.BatchNorm2d(num_classes))
        layers.append(nn.AdaptiveAvgPool2d(1))
        return FeaturesThenHead(nn.Sequential(*layers), nn.Identity())
    layers.append(nn.AdaptiveAvgPool2d(1))
    if dropout_at == "head" and dropout:
        layers.append(nn.Dropout(dropout))
    return FeaturesThenHead(nn.Sequential(*layers), nn.Linear(channels, num_classes))


class Branches(nn.Module):
    """Each branch reads the input; their maps are concatenated along the channels."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class _Layout:
    """The stage-wise arguments, checked and spelled out per stage."""

    def __init__(self, widths: list[list[int]], blocks: list[str], transitions: list[str],
                 squeezes: list[int], reuses: list[int], branches: list[str],
                 branch_stages: int):
        self.widths, self.blocks, self.transitions = widths, blocks, transitions
        self.squeezes, self.reuses = squeezes, reuses
        self.branches, self.branch_stages = branches, branch_stages
        self.count = len(widths)

    @classmethod
    def read(cls, widths: Any, depths: Any, block: Any, transition: Any, squeeze: Any,
             reuse: Any, branches: Any, branch_stages: int) -> _Layout:
        if isinstance(widths, int) or not widths:
            raise ModelError("compact_cnn: widths is a list with one entry per stage, e.g. "
                             "[8, 16, 16]")
        count = len(widths)
        per_depth = _per_stage("depths", depths, count)
        stage_widths = []
        for i, entry in enumerate(widths):
            convs = [entry] * per_depth[i] if isinstance(entry, int) else list(entry)
            if not convs or any(not isinstance(w, int) or isinstance(w, bool) or w < 1
                                for w in convs):
                raise ModelError(f"compact_cnn: stage {i + 1} needs at least one conv of at "
                                 f"least 1 channel (widths {entry!r}, depths {per_depth[i]})")
            stage_widths.append(convs)
        blocks = _per_stage("block", block, count)
        for kind in blocks:
            _choose("block", kind, BLOCKS)
        # One transition per stage boundary, plus optionally one after the last stage.
        if isinstance(transition, str):
            transitions = [transition] * (count - 1) + ["none"]
        else:
            transitions = list(transition) + ["none"] * (count - len(transition))
            if not count - 1 <= len(transition) <= count:
                raise ModelError(f"compact_cnn: transition has {len(transition)} entries for "
                                 f"{count} stages: give {count - 1} (between stages) or {count}")
        for kind in transitions:
            _choose("transition", kind, TRANSITIONS)
        if transitions[-1] in ("strided", "dilated"):
            raise ModelError("compact_cnn: after the last stage only maxpool or none fit: a "
                             f"{transitions[-1]} transition shapes the next stage's first conv")
        squeezes = _per_stage("squeeze", squeeze, count)
        reuses = _per_stage("reuse", reuse, count)
        if any(not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in reuses):
            raise ModelError(f"compact_cnn: reuse counts the extra applications of a stage's "
                             f"last conv: whole numbers from 0, not {reuse!r}")
        branch_list = list(branches)
        for kind in branch_list:
            _choose("branches", kind, BLOCKS)
        if branch_list and not 1 <= branch_stages < count:
            raise ModelError(f"compact_cnn: branch_stages must be 1 to {count - 1}: a stage "
                             "after the branches joins them")
        return cls(stage_widths, blocks, transitions, squeezes, reuses, branch_list,
                   branch_stages)


class _Maker:
    """Builds conv blocks with the network's norm, dropout, padding and bias settings."""

    def __init__(self, norm: str, dropout: float, bias: bool):
        self.norm, self.dropout, self.bias = norm, dropout, bias

    def block(self, kind: str, cin: int, cout: int, entry: str, same: bool) -> nn.Module:
        """One conv block of `kind`; `entry` is the transition it starts a stage after, `same`
        whether it keeps the map's size."""
        stride = 2 if entry == "strided" else 1
        dilation = 2 if kind == "dilated" or entry == "dilated" else 1
        if entry == "dilated":
            pad = 0  # the transition: the map shrinks by 4
        elif same or stride > 1:
            pad = dilation
        else:
            pad = dilation - 1  # trims one pixel per side, as an unpadded plain 3x3
        if kind == "separable":
            convs: list[nn.Module] = [
                nn.Conv2d(cin, cin, 3, stride=stride, padding=pad, dilation=dilation,
                          groups=cin, bias=False),
                nn.Conv2d(cin, cout, 1, bias=self.bias)]
        else:
            convs = [nn.Conv2d(cin, cout, 3, stride=stride, padding=pad, dilation=dilation,
                               bias=self.bias)]
        unit = nn.Sequential(*convs, *self.activation(cout))
        keeps_shape = cin == cout and stride == 1 and (pad == dilation)
        return Residual(unit) if kind == "residual" and keeps_shape else unit

    def again(self, unit: nn.Module, stage: int) -> nn.Module:
        """`unit` (a stage's last conv block) applied once more: the very same conv modules,
        so their weights are one set, trained by both calls; padded to keep the map's size;
        a BatchNorm (and dropout) of its own."""
        convs = [m for m in unit.modules() if isinstance(m, nn.Conv2d)]
        first, last = convs[0], convs[-1]
        if first.in_channels != last.out_channels or first.stride != (1, 1):
            raise ModelError(
                f"compact_cnn: stage {stage + 1} reuses its last conv, which maps "
                f"{first.in_channels} to {last.out_channels} channels with stride "
                f"{first.stride[0]}: a conv applied again must keep both (give the stage a "
                "second conv of its width, or reuse 0)")
        missing = first.dilation[0] - first.padding[0]  # what keeps the map's size
        pad = [nn.ZeroPad2d(missing)] if missing else []
        again = nn.Sequential(*pad, *convs, *self.activation(last.out_channels))
        return Residual(again) if isinstance(unit, Residual) else again

    def activation(self, channels: int) -> list[nn.Module]:
        bn = [nn.BatchNorm2d(channels)] if self.norm != "none" else []
        relu = [nn.ReLU()]
        layers = bn + relu if self.norm == "before_relu" else relu + bn
        return layers + ([nn.Dropout(self.dropout)] if self.dropout else [])

    def squeeze(self, cin: int, cout: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=self.bias), *self.activation(cout))

    @staticmethod
    def transition(kind: str, dropout: float) -> list[nn.Module]:
        if kind != "maxpool":
            return []  # strided and dilated shape the next stage's first conv
        return [nn.MaxPool2d(2, 2)] + ([nn.Dropout(dropout)] if dropout else [])


def _after_stage(layout: _Layout, stage: int, make: _Maker, dropout: float, channels: int
                 ) -> tuple[list[nn.Module], int]:
    """The layers that follow `stage`: its transition's pool, then the 1x1 squeeze that
    follows a MaxPool, if any; and the channels after them."""
    layers = make.transition(layout.transitions[stage], dropout)
    squeeze = layout.squeezes[stage]
    if squeeze and layout.transitions[stage] == "maxpool":
        layers.append(make.squeeze(channels, squeeze))
        channels = squeeze
    return layers, channels


def _per_stage(name: str, value: Any, count: int) -> list[Any]:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return [value] * count
    values = list(value)
    if len(values) != count:
        raise ModelError(f"compact_cnn: {name} has {len(values)} entries for {count} stages")
    return values


def _choose(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ModelError(f"compact_cnn: {name} = {value!r} is not one of {', '.join(allowed)}")
