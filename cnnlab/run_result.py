"""What `cnnlab.train` and `cnnlab.resume` return: the run's folder, history, evaluated model,
budget verdicts and data; in Jupyter, its figures, curves and verdicts."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from cnnlab.data import Dataset
from cnnlab.inspection import CheckReport
from cnnlab.run_folder.history import History, best_row


@dataclass
class RunResult:
    run_dir: Path
    history: History
    model: nn.Module  # the evaluated model (the EMA copy when EMA is on)
    check: CheckReport  # the recipe's [spec]: verdicts before and after training
    dataset: Dataset  # what it was trained and tested on

    @property
    def final_accuracy(self) -> float:
        return self.history[-1]["test_acc"]

    @property
    def best_accuracy(self) -> float:
        return best_row(self.history)["test_acc"]

    def _repr_html_(self) -> str:  # in Jupyter: the figures, the curves, the verdicts
        best = best_row(self.history)
        curves = self.run_dir / "plots" / "curves.png"
        image = (f'<img alt="curves" style="max-width:100%" src="data:image/png;base64,'
                 f'{base64.b64encode(curves.read_bytes()).decode("ascii")}">'
                 if curves.is_file() else "")
        return (f"<p><strong>{self.final_accuracy:.2f}%</strong> final test accuracy, best "
                f"{best['test_acc']:.2f}% (epoch {best['epoch']}), {len(self.history)} epochs; "
                f"report: <code>{html.escape(str(self.run_dir / 'README.md'))}</code></p>"
                + image + self.check._repr_html_())

    def _repr_markdown_(self) -> str:  # where a front end shows Markdown only
        best = best_row(self.history)
        return (f"**{self.final_accuracy:.2f}%** final test accuracy, best "
                f"{best['test_acc']:.2f}% (epoch {best['epoch']}), {len(self.history)} epochs; "
                f"report: `{self.run_dir / 'README.md'}`\n\n{self.check.to_markdown()}")
