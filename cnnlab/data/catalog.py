"""The named datasets: what each one is (input shape, class names, normalisation) and how its
files are read. The one place these facts live; models, inspection and reports ask here.
A user's own data (`dataset = "npz"` or `"folder"`) brings its facts with it (dataset.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from cnnlab.config import USER_DATASETS, DatasetName, choices
from cnnlab.data.cifar_files import load_cifar_dataset
from cnnlab.data.idx_files import load_idx_dataset
from cnnlab.data.svhn_files import load_svhn
from cnnlab.errors import ConfigError

Splits = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    input_shape: tuple[int, int, int]  # (C, H, W)
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, in [0, 1] units, of the training split
    std: tuple[float, ...]
    read: Callable[[Path, bool], Splits]  # (data root, progress bars) -> the 4 tensors


DIGITS = tuple(str(digit) for digit in range(10))
CIFAR100_CLASSES = (  # the fine labels, in label order
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard",
    "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse",
    "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck",
    "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray",
    "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail",
    "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)

DATASETS: dict[str, DatasetInfo] = {info.name: info for info in (
    DatasetInfo("mnist", (1, 28, 28), DIGITS, (0.1307,), (0.3081,),
                partial(load_idx_dataset, "mnist")),
    DatasetInfo("fashion_mnist", (1, 28, 28),
                ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"), (0.2860,), (0.3530,),
                partial(load_idx_dataset, "fashion_mnist")),
    DatasetInfo("kmnist", (1, 28, 28), ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
                (0.1918,), (0.3483,), partial(load_idx_dataset, "kmnist")),
    DatasetInfo("cifar10", (3, 32, 32),
                ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
                (0.49139968, 0.48215841, 0.44653091), (0.24703223, 0.24348513, 0.26158784),
                partial(load_cifar_dataset, "cifar10")),
    DatasetInfo("cifar100", (3, 32, 32), CIFAR100_CLASSES, (0.5071, 0.4865, 0.4409),
                (0.2673, 0.2564, 0.2762), partial(load_cifar_dataset, "cifar100")),
    DatasetInfo("svhn", (3, 32, 32), DIGITS, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970),
                load_svhn),
)}
assert set(DATASETS) | set(USER_DATASETS) == set(choices(DatasetName)), "one list of names"
assert len(CIFAR100_CLASSES) == 100


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        known = ", ".join(DATASETS)
        if name in USER_DATASETS:
            raise ConfigError(f"{name!r} data has no fixed shape: its facts come from the files "
                              f"(data.path); named datasets: {known}")
        raise ConfigError(f"unknown dataset {name!r}: use one of {known}")
    return DATASETS[name]
