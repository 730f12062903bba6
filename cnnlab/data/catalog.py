"""The named datasets: what each one is (input shape, class names, normalisation) and how its
files are read. The one place these facts live; models, inspection and reports ask here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.config import DatasetName, choices
from cnnlab.data import cifar10, mnist
from cnnlab.errors import ConfigError

Splits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, in [0, 1] units
    std: tuple[float, ...]
    read: Callable[[Path], Splits]  # data root -> train images, labels, test images, labels


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", (1, 28, 28), mnist.CLASSES, mnist.MEAN, mnist.STD,
                         mnist.load_mnist),
    "cifar10": DatasetInfo("cifar10", (3, 32, 32), cifar10.CLASSES, cifar10.MEAN, cifar10.STD,
                           cifar10.load_cifar10),
}
assert set(DATASETS) == set(choices(DatasetName)), "config.DatasetName names every dataset"


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
    return DATASETS[name]
