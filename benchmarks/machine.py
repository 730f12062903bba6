"""The line every benchmark prints first: what the figures below it were measured on."""

from __future__ import annotations

import os
import platform

import torch


def machine_line() -> str:
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"machine: {platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} "
            f"threads, {device}, torch {torch.__version__}")
