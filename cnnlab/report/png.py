"""Figures saved all-or-nothing, like every other file cnnlab writes."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from cnnlab.atomic_file import atomic_write


def save_png(figure: Figure, path: str | Path) -> None:
    with atomic_write(Path(path)) as handle:
        figure.savefig(handle, format="png", dpi=100)
