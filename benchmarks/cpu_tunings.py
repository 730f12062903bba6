"""Each candidate tuning of cnnlab's CPU path against its alternative, raced side by side
(repeats interleaved, medians): the figures behind the trainer's defaults.

- layout: channels_last vs contiguous tensors, per model (`train.channels_last`), in each
  precision the CPU trains in at speed (fp32, and bf16 where it has bf16 units): what a
  recipe's `[by_precision.*]` tables choose; with `--cifar`, also the CIFAR recipes' large
  nets at their recipes' batch sizes (minutes a step pair: off by default);
- precision: bf16 autocast vs fp32, per model, on a CPU with bf16 units (`train.amp`);
- channel counts: `mnist_strided` at width 16 (convs of 8/16/24/32 channels) vs width 17
  (8/17/25/34), each layout; and PyTorch's BatchNorm alone at 16 vs 17 channels: whether
  counts that are multiples of 8 (a vector of 8 fp32) are worth their rounding;
- dropout masks: `mnist_strided` (one Dropout, on its 32 pooled features) vs the same net with a
  Dropout after each of its second to fifth convs, as `mnist_pool` has;
- threads: 2 intra-op threads (torch's default here) vs 1;
- inter-op threads: 1 vs torch's default, each in a fresh process (it can be set only once);
- compile: `torch.compile` (inductor) of the model vs eager, plus its one-off compile time
  (`train.compile`);
- host syncs: `loss.item()` every step (the seeds' tqdm line) vs every 20 steps (cnnlab);
- evaluation: cnnlab's `inference_mode` pass at the default eval batch vs other sizes
  (`data.eval_batch_size`), and vs the seeds' `no_grad` pass with batches of 128 and a
  read-back per batch;
- augmentation: the device loader's rate with the `mnist-s5-10ep` augmentation vs the model's
  training rate (how small a share of a step the data path is).

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/cpu_tunings.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import cnnlab
from cnnlab.data import BatchAugment, DeviceLoader
from cnnlab.models import build_model
from cnnlab.training.host_memory import keep_freed_memory
from cnnlab.training.precision import cpu_has_bf16_units
from cnnlab.training.trainer import evaluate
from fixed_batch import BATCH, train_steps
from fresh_process import call_in_fresh_process
from machine import machine_line


def race(first: Callable[[], float], second: Callable[[], float], repeats: int
         ) -> tuple[float, float]:
    """Medians of `first()` and `second()`, called alternately `repeats` times each."""
    a, b = [], []
    for _ in range(repeats):
        a.append(first())
        b.append(second())
    return statistics.median(a), statistics.median(b)


def duel(first: Callable[[int], float], second: Callable[[int], float], steps: int,
         repeats: int) -> tuple[float, float]:
    """`race` of two step runners (`fixed_batch.train_steps`) at `steps` steps a side, each
    warmed up with a step first."""
    first(1), second(1)
    return race(lambda: first(steps), lambda: second(steps), repeats)


def with_threads(threads: int, run: Callable[[int], float], steps: int) -> Callable[[], float]:
    def measured() -> float:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return run(steps)
        finally:
            torch.set_num_threads(before)
    return measured


def interop_child(threads: int, model: str, steps: int, repeats: int) -> float:
    """Runs in a fresh process: inter-op threads must be set before any parallel work."""
    if threads:
        torch.set_num_interop_threads(threads)
    run = train_steps(model)
    run(2)  # warm-up
    return statistics.median(run(steps) for _ in range(repeats))


def interop_rate(threads: int, model: str, steps: int, repeats: int) -> float:
    return call_in_fresh_process("cpu_tunings", "interop_child", threads, model, steps, repeats)


def lean_with_dropout_on_feature_maps(dropout: float = 0.02) -> nn.Module:
    """`mnist_strided` with `mnist_pool`'s dropout placement: its pooled-feature Dropout moved to
    the end of its second to fifth conv blocks, a mask on four feature maps."""
    model = build_model("mnist_strided", dropout=dropout)
    del model.features[-1]  # the Dropout after the GAP
    for block in model.features[1:5]:
        block.append(nn.Dropout(dropout))
    return model


LAYOUTS = (("channels_last", True), ("contiguous", False))  # name, train_steps' channels_last


def batch_norm_steps(channels: int, channels_last: bool) -> Callable[[int], float]:
    """A closure timing BatchNorm's forward and backward alone, in training mode, on a batch
    of 12x12 maps (`mnist_strided`'s second conv's output): img/s."""
    norm = nn.BatchNorm2d(channels)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(BATCH, channels, 12, 12).contiguous(memory_format=layout).requires_grad_()
    grad = torch.randn_like(x)
    wrt = (x, *norm.parameters())

    def run(steps: int) -> float:
        started = time.perf_counter()
        for _ in range(steps):
            torch.autograd.grad(norm(x), wrt, grad)
        return steps * BATCH / (time.perf_counter() - started)
    return run


# a 4,751-parameter compact_cnn of the MNIST design search (widths 6 / 13 / 16): how the
# layout race goes for the nets `cnnlab design` trains by the dozen
SMALL_DESIGN = {"widths": [6, 13, 16], "depths": [2, 2, 1], "transition": ["maxpool", "maxpool"],
                "padding": ["valid", "valid", "same"], "dropout": 0.03, "dropout_at": "head"}


# the CIFAR recipes' large nets at their recipes' batch sizes (cifar-94-10ep, cifar-s10)
CIFAR_NETS = (("cifar_speed", 1024), ("cifar_s10_resnet", 512))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="per repeat, MNIST models")
    parser.add_argument("--skip-compile", action="store_true")
    parser.add_argument("--cifar", action="store_true",
                        help="also race the layouts of cifar_speed and cifar_s10_resnet")
    args = parser.parse_args()
    steps, repeats = args.steps, args.repeats
    keep_freed_memory()  # as the Trainer does on a CPU
    ratios: dict[str, float] = {}
    print(f"{machine_line()}, {torch.get_num_interop_threads()} inter-op threads, "
          f"batch {BATCH}, medians of {repeats}")

    def report(key: str, label: str, ours: float, other: float, unit: str = "img/s") -> None:
        ratios[key] = ours / other
        print(f"{label:<44} {ours:9.0f} vs {other:9.0f} {unit}  ratio {ratios[key]:.2f}",
              flush=True)

    bf16 = cpu_has_bf16_units()  # what train.amp = "auto" picks on a CPU
    # the layout and dropout races in each precision a CPU can resolve to: the defaults that
    # follow the precision (`[train.fp32]`, `[train.bf16]` in a recipe) are decided here
    for precision in ("bf16", "fp32") if bf16 else ("fp32",):
        in_bf16 = precision == "bf16"
        for name, n in (("mnist_strided", steps), ("mnist_pool", steps), ("mnist_s5", steps),
                        ("compact_cnn", steps), ("cifar_s9", max(2, steps // 4))):
            model_args = SMALL_DESIGN if name == "compact_cnn" else {}
            last = train_steps(name, bf16=in_bf16, model=build_model(name, **model_args))
            contiguous = train_steps(name, channels_last=False, bf16=in_bf16,
                                     model=build_model(name, **model_args))
            report(f"channels_last_{name}_{precision}",
                   f"{name}, {precision}: channels_last vs contiguous",
                   *duel(last, contiguous, n, repeats))

        for layout, channels_last in LAYOUTS:
            even = train_steps("mnist_strided", channels_last=channels_last, bf16=in_bf16,
                               model=build_model("mnist_strided", width=16))
            odd = train_steps("mnist_strided", channels_last=channels_last, bf16=in_bf16,
                              model=build_model("mnist_strided", width=17))
            report(f"width_16_vs_17_{layout}_{precision}",
                   f"mnist_strided w16 vs w17, {precision}, {layout}",
                   *duel(even, odd, steps, repeats))

        one_mask = train_steps("mnist_strided", channels_last=False, bf16=in_bf16)
        every_conv = train_steps("mnist_strided", channels_last=False, bf16=in_bf16,
                                 model=lean_with_dropout_on_feature_maps())
        report(f"one_dropout_vs_every_conv_{precision}",
               f"mnist_strided, {precision}: one Dropout vs one per conv",
               *duel(one_mask, every_conv, steps, repeats))

        for name, batch in CIFAR_NETS if args.cifar else ():
            last = train_steps(name, batch=batch, bf16=in_bf16)
            contiguous = train_steps(name, batch=batch, channels_last=False, bf16=in_bf16)
            report(f"channels_last_{name}_{batch}_{precision}",
                   f"{name} ({batch}), {precision}: channels_last vs contiguous",
                   *duel(last, contiguous, 2, max(3, repeats // 2)))  # seconds a step

    # bf16 autocast (train.amp = "auto" on a CPU with bf16 units) against plain fp32
    models = (("mnist_pool", steps), ("mnist_s5", steps), ("cifar_s9", max(2, steps // 4)),
              ("cifar_s9_res", max(2, steps // 4)), ("cifar_s10_resnet", max(2, steps // 10)))
    for name, n in models if bf16 else ():
        autocast, fp32 = train_steps(name, bf16=True), train_steps(name)
        report(f"bf16_{name}", f"{name}: bf16 autocast vs fp32",
               *duel(autocast, fp32, n, repeats))

    for layout, channels_last in LAYOUTS:
        sixteen = batch_norm_steps(16, channels_last)
        seventeen = batch_norm_steps(17, channels_last)
        report(f"batch_norm_16_vs_17_{layout}", f"BatchNorm 16 vs 17 channels, {layout}",
               *duel(sixteen, seventeen, 10 * steps, repeats))  # a layer: ten times a net's

    run = train_steps("mnist_pool")
    run(1)
    two, one = race(with_threads(2, run, steps), with_threads(1, run, steps), repeats)
    report("threads_2_vs_1", "mnist_pool: 2 intra-op threads vs 1", two, one)

    default = interop_rate(0, "mnist_pool", steps, repeats)
    single = interop_rate(1, "mnist_pool", steps, repeats)
    report("interop_default_vs_1", "mnist_pool: default inter-op threads vs 1", default, single)

    every_20, every_step = train_steps("mnist_pool"), train_steps("mnist_pool", sync_every=1)
    report("sync_every_20_vs_1", "mnist_pool: loss.item() every 20 steps vs 1",
           *duel(every_20, every_step, steps, repeats))

    if not args.skip_compile:
        eager, compiled = train_steps("mnist_pool"), train_steps("mnist_pool", compiled=True)
        started = time.perf_counter()
        compiled(1)  # compiles forward and backward
        compile_seconds = time.perf_counter() - started
        eager(1)
        ours, other = race(lambda: compiled(steps), lambda: eager(steps), repeats)
        label = f"mnist_pool: compiled vs eager (compile {compile_seconds:.0f}s)"
        report("compile_vs_eager", label, ours, other)
        ratios["compile_seconds"] = compile_seconds

    data = cnnlab.load_dataset("mnist")
    model = build_model("mnist_pool").to(memory_format=torch.channels_last)
    test = dict(mean=data.mean, std=data.std, channels_last=True)

    def cnnlab_pass(batch: int) -> Callable[[], float]:
        loader = DeviceLoader(data.test_images, data.test_labels, batch, **test)

        def measured() -> float:
            started = time.perf_counter()
            evaluate(model, loader)
            return len(data.test_labels) / (time.perf_counter() - started)
        return measured

    seed_loader = DeviceLoader(data.test_images, data.test_labels, BATCH, **test)

    def seed_pass() -> float:
        started = time.perf_counter()
        model.eval()
        with torch.no_grad():
            for x, y in seed_loader:
                (model(x).argmax(1) == y).sum().item()  # the seeds' per-batch read-back
        return len(data.test_labels) / (time.perf_counter() - started)

    default_batch = cnnlab.load_recipe("mnist-s5-10ep").data.eval_batch_size
    for batch in sorted({128, 512, 2000} - {default_batch}):
        ours, other = race(cnnlab_pass(default_batch), cnnlab_pass(batch), repeats)
        report(f"eval_batch_{default_batch}_vs_{batch}",
               f"evaluation: batch {default_batch} vs {batch}", ours, other)
    ours, other = race(cnnlab_pass(default_batch), seed_pass, repeats)
    report("eval_vs_seed_pass", f"evaluation: cnnlab ({default_batch}) vs seeds' no_grad/128",
           ours, other)

    augment = BatchAugment(cnnlab.load_recipe("mnist-s5-10ep").augment)
    loader = DeviceLoader(data.train_images[:12800], data.train_labels[:12800], BATCH,
                          mean=data.mean, std=data.std, shuffle=True, augment=augment,
                          generator=torch.Generator().manual_seed(0))

    def loader_pass() -> float:
        started = time.perf_counter()
        for _ in loader:
            pass
        return 12800 / (time.perf_counter() - started)

    ours, other = race(loader_pass, lambda: run(steps), repeats)
    report("loader_vs_model", "mnist-s5-10ep augmenting loader vs model step", ours, other)
    print(f"  -> the data path is {100 * other / ours:.1f}% of a training step")
    print("cpu_tunings " + " ".join(f"{key}={value:.2f}" for key, value in ratios.items()))


if __name__ == "__main__":
    main()
