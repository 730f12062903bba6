"""The loop the seed notebooks run, rebuilt as the competitor for cnnlab's benchmarks.

What the seeds do with torchvision: a Dataset that turns one image at a time into a
normalised, randomly rotated tensor, a DataLoader with worker processes, SGD, a tqdm bar whose
description shows `loss.item()` after every step, and a test pass per epoch through the same
kind of per-sample Dataset. Shared by `throughput.py` and `time_to_target.py` so both race the
same thing.
"""

from __future__ import annotations

import io
import os
from contextlib import redirect_stderr

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from cnnlab.data.augment import random_affine


class SeedStyleDataset(torch.utils.data.Dataset):
    """ToTensor + RandomRotation + Normalize, applied to one image per `__getitem__`."""

    def __init__(self, images, labels, mean, std, degrees: float = 0.0, seed: int = 0):
        self.images, self.labels = images, labels
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.degrees = degrees
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        x = self.images[i].float().unsqueeze(0)  # one image, as a batch of one
        if self.degrees:
            x = random_affine(x, self.degrees, 0.0, self.gen)
        return (x[0] / 255 - self.mean) / self.std, self.labels[i]


def seed_style_loader(images, labels, mean, std, batch: int, degrees: float = 0.0,
                      shuffle: bool = True, workers: int | None = None) -> DataLoader:
    if workers is None:
        workers = os.cpu_count() or 2
    dataset = SeedStyleDataset(images, labels, mean, std, degrees)
    return DataLoader(dataset, batch_size=batch, shuffle=shuffle, num_workers=workers)


def seed_style_train_epoch(model: nn.Module, loader: DataLoader,
                           optimizer: torch.optim.Optimizer) -> None:
    """The seeds' `train()`: NLL of log-softmax, and the bar's description set every step."""
    model.train()
    with redirect_stderr(io.StringIO()):  # the bar runs and formats, as in the notebooks, unseen
        bar = tqdm(loader)
        for batch_idx, (x, y) in enumerate(bar):
            optimizer.zero_grad()
            loss = F.nll_loss(F.log_softmax(model(x), dim=1), y)
            loss.backward()
            optimizer.step()
            bar.set_description(desc=f"loss={loss.item()} batch_id={batch_idx}")


def seed_style_test(model: nn.Module, loader: DataLoader) -> float:
    """The seeds' `test()`: accuracy in percent, under `no_grad`, a batch at a time."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in loader:
            correct += model(x).argmax(dim=1).eq(y).sum().item()
    return 100.0 * correct / len(loader.dataset)
