"""A run's history: one dict per finished epoch (epoch, losses, accuracies, lr, seconds, and
where it ran: device, precision, torch version)."""

from __future__ import annotations

from typing import Any

History = list[dict[str, Any]]


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
