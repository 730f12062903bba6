"""Mixed precision that fits the device: bf16 where it has bf16 units (Ampere and newer GPUs;
CPUs with AVX512-BF16 or AMX where it was measured to pay, below), fp16 with a gradient scaler
on GPUs without them (T4, V100), fp32 on other CPUs, where autocast would emulate bf16 and
cost more than it saves.

On a CPU, bf16 units do not settle it: on an AVX512-BF16 Xeon without AMX tiles, bf16 autocast
trained cnnlab's CIFAR nets 1.25-1.8x slower than fp32, where on other bf16 CPUs it trained
them 1.24-1.95x faster (docs/benchmarks/cpu-tunings.md). So `auto` times one training step of a
reference net of that size in each precision, once per CPU and torch version, and keeps the
verdict in the cache folder: every run on a machine picks alike."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab.atomic_file import atomic_write
from cnnlab.config import AmpMode, Precision, TrainConfig
from cnnlab.data.root import cache_dir
from cnnlab.models import build_model
from cnnlab.training.device import pick_device

# bf16 autocast must train the reference net this much faster than fp32 for `auto` to take it:
# below, the speed is not worth a second set of numerics
BF16_PAYS_AT = 1.15
REFERENCE_NET = "cifar_s9_res"  # ~100k parameters at 32x32: the size of cnnlab's CIFAR nets
_verdicts: dict[str, bool] = {}  # this process's, by CPU: measured once


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
    return torch.bfloat16 if device.type == "cpu" and bf16_pays_on_this_cpu() else None


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


def bf16_pays_on_this_cpu() -> bool:
    """Whether `train.amp = "auto"` trains in bf16 on this CPU: it has bf16 units, and bf16
    autocast trained the reference net at least BF16_PAYS_AT times as fast as fp32 here."""
    if not cpu_has_bf16_units():
        return False
    cpu = _cpu_identity()
    if cpu not in _verdicts:
        kept = _read_verdicts()
        if cpu not in kept:
            speedup = bf16_speedup()
            kept[cpu] = {"bf16": speedup >= BF16_PAYS_AT, "speedup": round(speedup, 3)}
            _write_verdicts(kept)
        _verdicts[cpu] = bool(kept[cpu]["bf16"])
    return _verdicts[cpu]


def bf16_speedup(batch: int = 64, steps: int = 3) -> float:
    """fp32's time for a training step of the reference net over bf16 autocast's, the best of
    two alternating races (a few seconds). The global random state is left as it was."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        model = build_model(REFERENCE_NET).to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        images = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, 10, (batch,))

        def seconds(bf16: bool) -> float:
            def step() -> None:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss = F.cross_entropy(model(images), labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            step()  # oneDNN picks and caches its kernels for this precision
            started = time.perf_counter()
            for _ in range(steps):
                step()
            return time.perf_counter() - started

        races = [(seconds(False), seconds(True)) for _ in range(2)]
        fp32 = min(f for f, _ in races)
        bf16 = min(b for _, b in races)
        return fp32 / bf16
    finally:
        torch.random.set_rng_state(state)


@functools.cache  # read once: every autocast decision asks, /proc/cpuinfo does not change
def _cpu_identity() -> str:
    """This CPU (its model and instruction sets, as Linux reports them) and torch's version."""
    try:
        lines = [line for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith(("model name", "flags"))][:2]
    except OSError:
        lines = []
    described = "|".join([platform.machine(), platform.processor(), *lines, torch.__version__])
    return hashlib.sha256(described.encode()).hexdigest()[:16]


def _verdicts_file() -> Path:
    return cache_dir() / "cpu_precision.json"


def _read_verdicts() -> dict[str, dict]:
    try:
        kept = json.loads(_verdicts_file().read_text())
    except (OSError, ValueError):
        return {}
    return kept if isinstance(kept, dict) and all(
        isinstance(v, dict) and "bf16" in v for v in kept.values()) else {}


def _write_verdicts(kept: dict[str, dict]) -> None:
    # Best effort: an unwritable cache only means timing again in the next process.
    with contextlib.suppress(OSError), atomic_write(_verdicts_file(), "w") as handle:
        json.dump(kept, handle, indent=1)


def gradient_scaler(dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler:
    """Scales the loss so fp16 gradients do not underflow; a pass-through otherwise (bf16 has
    fp32's range)."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
