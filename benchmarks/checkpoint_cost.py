"""What a partial checkpoint costs: the training state of a recipe's model after one step
(model, optimiser, schedule, RNG), saved as the trainer saves it inside long epochs, timed.
No data files needed: the model and optimiser state do not depend on the images.

    .venv/bin/python benchmarks/checkpoint_cost.py [cifar-s10] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import cnnlab
from cnnlab.data import Dataset
from cnnlab.data.catalog import dataset_info
from cnnlab.prepare import prepare
from cnnlab.run_folder.checkpoint import save_atomic
from cnnlab.training import trainer
from machine import machine_line


def blank_dataset(name: str, n: int = 1024) -> Dataset:
    """`n` black images of the dataset's shape, labels cycling through its classes."""
    info = dataset_info(name)
    shape, classes = info.input_shape, info.classes

    def split(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.zeros(count, *shape, dtype=torch.uint8),
                torch.arange(count) % len(classes))

    return Dataset(name, *split(n), *split(256), info.mean, info.std, tuple(classes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recipe", nargs="?", default="cifar-s10")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    recipe = cnnlab.load_recipe(args.recipe, ["train.device=cpu", "schedule.max_lr=0.001"])
    data = blank_dataset(recipe.data.dataset)
    model = prepare(recipe, dataset=data, progress=False).model
    run = trainer.Trainer(recipe, data, model)
    run.step(*next(iter(run.train_loader)))  # the optimiser's state exists after a step
    print(machine_line())
    seconds = []
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "partial.pt"
        for _ in range(args.repeats):
            started = time.perf_counter()
            save_atomic({**run.state(), "partway": {}}, path)
            seconds.append(time.perf_counter() - started)
        size = path.stat().st_size / 1e6
    every = trainer.PARTIAL_EVERY_SECONDS
    median = statistics.median(seconds)
    print(f"checkpoint_cost recipe={args.recipe} megabytes={size:.1f} median_seconds={median:.3f} "
          f"repeats={args.repeats} every_seconds={every:.0f} "
          f"share_of_training={100 * median / every:.2f}%")


if __name__ == "__main__":
    main()
