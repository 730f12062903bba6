"""A dataset as plain tensors: both splits, their normalisation and class names, from a named
dataset (data/catalog.py) or a user's arrays or image folders."""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from cnnlab.config import USER_DATASETS, DataConfig
from cnnlab.data.catalog import dataset_info
from cnnlab.data.image_folders import load_image_folders
from cnnlab.data.npz_arrays import load_npz
from cnnlab.data.root import data_root
from cnnlab.display_text import control_character
from cnnlab.errors import ConfigError, DataError


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
    val_images: torch.Tensor | None = None  # held out of the training split (with_validation)
    val_labels: torch.Tensor | None = None

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_images.shape[1:])

    def limited(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The first `train` / `test` images of each split (None keeps the whole split)."""
        return dataclasses.replace(
            self, train_images=self.train_images[:train], train_labels=self.train_labels[:train],
            test_images=self.test_images[:test], test_labels=self.test_labels[:test])

    def with_validation(self, size: int | None) -> Dataset:
        """`size` training images moved to a validation split: a random draw, the same one for
        every run on the same data whatever its seed, so runs compare on equal terms. None
        leaves the dataset as it is."""
        if size is None:
            return self
        if size >= len(self.train_labels):
            raise ConfigError(f"data.val_split = {size} leaves no training images (the "
                              f"training split holds {len(self.train_labels)})")
        order = torch.randperm(len(self.train_labels), generator=torch.Generator().manual_seed(0))
        held, kept = order[:size].sort().values, order[size:].sort().values
        return dataclasses.replace(
            self, train_images=self.train_images[kept], train_labels=self.train_labels[kept],
            val_images=self.train_images[held], val_labels=self.train_labels[held])

    def fingerprint(self) -> str:
        """md5 of both splits' images and labels: the same data gives the same string."""
        digest = hashlib.md5(usedforsecurity=False)
        for tensor in (self.train_images, self.train_labels, self.test_images, self.test_labels):
            digest.update(tensor.contiguous().numpy().tobytes())
        return digest.hexdigest()


def load_dataset(name: str, data_dir: str | Path | None = None, *, path: str | Path | None = None,
                 image_size: int | None = None, channels: int | None = None,
                 progress: bool = True) -> Dataset:
    """A named dataset from the data root (downloading missing files where possible), or a
    user's data at `path`: `name = "npz"` (arrays) or `"folder"` (images; `image_size` and
    `channels` convert them), normalised by its own training split's mean and std."""
    if name not in USER_DATASETS:
        info = dataset_info(name)
        return Dataset(info.name, *info.read(data_root(data_dir), progress), info.mean, info.std,
                       info.classes)
    if path is None:
        raise DataError(f"dataset {name!r} needs a path (data.path)")
    if name == "npz":
        splits, classes = load_npz(path)
    else:
        splits, classes = load_image_folders(path, image_size, channels, progress)
    for label, class_name in enumerate(classes):  # names reach terminals, plots and READMEs
        problem = control_character(class_name)
        if problem:
            raise DataError(f"{path}: the name of class {label} {problem}: rename it")
    pixels = splits[0].double() / 255  # the training split, [N, C, H, W]
    if not len(pixels):
        raise DataError(f"{path} holds no training images")
    mean = pixels.mean((0, 2, 3))
    std = pixels.std((0, 2, 3)).clamp_min(1e-3)  # a constant channel must not divide by 0
    return Dataset(name, *splits, tuple(mean.tolist()), tuple(std.tolist()), classes)


def load_recipe_data(config: DataConfig, data_dir: str | Path | None = None,
                     progress: bool = True) -> Dataset:
    """The data a recipe's `[data]` names, before its limits. User data that a run recorded
    (`config.fingerprint`) must still be the same data."""
    data = load_dataset(config.dataset, data_dir, path=config.path, image_size=config.image_size,
                        channels=config.channels, progress=progress)
    if config.fingerprint is not None and data.fingerprint() != config.fingerprint:
        raise DataError(f"the data at {config.path} changed since this run trained on it "
                        f"(fingerprint {config.fingerprint}, now {data.fingerprint()}): restore "
                        "it, or start a new run")
    return data


def data_facts(config: DataConfig, data_dir: str | Path | None = None
               ) -> tuple[tuple[int, int, int], tuple[str, ...]]:
    """Input shape (C, H, W) and class names of a recipe's data: from the catalog for a named
    dataset, without reading it; a user's data is read (a folder's from its cache)."""
    if config.dataset not in USER_DATASETS:
        info = dataset_info(config.dataset)
        return info.input_shape, info.classes
    data = load_recipe_data(config, data_dir, progress=False)
    return data.input_shape, data.classes
