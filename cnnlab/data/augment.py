"""Batched augmentation on tensors: one call transforms a whole batch on its device, with
independent random parameters per image drawn from the loader's generator (so a seed fixes
them). Inputs are float images in [0, 255] before normalisation, so zero fill is black."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cnnlab.config import AugmentConfig


def random_affine(
    x: torch.Tensor, degrees: float, shift: float, gen: torch.Generator, scale: float = 0.0
) -> torch.Tensor:
    """Rotate each image by U(-degrees, degrees), shift it by U(-shift, shift) pixels along
    each axis and zoom it by U(1 - scale, 1 + scale), in one bilinear resampling (cheaper and
    sharper than one per transform)."""
    b, _, h, w = x.shape
    noise = torch.rand(b, 4, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1
    angle = noise[:, 0] * math.radians(degrees)
    zoom = 1 + noise[:, 3] * scale
    cos, sin = angle.cos() / zoom, angle.sin() / zoom  # the grid maps output to input
    # affine_grid works in [-1, 1] coordinates: one pixel is 2 / size.
    tx, ty = noise[:, 1] * (2 * shift / w), noise[:, 2] * (2 * shift / h)
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_crop(
    x: torch.Tensor, pad: int, gen: torch.Generator, mode: str = "zeros"
) -> torch.Tensor:
    """Pad by `pad` (zeros or reflect) and cut a random window of the original size out of
    each image."""
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect" if mode == "reflect" else "constant")
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


def alternating_hflip(x: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
    """Derandomised flip: each image is mirrored in every other epoch, half of the dataset
    starting mirrored (picked by a fixed hash of its index). Over any two epochs every image
    is seen both ways, which random flips only promise on average."""
    first = (index * 2654435761 >> 16) & 1  # Knuth's multiplicative hash: a fixed coin per image
    flip = (first + epoch) % 2 == 1
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_cutout(x: torch.Tensor, size: int, p: float, gen: torch.Generator) -> torch.Tensor:
    """Zero a size x size square, placed wholly inside the image, in each image with
    probability p (so its area is exactly size**2)."""
    b, _, h, w = x.shape
    top = torch.randint(0, h - size + 1, (b, 1, 1), generator=gen, device=x.device)
    left = torch.randint(0, w - size + 1, (b, 1, 1), generator=gen, device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    hole = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    chosen = torch.rand(b, 1, 1, generator=gen, device=x.device) < p
    return x.masked_fill((hole & chosen).unsqueeze(1), 0.0)


def random_gray(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Replace each RGB image by its luminance (ITU-R 601) with probability p."""
    weights = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype)
    gray = (x * weights.view(1, 3, 1, 1)).sum(1, keepdim=True).expand_as(x)
    chosen = torch.rand(x.shape[0], generator=gen, device=x.device) < p
    return torch.where(chosen[:, None, None, None], gray, x)


class BatchAugment:
    """The recipe's augmentations, in a fixed order: affine, crop, flip, grey, cutout."""

    def __init__(self, config: AugmentConfig):
        self.config = config

    @property
    def active(self) -> bool:
        c = self.config
        return bool(c.rotate or c.translate or c.scale or c.pad_crop or c.hflip or c.cutout
                    or c.gray)

    def __call__(self, x: torch.Tensor, gen: torch.Generator, index: torch.Tensor | None = None,
                 epoch: int = 0) -> torch.Tensor:
        """`index` (each image's position in the dataset) and `epoch` matter only to the
        alternating flip; without an index the batch position stands in."""
        c = self.config
        if c.rotate or c.translate or c.scale:
            x = random_affine(x, c.rotate, c.translate, gen, c.scale)
        if c.pad_crop:
            x = random_crop(x, c.pad_crop, gen, c.pad_mode)
        if c.hflip and c.hflip_mode == "alternate":
            index = torch.arange(len(x), device=x.device) if index is None else index
            x = alternating_hflip(x, index, epoch)
        elif c.hflip:
            x = random_hflip(x, c.hflip, gen)
        if c.gray and x.shape[1] == 3:
            x = random_gray(x, c.gray, gen)
        if c.cutout:
            x = random_cutout(x, c.cutout, c.cutout_p, gen)
        return x
