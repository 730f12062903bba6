"""A run's history: one dict per finished epoch (epoch, losses, accuracies, lr, seconds)."""

from __future__ import annotations

from typing import Any

History = list[dict[str, Any]]


def best_row(history: History) -> dict[str, Any]:
    """The epoch with the highest test accuracy (the earliest, on a tie): the one `best.pt`
    holds."""
    if not history:
        raise ValueError("an empty history has no best epoch")
    return max(history, key=lambda row: row["test_acc"])
