"""Test accuracy of a finished run's model under each test-time augmentation mode, on the full
test split: what `train.tta` would add (training is unaffected by it, so the figure for a mode
is what a run with that mode would have reported for the same weights).

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/tta_gain.py RUN_DIR
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from cnnlab.data import DeviceLoader
from cnnlab.prepare import prepare
from cnnlab.run_folder import RunFolder
from cnnlab.training.trainer import evaluate
from cnnlab.training.tta import MODES
from machine import machine_line


def accuracies(run_dir: str | Path, modes: tuple[str, ...] = MODES,
               echo: Callable[[str], None] = print) -> dict[str, float]:
    """Test accuracy (percent) of the run's last-epoch model under each of `modes`, evaluated
    as the Trainer evaluates (its eval batch size and memory format)."""
    run = RunFolder.existing(run_dir)
    prepared = prepare(folder=run, progress=False)
    recipe, data = prepared.recipe, prepared.data()
    model = run.load_trained(prepared.model)
    loader = DeviceLoader(data.test_images, data.test_labels, recipe.data.eval_batch_size,
                          mean=data.mean, std=data.std, channels_last=recipe.train.channels_last)
    accuracy = {}
    for mode in modes:
        correct = evaluate(model, loader, tta=mode).correct
        accuracy[mode] = 100.0 * correct / loader.num_samples
        echo(f"{mode:<11} {accuracy[mode]:.2f}%")
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    args = parser.parse_args()
    print(machine_line())
    accuracy = accuracies(args.run_dir, echo=lambda line: print(line, flush=True))
    print("tta_gain " + " ".join(f"{mode}={value:.2f}" for mode, value in accuracy.items()))


if __name__ == "__main__":
    main()
