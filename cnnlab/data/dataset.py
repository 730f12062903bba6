"""A dataset as plain tensors: both splits, their normalisation and class names."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.data import cifar10, mnist
from cnnlab.data.root import data_root

# (C, H, W) per dataset: lets models be inspected without loading the data
INPUT_SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32)}


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

    def limited(self, train: int = 0, test: int = 0) -> Dataset:
        """The first `train` / `test` images of each split (0 keeps the whole split)."""
        return Dataset(
            self.name,
            self.train_images[: train or None], self.train_labels[: train or None],
            self.test_images[: test or None], self.test_labels[: test or None],
            self.mean, self.std, self.classes,
        )


def load_dataset(name: str, data_dir: str | Path | None = None) -> Dataset:
    """Load 'mnist' or 'cifar10' from the data root, downloading missing files if possible."""
    root = data_root(data_dir)
    if name == "mnist":
        return Dataset("mnist", *mnist.load_mnist(root), mnist.MEAN, mnist.STD, mnist.CLASSES)
    if name == "cifar10":
        return Dataset("cifar10", *cifar10.load_cifar10(root), cifar10.MEAN, cifar10.STD,
                       cifar10.CLASSES)
    raise ValueError(f"unknown dataset {name!r}")  # recipes are validated before this
