"""Which device a run trains on, how the process is made ready for it, and how its history rows
name that hardware."""

from __future__ import annotations

import torch

from cnnlab.errors import ConfigError
from cnnlab.training.host_memory import keep_freed_memory


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA is not available on this machine: use --device cpu")
    return torch.device(name)


def training_device(name: str) -> torch.device:
    """`pick_device`, with the process made ready to train there: on a CPU the C library keeps
    freed memory for the next step (`host_memory`)."""
    device = pick_device(name)
    if device.type == "cpu":
        keep_freed_memory()
    return device


def describe_device(device: torch.device) -> str:
    """The hardware an epoch ran on, as its history row records it: the figure's context."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"{device.type}, {threads} thread{'s' if threads != 1 else ''}"
