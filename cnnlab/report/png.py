"""Figures saved all-or-nothing, like every other file cnnlab writes."""

from __future__ import annotations

from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.text import Text

from cnnlab.atomic_file import atomic_write
from cnnlab.run_folder.confined import FolderFile


def save_png(figure: Figure, path: str | Path | FolderFile) -> None:
    """Save `figure` as a PNG at `path` (a run folder's file: through no link). cnnlab's figures
    use no mathtext, so a `$` in a class name is drawn as a `$`, never parsed (a label such as
    `$x^2^3$` would make matplotlib raise)."""
    for text in figure.findobj(Text):
        text.set_parse_math(False)
    target = path.replace() if isinstance(path, FolderFile) else atomic_write(Path(path))
    with matplotlib.rc_context({"text.parse_math": False}), target as handle:  # tick labels
        figure.savefig(handle, format="png", dpi=100)
