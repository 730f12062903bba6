"""Confusion matrix and the most confused (true, predicted) pairs, as fastai's most_confused."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure

from cnnlab.report.png import save_png


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, classes: int) -> torch.Tensor:
    """counts[true, predicted]"""
    return torch.bincount(labels * classes + predicted, minlength=classes * classes).view(
        classes, classes)


def most_confused(matrix: torch.Tensor, names: tuple[str, ...], minimum: int = 1,
                  top: int = 10) -> list[tuple[str, str, int]]:
    """(true, predicted, count) for the off-diagonal cells, largest first."""
    off = matrix.clone()
    off.fill_diagonal_(0)
    pairs = [(names[t], names[p], int(off[t, p])) for t, p in (off >= minimum).nonzero().tolist()]
    return sorted(pairs, key=lambda pair: -pair[2])[:top]


def per_class_accuracy(matrix: torch.Tensor, names: tuple[str, ...]
                       ) -> list[tuple[str, int, float]]:
    """(class, test images, accuracy in percent) per class, in label order."""
    totals = matrix.sum(1)
    return [(name, int(total), 100.0 * int(matrix[i, i]) / int(total) if total else 0.0)
            for i, (name, total) in enumerate(zip(names, totals.tolist(), strict=True))]


WRITTEN_CELLS = 20  # classes up to which every cell shows its count and every tick its name


def plot_confusion(matrix: torch.Tensor, names: tuple[str, ...], path: Path) -> None:
    n = len(names)
    side = min(n, WRITTEN_CELLS)
    figure = Figure(figsize=(1.0 + 0.65 * side, 0.6 + 0.6 * side), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(matrix.numpy(), cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    if n <= WRITTEN_CELLS:
        threshold = matrix.max().item() / 2
        for t in range(n):
            for p in range(n):
                value = int(matrix[t, p])
                axes.text(p, t, str(value), ha="center", va="center", fontsize=8,
                          color="white" if value > threshold else "black")
        axes.set_xticks(range(n), names, rotation=45 if max(map(len, names)) > 2 else 0)
        axes.set_yticks(range(n), names)
    axes.set(xlabel="predicted", ylabel="true", title="Confusion matrix (test set)")
    save_png(figure, path)
