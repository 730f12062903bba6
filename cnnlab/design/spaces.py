"""The default starting point of a design search, per input shape: the training recipe whose
settings every candidate trains with, the family's base arguments, and the space around them.
A design file may replace any of the three."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnnlab.errors import ConfigError


@dataclass(frozen=True)
class Start:
    recipe: str  # a built-in recipe: optimiser, schedule, augmentation, batch size
    model_args: dict[str, Any]  # compact_cnn's arguments where the space does not set them
    space: dict[str, dict[str, Any]]  # recipe key -> distribution, as in [sweep.space]
    set: tuple[str, ...] = ()  # overrides of `recipe` for the nets of this space
    # Multi-fidelity (rungs.py): the short rungs' epochs, and per length the points of
    # validation accuracy a design gains from it to the full training (the median over the
    # designs of benchmarks/rung_correlation.py; BENCHMARKS.md). No rungs: every design
    # trains at full length.
    rungs: tuple[int, ...] = ()
    rung_gaps: dict[int, float] = field(default_factory=dict)
    # ... and how well each length ranks designs as the full training does (Spearman's rank
    # correlation over the same designs): what the rungs rely on, said in the design README
    rung_spearman: dict[int, float] = field(default_factory=dict)
    # Points by which a design's test accuracy runs above its validation accuracy (held-out
    # training images can be harder than the test split, as MNIST's are): the default
    # validation target is the spec's test target less this (median over the same designs).
    val_offset: float = 0.0
    # Points a design must hold above the target, on average over seeds, for every one of the
    # confirmation's runs (3 seeds x 2 precisions, each the lowest of its last epochs) to meet
    # it four times in five: 1.8 standard deviations of that lowest value across seeds (from
    # the confirmations of one design of this shape; docs/benchmarks/design.md). Added to the
    # default validation target, so that the search aims where confirmation holds. Once the
    # design library holds enough confirmation runs of this shape, their spread decides it
    # instead (library.seed_spread).
    seed_margin: float = 0.0


# Small greyscale digits and clothes: three stages from 28x28, MaxPool or a strided conv
# between them, GAP then FC (what the S4/S5 rules require). The base design, which every
# study starts from scaled to its budget, is the first design of this family confirmed under
# the S4/S5 rule, at 4,998 parameters (docs/benchmarks/design.md; the design library holds
# the better ones studies found since): trained hard, then its last epochs on the images as
# they are; the last conv of its first two stages applied twice (reuse: depth for a
# BatchNorm's parameters), and twice the steps (batch 64): a net this small is short of
# parameters, not of compute.
_GREY_28 = Start(
    recipe="mnist-s5-10ep",
    model_args={"widths": [7, 13, 16], "depths": [2, 2, 1],
                "block": ["plain", "plain", "plain"], "transition": ["maxpool", "maxpool"],
                "padding": ["valid", "valid", "same"], "reuse": [1, 1, 0], "dropout": 0.04,
                "dropout_at": "head"},
    space={
        "model.args.widths.0": {"int": [4, 12]},
        "model.args.widths.1": {"int": [6, 16]},
        "model.args.widths.2": {"int": [8, 24]},
        # two convs before the first pool, not searched: the second is the one reused, and a
        # conv from the image's one channel cannot be
        "model.args.depths.1": {"int": [2, 3]},  # its last conv keeps its width: reusable
        "model.args.depths.2": {"int": [1, 3]},
        "model.args.transition.0": {"choice": ["maxpool", "strided"]},
        "model.args.transition.1": {"choice": ["maxpool", "strided"]},
        "model.args.padding.0": {"choice": ["valid", "same"]},
        "model.args.block.2": {"choice": ["plain", "separable"]},
        "model.args.reuse.0": {"int": [0, 1]},
        "model.args.reuse.1": {"int": [0, 2]},
        "model.args.dropout": {"float": [0.01, 0.1]},
        # how hard a small net can be pushed is part of its design: the rate and the
        # augmentation that suit 18k parameters are not the best for 4k (BENCHMARKS.md)
        "schedule.max_lr": {"log": [0.05, 0.3]},
        "augment.rotate": {"float": [3.0, 12.0]},
        "augment.translate": {"float": [1.0, 2.5]},
        "augment.scale": {"float": [0.0, 0.15]},
    },
    # nets this small, at channel counts the widths' steps of one make odd, train faster
    # channels-first on a CPU in either precision (docs/benchmarks/cpu-tunings.md: compact_cnn),
    # and in fp32: bf16 autocast took 1.4-1.6x fp32's time per epoch for them, side by side on
    # an AVX512-BF16 CPU (docs/benchmarks/design.md; confirmation measures it again per design);
    # the rest are the base design's training settings; its plain tail and its held rate
    # are not searched but set from the [spec] (design_file.plain_tail: the judged epochs and
    # one before them; design_file.held_epochs: the judged epochs after the first)
    set=("train.channels_last=false", "train.amp=off", "data.batch_size=64", "schedule.max_lr=0.2",
         "schedule.pct_start=0.2", "augment.rotate=10.0", "augment.translate=2.0",
         "augment.scale=0.1", "augment.off_last_epochs=4", "schedule.hold_epochs=2"),
    rungs=(2, 5),
    rung_gaps={2: 0.75, 5: 0.13},
    rung_spearman={2: 0.84, 5: 0.98},
    val_offset=0.21,
    seed_margin=0.10,
)

# Colour 32x32 (CIFAR-10): four stages, strided or dilated transitions (the S9 rules forbid
# MaxPool), dilated, separable and residual blocks, a 1x1 conv to the classes then GAP.
# Trained as the S9 recipe that reaches 90% (cifar-s9-30ep: 4-pixel reflected crops and
# label smoothing), for the epochs the [spec] gives.
_COLOUR_32 = Start(
    recipe="cifar-s9-30ep",
    model_args={"widths": [24, 48, 96, 128], "depths": [2, 2, 2, 1],
                "block": ["plain", "dilated", "separable", "separable"],
                "transition": ["strided", "strided", "strided"], "head": "conv_gap",
                "dropout": 0.0},
    space={
        "model.args.widths.0": {"int": [16, 48], "step": 8},
        "model.args.widths.1": {"int": [32, 96], "step": 8},
        "model.args.widths.2": {"int": [64, 160], "step": 16},
        "model.args.widths.3": {"int": [96, 256], "step": 16},
        "model.args.depths.1": {"int": [1, 3]},
        "model.args.depths.2": {"int": [1, 3]},
        "model.args.depths.3": {"int": [1, 2]},
        "model.args.block.1": {"choice": ["dilated", "residual", "plain"]},
        "model.args.block.2": {"choice": ["separable", "residual", "plain"]},
        "model.args.block.3": {"choice": ["separable", "residual"]},
        "model.args.transition.0": {"choice": ["strided", "dilated"]},
        "schedule.max_lr": {"log": [0.03, 0.3]},
    },
    # measured on designs of this space in 20 epochs, fp32 (docs/benchmarks/design.md, "the
    # rung correlation in fp32"): a short rung ranks these as the full training does nearly
    # always, and the 5-epoch rung costs a quarter of the 2 seeds' full training it spares
    rungs=(2, 5),
    rung_gaps={2: 17.64, 5: 8.28},
    rung_spearman={2: 0.81, 5: 0.79},
    # CIFAR-10's held-out training images run above its test split, unlike MNIST's
    val_offset=-0.19,
)

_BY_SHAPE = {(1, 28, 28): _GREY_28, (3, 32, 32): _COLOUR_32}


def start_for(input_shape: tuple[int, int, int]) -> Start:
    try:
        return _BY_SHAPE[tuple(input_shape)]
    except KeyError:
        shapes = ", ".join("x".join(map(str, s)) for s in _BY_SHAPE)
        raise ConfigError(f"no default design space for {'x'.join(map(str, input_shape))} "
                          f"inputs (there are for {shapes}): give design.recipe, "
                          "design.model_args and [design.space]") from None
