"""Batched augmentation on tensors: one call transforms a whole batch on its device, with
independent random parameters per image drawn from the loader's generator (so a seed fixes
them). Inputs are float images in [0, 255] before normalisation, so zero fill is black."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cnnlab.config import AugmentConfig


def random_affine(
    x: torch.Tensor, degrees: float, shift: float, gen: torch.Generator
) -> torch.Tensor:
    """Rotate each image by U(-degrees, degrees) and shift it by U(-shift, shift) pixels along
    each axis, in one bilinear resampling (cheaper and sharper than two)."""
    b, _, h, w = x.shape
    noise = torch.rand(b, 3, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1
    angle = noise[:, 0] * math.radians(degrees)
    cos, sin = angle.cos(), angle.sin()
    # affine_grid works in [-1, 1] coordinates: one pixel is 2 / size.
    tx, ty = noise[:, 1] * (2 * shift / w), noise[:, 2] * (2 * shift / h)
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Zero-pad by `pad` and cut a random window of the original size out of each image."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    offsets = torch.randint(0, 2 * pad + 1, (b, 2), generator=gen, device=x.device)
    rows = offsets[:, :1] + torch.arange(h, device=x.device)  # [B, H]
    cols = offsets[:, 1:] + torch.arange(w, device=x.device)  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    # Advanced indexing gathers [B, H, W, C]; move channels back.
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def random_hflip(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability p."""
    flip = torch.rand(x.shape[0], generator=gen, device=x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class BatchAugment:
    """The recipe's augmentations, applied in a fixed order: affine, crop, flip."""

    def __init__(self, config: AugmentConfig):
        self.config = config

    @property
    def active(self) -> bool:
        c = self.config
        return bool(c.rotate or c.translate or c.pad_crop or c.hflip)

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        c = self.config
        if c.rotate or c.translate:
            x = random_affine(x, c.rotate, c.translate, gen)
        if c.pad_crop:
            x = random_crop(x, c.pad_crop, gen)
        if c.hflip:
            x = random_hflip(x, c.hflip, gen)
        return x
