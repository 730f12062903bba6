"""The loaders a recipe asks for: its training batches through the augmentation engine it
names, and its test batches, unaugmented, in order."""

from __future__ import annotations

import torch

from cnnlab.config import Recipe
from cnnlab.data.albumentations_loader import AlbumentationsLoader
from cnnlab.data.augment import BatchAugment
from cnnlab.data.dataset import Dataset
from cnnlab.data.loader import DeviceLoader


def train_loader(recipe: Recipe, data: Dataset, device: torch.device,
                 generator: torch.Generator):
    """`augment.engine = "fast"`: the whole split on the device, augmented as batches, drawing
    on `generator`; "albumentations": per-sample transforms in worker processes."""
    layout = dict(mean=data.mean, std=data.std, device=device,
                  channels_last=recipe.train.channels_last)
    if recipe.augment.engine == "albumentations":
        return AlbumentationsLoader(
            data.train_images, data.train_labels, recipe.data.batch_size,
            transforms=recipe.augment.transforms, workers=recipe.augment.workers,
            seed=recipe.train.seed, **layout)
    augment = BatchAugment(recipe.augment)
    return DeviceLoader(data.train_images, data.train_labels, recipe.data.batch_size,
                        shuffle=True, generator=generator,
                        augment=augment if augment.active else None, **layout)


def plain_train_loader(augmented: AlbumentationsLoader | DeviceLoader, recipe: Recipe,
                       data: Dataset, device: torch.device, generator: torch.Generator
                       ) -> DeviceLoader:
    """The training split as it is, shuffled on `generator`, for augment.off_last_epochs: the
    fast engine's loader lends its images already on the device (a GPU holds one copy); the
    albumentations engine's are on the host, so they are placed once more."""
    if isinstance(augmented, DeviceLoader):
        return augmented.unaugmented()
    return DeviceLoader(data.train_images, data.train_labels, recipe.data.batch_size,
                        shuffle=True, generator=generator, mean=data.mean, std=data.std,
                        device=device, channels_last=recipe.train.channels_last)


def test_loader(recipe: Recipe, data: Dataset, device: torch.device) -> DeviceLoader:
    return DeviceLoader(data.test_images, data.test_labels, recipe.data.eval_batch_size,
                        mean=data.mean, std=data.std, device=device,
                        channels_last=recipe.train.channels_last)
