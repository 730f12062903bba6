"""Test-time augmentation: average a model's logits over cheap views of each test image.

`flip` adds the mirror image; `flip_shift` also adds the image shifted one pixel up-left and
down-right (reflect-padded), each with its mirror, weighted 1/2, 1/4, 1/4: the views the
fastest CIFAR-10 trainers use, since they cost a forward pass each and no retraining. `shift`
is `flip_shift` without the mirrors, for images a mirror changes the meaning of (digits).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.config import TTAMode, choices
from cnnlab.errors import ConfigError

MODES = choices(TTAMode)


def _shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The image moved by (dy, dx) pixels, the uncovered border filled by reflection."""
    h, w = x.shape[2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    return padded[:, :, 1 - dy: 1 - dy + h, 1 - dx: 1 - dx + w]


def tta_logits(model: nn.Module, x: torch.Tensor, mode: TTAMode = "none",
               plain: torch.Tensor | None = None) -> torch.Tensor:
    """The logits averaged over `mode`'s views of `x`. `plain`, the model's logits on `x` when
    the caller has them already, saves that forward pass."""
    if mode not in MODES:
        raise ConfigError(f"unknown test-time augmentation {mode!r}: "
                          f"use one of {', '.join(MODES)}")
    plain = model(x) if plain is None else plain
    if mode == "none":
        return plain
    mirrored = mode in ("flip", "flip_shift")

    def seen(image: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        """The logits of one view: of the image, and with mirrors of its mirror too."""
        logits = model(image) if logits is None else logits
        return (logits + model(image.flip(3))) / 2 if mirrored else logits

    if mode == "flip":
        return seen(x, plain)
    return seen(x, plain) / 2 + seen(_shifted(x, 1, 1)) / 4 + seen(_shifted(x, -1, -1)) / 4
