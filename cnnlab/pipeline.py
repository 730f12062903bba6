"""A whole run as a user asks for it: train, then write the run's plots and README."""

from __future__ import annotations

from typing import Any

from cnnlab.report.run_report import write_report
from cnnlab.train.trainer import RunResult
from cnnlab.train.trainer import train as train_only


def train(*args: Any, report: bool = True, html: bool = False, **kwargs: Any) -> RunResult:
    """`cnnlab.train.trainer.train` (same arguments), then `write_report` on the run folder
    unless `report=False`."""
    result = train_only(*args, **kwargs)
    if report:
        write_report(result.run_dir, model=result.model, dataset=result.dataset, html=html)
    return result
