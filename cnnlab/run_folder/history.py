"""A run's history: one dict per finished epoch (epoch, losses, accuracies, lr, seconds, and
where it ran: device, precision, torch version)."""

# No `from __future__ import annotations` here: Python 3.11's TypedDict tells NotRequired keys
# only from evaluated annotations, and the run folder's reader checks rows by them.
import math
from typing import Any, Literal, NotRequired, TypedDict


class HistoryRow(TypedDict):
    """One finished epoch, as history.jsonl keeps it (accuracies in percent)."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float  # with the recipe's test-time augmentation, if any
    test_correct: int
    test_total: int
    lr: float  # at the end of the epoch
    seconds: float  # training and evaluation
    val_loss: NotRequired[float]  # with a validation split
    val_acc: NotRequired[float]
    test_acc_no_tta: NotRequired[float]  # with test-time augmentation
    steps: NotRequired[int]  # optimiser steps per epoch
    train_seconds: NotRequired[float]
    device: NotRequired[str]  # where it ran: "cpu, 2 threads", a GPU's name
    precision: NotRequired[str]
    torch: NotRequired[str]


History = list[HistoryRow]


def best_row(history: History) -> dict[str, Any]:
    """The epoch with the highest test accuracy (the earliest, on a tie): the one `best.pt`
    holds."""
    if not history:
        raise ValueError("an empty history has no best epoch")
    return max(history, key=lambda row: row["test_acc"])


def trained_on(row: dict[str, Any]) -> str:
    """Where one epoch ran, in words ("cpu, 2 threads, bf16 autocast, torch 2.13.0")."""
    parts = [row[key] for key in ("device", "precision") if key in row]
    if "torch" in row:
        parts.append(f"torch {row['torch']}")
    return ", ".join(parts) or "not recorded"


def trained_on_spans(history: History) -> list[tuple[int, int, str]]:
    """Runs of consecutive epochs that ran in the same place: (first, last, where). One span
    unless the run was resumed on other hardware, torch or precision."""
    spans: list[tuple[int, int, str]] = []
    for row in history:
        where = trained_on(row)
        if spans and spans[-1][2] == where:
            spans[-1] = (spans[-1][0], row["epoch"], where)
        else:
            spans.append((row["epoch"], row["epoch"], where))
    return spans


def first_reaching(history: History, target: float,
                   key: Literal["test_acc", "val_acc"] = "test_acc") -> HistoryRow | None:
    """The first epoch whose `key` accuracy (percent) reaches `target`, or None."""
    return next((row for row in history if row[key] >= target), None)


def seconds_to_target(history: History, target: float,
                      key: Literal["test_acc", "val_acc"] = "test_acc") -> float:
    """Training seconds until `key` first reaches `target` (inf if it never does)."""
    reached = first_reaching(history, target, key)
    if reached is None:
        return math.inf
    return sum(row["seconds"] for row in history[: reached["epoch"]])


def test_line(row: HistoryRow) -> str:
    """The seeds' own test-set line, from an epoch's history row."""
    return (f"Test set: Average loss: {row['test_loss']:.4f}, Accuracy: "
            f"{row['test_correct']}/{row['test_total']} ({row['test_acc']:.2f}%)")


def epoch_log_line(row: HistoryRow, tta: str) -> str:
    """An epoch's line in log.txt, from its history row alone (so a resume can write a line
    that a crash kept from being written)."""
    plain = (f" ({tta} TTA; {row['test_acc_no_tta']:.2f}% without)"
             if "test_acc_no_tta" in row else "")
    val = f"val acc {row['val_acc']:.2f}% | " if "val_acc" in row else ""
    return (f"epoch {row['epoch']}: train loss {row['train_loss']:.4f} acc "
            f"{row['train_acc']:.2f}% | {val}{test_line(row)}{plain} | {row['seconds']:.1f}s")
