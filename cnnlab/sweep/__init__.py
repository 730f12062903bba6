"""Sweeps: search designs and hyper-parameters under an assignment's budget, on Optuna."""

from cnnlab.sweep.study import sweep
from cnnlab.sweep.sweep_file import SweepSpec, load_sweep

__all__ = ["SweepSpec", "load_sweep", "sweep"]
