"""Training throughput (images/s) of the same model, batch size, augmentation and threads in
four loops, measured side by side in one process, repeats interleaved, medians reported.

- cnnlab: the fast path (whole split on the device, batched augmentation, cnnlab's loop);
- seed-style: a Dataset returning one normalised, augmented sample at a time, a DataLoader
  with the workers this machine has, the seeds' loop with a tqdm bar updated every step;
- lightning: a LightningModule on in-memory tensors, the same batched augmentation in
  on_after_batch_transfer (benchmark-only dependency: pip install -e '.[bench]');
- ceiling: the model training on one fixed batch: no data work at all.

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/throughput.py [--model mnist_s5]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
import warnings
from contextlib import redirect_stderr, redirect_stdout

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import cnnlab
from cnnlab.config import AugmentConfig
from cnnlab.data import BatchAugment
from cnnlab.data.loader import normaliser
from cnnlab.training.trainer import Trainer
from fixed_batch import train_steps
from machine import machine_line
from seed_loop import seed_style_loader, seed_style_train_epoch


def cnnlab_loop(args, data, steps):
    recipe = cnnlab.load_recipe(args.recipe, [
        f"data.batch_size={args.batch}", f"data.train_limit={steps * args.batch}",
        f"model.name={args.model}", "train.device=cpu", "train.epochs=1",
        f"train.channels_last={str(args.channels_last).lower()}"])
    trainer = Trainer(recipe, data.limited(steps * args.batch, 10), cnnlab.build_model(args.model))
    with redirect_stderr(io.StringIO()):  # its tqdm bar runs, as in real use, but unseen
        started = time.perf_counter()
        trainer.train_epoch(1, folder=None, progress=True)
    return steps * args.batch / (time.perf_counter() - started)


def seed_style_loop(args, data, steps):
    torch.manual_seed(0)
    model = cnnlab.build_model(args.model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    n = steps * args.batch
    loader = seed_style_loader(data.train_images[:n], data.train_labels[:n], data.mean, data.std,
                               args.batch, args.rotate, workers=args.workers)
    started = time.perf_counter()
    seed_style_train_epoch(model, loader, optimizer)
    return n / (time.perf_counter() - started)


def lightning_loop(args, data, steps):
    import pytorch_lightning as pl

    augment = BatchAugment(AugmentConfig(rotate=args.rotate))
    scale, shift = normaliser(data.mean, data.std, "cpu")
    channels_last = args.channels_last

    class Module(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = cnnlab.build_model(args.model)
            if channels_last:
                self.model = self.model.to(memory_format=torch.channels_last)
            self.gen = torch.Generator().manual_seed(0)

        def on_after_batch_transfer(self, batch, dataloader_idx):
            x, y = batch
            x = torch.addcmul(shift, augment(x.float(), self.gen), scale)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return x, y

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = F.cross_entropy(self.model(x), y)
            self.log("loss", loss, prog_bar=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9, nesterov=True)

    n = steps * args.batch
    loader = DataLoader(TensorDataset(data.train_images[:n], data.train_labels[:n]),
                        batch_size=args.batch, shuffle=True, num_workers=0)
    torch.manual_seed(0)
    module = Module()
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_model_summary=False,
                         enable_progress_bar=True, num_sanity_val_steps=0)
    with redirect_stderr(io.StringIO()), redirect_stdout(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        trainer.fit(module, loader)
    return n / (time.perf_counter() - started)


def ceiling(args, data, steps):
    run = train_steps(args.model, batch=args.batch, channels_last=args.channels_last)
    return run(steps)


LOOPS = {"cnnlab": cnnlab_loop, "seed_loop": seed_style_loop, "lightning": lightning_loop,
         "ceiling": ceiling}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist_s5")
    parser.add_argument("--recipe", default="mnist-s5", help="for the dataset and schedule")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rotate", type=float, default=7.0, help="augmentation, degrees")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--loops", default=",".join(LOOPS))
    args = parser.parse_args()

    recipe = cnnlab.load_recipe(args.recipe)
    data = cnnlab.load_dataset(recipe.data.dataset)
    print(f"{machine_line()}; {args.model}, batch {args.batch}, "
          f"{args.steps} steps x {args.repeats} repeats, channels_last={args.channels_last}")
    names = args.loops.split(",")
    results = {name: [] for name in names}
    for repeat in range(args.repeats):
        for name in names:
            results[name].append(LOOPS[name](args, data, args.steps))
            print(f"  repeat {repeat + 1} {name:<10} {results[name][-1]:8.0f} img/s", flush=True)
    median = {name: statistics.median(values) for name, values in results.items()}
    for name in names:
        print(f"{name:<10} median {median[name]:8.0f} img/s")
    ratios = []
    for other, key in (("seed_loop", "vs_seed_loop"), ("lightning", "vs_lightning"),
                       ("ceiling", "vs_ceiling")):
        if "cnnlab" in median and other in median:
            ratios.append(f"{key}={median['cnnlab'] / median[other]:.2f}")
    print("throughput " + " ".join([f"model={args.model}", *ratios]))


if __name__ == "__main__":
    main()
