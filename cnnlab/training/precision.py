"""Mixed precision that fits the device: bf16 where it has bf16 units (Ampere and newer GPUs;
CPUs with AVX512-BF16 or AMX), fp16 with a gradient scaler on GPUs without them (T4, V100),
fp32 on other CPUs, where autocast would emulate bf16 and cost more than it saves."""

from __future__ import annotations

import torch

from cnnlab.config import AmpMode, Precision, TrainConfig
from cnnlab.training.device import pick_device


def autocast_dtype(amp: AmpMode, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `train.amp` on `device`; None means plain fp32."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16_units() else None


def run_precision(train: TrainConfig) -> Precision:
    """The precision a run of these settings trains in on this machine: what picks the
    recipe's `[by_precision.*]` settings."""
    dtype = autocast_dtype(train.amp, pick_device(train.device))
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def precision_name(dtype: torch.dtype | None) -> str:
    """How a run's history names the precision it trained in."""
    return {torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast"}.get(dtype, "fp32")


def cpu_has_bf16_units() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX tiles), as oneDNN's
    bf16 convolutions need to beat fp32. torch's probes are private: absent means no."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def gradient_scaler(dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler:
    """Scales the loss so fp16 gradients do not underflow; a pass-through otherwise (bf16 has
    fp32's range)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
