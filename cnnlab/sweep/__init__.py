"""Sweeps: search designs and hyper-parameters under an assignment's budget, on Optuna."""

from cnnlab.sweep.study import sweep
from cnnlab.sweep.sweep_file import SweepPlan, load_sweep

__all__ = ["SweepPlan", "load_sweep", "sweep"]
