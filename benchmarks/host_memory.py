"""The C library keeping freed memory (`cnnlab.training.host_memory`, which the Trainer applies
on a CPU) against glibc's defaults: training steps on one fixed batch, each side in its own
fresh process (the setting is process-wide and cannot be undone), processes alternating,
medians. Also each side's peak resident memory, the price of keeping it.

    .venv/bin/python benchmarks/host_memory.py
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys

from fixed_batch import train_steps
from fresh_process import call_in_fresh_process
from machine import machine_line

# model, batch: each at the batch size of the recipe that trains it
MODELS = (("mnist_strided", 128), ("cifar_speed", 1024), ("cifar_s10_resnet", 512))


def child(model: str, batch: int, steps: int, keep: bool) -> tuple[float, float]:
    """Runs in a fresh process: img/s over `steps` steps after a warm-up, and peak MiB."""
    from cnnlab.training.host_memory import keep_freed_memory
    if keep and not keep_freed_memory():
        sys.exit("this C library is not glibc: nothing to race")
    run = train_steps(model, batch=batch)
    run(2)
    rate = run(steps)
    return rate, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measured(model: str, batch: int, steps: int, keep: bool) -> tuple[float, float]:
    return call_in_fresh_process("host_memory", "child", model, batch, steps, keep)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="processes per side and model")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per process")
    args = parser.parse_args()
    print(f"{machine_line()}, fp32, channels-last, medians of {args.repeats} processes each")
    for model, batch in MODELS:
        kept, default = [], []
        for _ in range(args.repeats):
            kept.append(measured(model, batch, args.steps, keep=True))
            default.append(measured(model, batch, args.steps, keep=False))
        rate_kept = statistics.median(r for r, _ in kept)
        rate_default = statistics.median(r for r, _ in default)
        print(f"{model} (batch {batch}): kept {rate_kept:8.1f} vs glibc default "
              f"{rate_default:8.1f} img/s, ratio {rate_kept / rate_default:.2f}; peak memory "
              f"{max(m for _, m in kept):.0f} vs {max(m for _, m in default):.0f} MiB")


if __name__ == "__main__":
    main()
