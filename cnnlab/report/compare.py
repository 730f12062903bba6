"""Several runs side by side: their test curves overlaid in one PNG, and a table of figures."""

from __future__ import annotations

from pathlib import Path

from cnnlab.errors import TrainingError
from cnnlab.report.curves import plot_compare
from cnnlab.run_folder import RunFolder
from cnnlab.run_folder.history import best_row


def compare(run_dirs: list[str | Path], out_png: str | Path) -> str:
    """Write the overlay to `out_png`; return the table of final figures as text."""
    histories = {}
    for run_dir in run_dirs:
        run = RunFolder.existing(run_dir)
        history = run.history()
        if not history:
            raise TrainingError(f"{run.path} has no finished epoch to compare")
        histories[run.path.name] = history
    plot_compare(histories, Path(out_png))
    width = max(len(name) for name in histories)
    lines = [f"{'run':<{width}}  epochs  final acc  best acc (epoch)  final loss  seconds"]
    for name, history in histories.items():
        final, best = history[-1], best_row(history)
        seconds = sum(row["seconds"] for row in history)
        lines.append(f"{name:<{width}}  {len(history):>6}  {final['test_acc']:>8.2f}%  "
                     f"{best['test_acc']:>7.2f}% ({best['epoch']:>3})  {final['test_loss']:>10.4f}"
                     f"  {seconds:>7.1f}")
    return "\n".join(lines)
