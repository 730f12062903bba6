"""Report stage: curves, mistakes, confusion, GradCAM, and the run's README written by the tool."""

from cnnlab.report.compare import compare
from cnnlab.report.gradcam import gradcam
from cnnlab.report.run_report import write_report

__all__ = ["compare", "gradcam", "write_report"]
