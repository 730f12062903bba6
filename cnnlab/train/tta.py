"""Test-time augmentation: average a model's logits over cheap views of each test image.

`flip` adds the mirror image; `flip_shift` also adds the image shifted one pixel up-left and
down-right (reflect-padded), each with its mirror, weighted 1/2, 1/4, 1/4: the views the
fastest CIFAR-10 trainers use, since they cost a forward pass each and no retraining.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.config import TTAMode, choices
from cnnlab.errors import ConfigError

MODES = choices(TTAMode)


def _with_flip(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return (model(x) + model(x.flip(3))) / 2


def _shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """The image moved by (dy, dx) pixels, the uncovered border filled by reflection."""
    h, w = x.shape[2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    return padded[:, :, 1 - dy: 1 - dy + h, 1 - dx: 1 - dx + w]


def tta_logits(model: nn.Module, x: torch.Tensor, mode: TTAMode = "none") -> torch.Tensor:
    if mode == "none":
        return model(x)
    if mode == "flip":
        return _with_flip(model, x)
    if mode == "flip_shift":
        return (_with_flip(model, x) / 2 + _with_flip(model, _shifted(x, 1, 1)) / 4
                + _with_flip(model, _shifted(x, -1, -1)) / 4)
    raise ConfigError(f"unknown test-time augmentation {mode!r}: use one of {', '.join(MODES)}")
