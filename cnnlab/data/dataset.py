"""A dataset as plain tensors: both splits, their normalisation and class names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.data.catalog import dataset_info
from cnnlab.data.root import data_root


@dataclass(frozen=True)
class Dataset:
    name: str
    train_images: torch.Tensor  # uint8 [N, C, H, W]
    train_labels: torch.Tensor  # int64 [N]
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: tuple[float, ...]  # per channel, in [0, 1] units
    std: tuple[float, ...]
    classes: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    def limited(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The first `train` / `test` images of each split (None keeps the whole split)."""
        return Dataset(
            self.name,
            self.train_images[:train], self.train_labels[:train],
            self.test_images[:test], self.test_labels[:test],
            self.mean, self.std, self.classes,
        )


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load a named dataset (`catalog.DATASETS`) from the data root, downloading missing
    files where possible."""
    info = dataset_info(name)
    return Dataset(info.name, *info.read(data_root(data_dir)), info.mean, info.std, info.classes)
