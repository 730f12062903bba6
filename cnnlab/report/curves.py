"""Training curves: loss and accuracy per epoch (train and test), and the LR schedule."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from cnnlab.report.png import save_png
from cnnlab.run_folder.confined import FolderFile
from cnnlab.run_folder.history import best_row


def plot_curves(history: list[dict], lrs: list[float], steps_per_epoch: int,
                path: Path | FolderFile) -> None:
    """Loss, accuracy and the learning rate; `lrs` is the rate at even intervals over the run,
    `steps_per_epoch` of them per epoch."""
    epochs = [row["epoch"] for row in history]
    figure = Figure(figsize=(15, 4.2), layout="constrained")
    loss, accuracy, lr = figure.subplots(1, 3)
    loss.plot(epochs, [r["train_loss"] for r in history], "o-", label="train")
    loss.plot(epochs, [r["test_loss"] for r in history], "s-", label="test")
    loss.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    accuracy.plot(epochs, [r["train_acc"] for r in history], "o-", label="train")
    with_tta = all("test_acc_no_tta" in r for r in history)
    accuracy.plot(epochs, [r["test_acc"] for r in history], "s-",
                  label="test (with TTA)" if with_tta else "test")
    if with_tta:  # the plain figure beside, as everywhere a TTA accuracy is shown
        accuracy.plot(epochs, [r["test_acc_no_tta"] for r in history], "s--", alpha=0.7,
                      label="test (without TTA)")
    best = best_row(history)
    accuracy.annotate(f"best {best['test_acc']:.2f}%", (best["epoch"], best["test_acc"]),
                      textcoords="offset points", xytext=(0, -18), ha="center")
    accuracy.set(title="Accuracy", xlabel="epoch", ylabel="%")
    lr.plot([step / steps_per_epoch for step in range(len(lrs))], lrs)
    lr.set(title="Learning rate", xlabel="epoch", ylabel="lr")
    for axes in (loss, accuracy):
        axes.legend()
        axes.grid(alpha=0.3)
    lr.grid(alpha=0.3)
    save_png(figure, path)


def plot_compare(histories: dict[str, list[dict]], path: Path) -> None:
    """Test loss and accuracy of several runs, overlaid."""
    figure = Figure(figsize=(12, 4.5), layout="constrained")
    loss, accuracy = figure.subplots(1, 2)
    for name, history in histories.items():
        epochs = [row["epoch"] for row in history]
        loss.plot(epochs, [r["test_loss"] for r in history], "o-", label=name)
        accuracy.plot(epochs, [r["test_acc"] for r in history], "o-", label=name)
    loss.set(title="Test loss", xlabel="epoch", ylabel="cross-entropy")
    accuracy.set(title="Test accuracy", xlabel="epoch", ylabel="%")
    for axes in (loss, accuracy):
        axes.legend(fontsize="small")
        axes.grid(alpha=0.3)
    save_png(figure, path)


def plot_lr_find(result, path: Path) -> None:
    """Smoothed loss against learning rate (log scale), with the three suggestions marked."""
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.plot(result.lrs, result.losses)
    axes.set_xscale("log")
    marks = (("minimum", "g", ":"), ("valley", "b", "-."), ("steepest", "r", "--"))
    for label, colour, line in marks:
        lr = getattr(result, label)
        axes.axvline(lr, color=colour, linestyle=line, label=f"{label} {lr:.2g}")
    axes.set(title="LR range test", xlabel="learning rate", ylabel="smoothed loss")
    axes.legend()
    axes.grid(alpha=0.3, which="both")
    save_png(figure, path)
