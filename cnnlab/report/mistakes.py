"""A grid of misclassified test images, titled with the truth, the guess and its confidence."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from matplotlib.figure import Figure

from cnnlab.report.png import save_png


def show_image(axes, image: torch.Tensor) -> None:
    """Draw one uint8 [C, H, W] image: grey for one channel, colour for three."""
    if image.shape[0] == 1:
        axes.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=255)
    else:
        axes.imshow(image.permute(1, 2, 0).numpy())
    axes.set_xticks([])
    axes.set_yticks([])


def plot_misclassified(predictions, path: Path, count: int = 20, columns: int = 5) -> int:
    """Save the `count` most confident mistakes; returns how many were drawn."""
    wrong = predictions.wrong[:count]
    rows = max(1, math.ceil(len(wrong) / columns))
    figure = Figure(figsize=(2.4 * columns, 2.7 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    names = predictions.classes
    for axes, index in zip(grid.flat, wrong.tolist(), strict=False):
        show_image(axes, predictions.images[index])
        truth, guess = predictions.labels[index].item(), predictions.predicted[index].item()
        axes.set_title(f"true {names[truth]}\npred {names[guess]} "
                       f"({100 * predictions.confidence[index].item():.0f}%)", fontsize=10)
    for axes in list(grid.flat)[len(wrong):]:
        axes.axis("off")
    if not len(wrong):
        grid.flat[0].text(0.5, 0.5, "no mistakes", ha="center", va="center")
    figure.suptitle(f"{len(wrong)} most confident mistakes", fontsize=12)
    save_png(figure, path)
    return len(wrong)
