"""Did a long run reach its recipe's target, and when? The figures of one run folder, read from
its history: test accuracy per epoch, the first epoch at or above the target, the final and
best accuracy, and the seconds each epoch took, with its test pass and without (airbench and
most speed records time the training alone).

Long CPU runs (CIFAR-10: up to an hour and more) are trained with `cnnlab train`, which can be
interrupted and resumed, and are judged here afterwards:

    OMP_NUM_THREADS=1 CNNLAB_DATA=../shared/data cnnlab train cifar-s9-15ep --out /somewhere
    .venv/bin/python benchmarks/target_reached.py /somewhere/cifar-s9-15ep-<time>

The target is the recipe's `spec.min_test_acc` (or `--target`). Ends with one
machine-readable line.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from cnnlab.run_folder import RunFolder
from cnnlab.run_folder.history import first_reaching


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--target", type=float, help="test accuracy in %% (default: the spec's)")
    args = parser.parse_args()
    folder = RunFolder(args.run_dir)
    recipe = folder.recipe()
    history = folder.history()
    if not history:
        parser.error(f"{args.run_dir} has no finished epoch")
    target = args.target if args.target is not None else recipe.spec.min_test_acc
    if target is None:
        parser.error("the recipe's spec has no min_test_acc: give --target")
    accuracies = [row["test_acc"] for row in history]
    reached = first_reaching(history, target)
    first = reached["epoch"] if reached else None
    seconds = [row["seconds"] for row in history]
    print(f"{recipe.name}: {len(history)} of {recipe.train.epochs} epochs, target {target}%"
          + (f", {recipe.train.tta} TTA" if recipe.train.tta != "none" else ""))
    print("test accuracy: " + ", ".join(f"{a:.2f}" for a in accuracies))
    if "test_acc_no_tta" in history[0]:
        print("without TTA:   " + ", ".join(f"{row['test_acc_no_tta']:.2f}" for row in history))
    print("train accuracy: " + ", ".join(f"{row['train_acc']:.1f}" for row in history))
    print("seconds per epoch: " + ", ".join(f"{s:.0f}" for s in seconds))
    training = [row.get("train_seconds") for row in history]
    timed = None not in training  # histories written before the field existed lack it
    if timed:
        print("of which training: " + ", ".join(f"{s:.0f}" for s in training))
    print(f"target_reached recipe={recipe.name} target={target} reached={int(first is not None)} "
          f"first_epoch={first or 0} final={accuracies[-1]:.2f} best={max(accuracies):.2f} "
          f"epochs={len(history)} median_epoch_seconds={statistics.median(seconds):.1f} "
          f"minutes={sum(seconds) / 60:.1f}"
          + (f" train_minutes={sum(training) / 60:.1f}" if timed else ""))


if __name__ == "__main__":
    main()
