"""The fast loader: a whole split lives on the device as one uint8 tensor.

Each epoch shuffles with `randperm`, slices batches, augments them as batches and normalises
with one fused multiply-add. No workers, no per-sample Python, no host-to-device copies.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator

import torch

from cnnlab.errors import ConfigError

# augment(batch, generator, index=..., epoch=...): index holds each image's dataset position
Augment = Callable[..., torch.Tensor]


def normaliser(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with (x / 255 - mean) / std == x * scale + shift: one fused
    multiply-add per batch (torch.addcmul) turns uint8-range pixels into network inputs."""
    std_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
    mean_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    return 1.0 / (255.0 * std_t), -mean_t / std_t


class DeviceLoader:
    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device | str = "cpu",
        shuffle: bool = False,
        augment: Augment | None = None,
        generator: torch.Generator | None = None,
        channels_last: bool = False,
    ):
        if batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {batch_size}")
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.generator = generator
        self.channels_last = channels_last
        self.scale, self.shift = normaliser(mean, std, device)
        self.epoch = 0  # passes started; the trainer sets it when resuming

    def unaugmented(self) -> DeviceLoader:
        """This split as it is, shuffled on the same generator, sharing the placed images."""
        twin = copy.copy(self)
        twin.augment = None
        return twin

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield from self.batches(self.new_order())  # the order is drawn at the first batch

    def new_order(self) -> torch.Tensor | None:
        """The next pass's order of the images (None: as stored), drawn from the generator."""
        if not self.shuffle:
            return None
        return torch.randperm(len(self.labels), generator=self.generator,
                              device=self.labels.device)

    def batches(self, order: torch.Tensor | None, first: int = 0
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass in `order`, from batch `first` on: a pass resumed partway through takes the
        order it was started with, so it sees the batches it had still to see."""
        n = len(self.labels)
        epoch, self.epoch = self.epoch, self.epoch + 1
        for start in range(first * self.batch_size, n, self.batch_size):
            if order is None:
                x = self.images[start: start + self.batch_size]
                y = self.labels[start: start + self.batch_size]
                idx = None
            else:
                idx = order[start: start + self.batch_size]
                x, y = self.images[idx], self.labels[idx]
            x = x.float()
            if self.augment is not None:
                if idx is None:
                    idx = torch.arange(start, start + len(y), device=y.device)
                x = self.augment(x, self.generator, index=idx, epoch=epoch)
            x = torch.addcmul(self.shift, x, self.scale)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y
