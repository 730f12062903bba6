"""Mixed precision that fits the device: bf16 where it has bf16 units (Ampere and newer),
fp16 with a gradient scaler where it does not (T4, V100), fp32 on the CPU unless asked."""

from __future__ import annotations

import torch

from cnnlab.config import AmpMode


def autocast_dtype(amp: AmpMode, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `train.amp` on `device`; None means plain fp32."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if device.type != "cuda":  # auto: on a CPU, autocast costs more than it saves
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def gradient_scaler(dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler:
    """Scales the loss so fp16 gradients do not underflow; a pass-through otherwise (bf16 has
    fp32's range)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
