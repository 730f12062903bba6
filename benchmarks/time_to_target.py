"""Wall time until MNIST test accuracy first reaches 99.4%: cnnlab's recipe against the S5 seed
recipe in the seed-style loop, in one process on the same data and threads.

- cnnlab: `cnnlab.run` on the `mnist-99.4-5ep` recipe (or `--recipe`), one run per seed
  (median reported); the clock covers everything `run` does (model, checks, every epoch and
  test pass, checkpoints).
- seed loop: the S5 seed's model, SGD (lr 0.01, momentum 0.9), batch 128, +-7 degree rotation,
  per-sample Dataset + DataLoader with workers, tqdm per step, a test pass per epoch
  (`seed_loop.py`); stopped at the seed's 20-epoch budget if it never reaches the target, and
  then its time and the speedup are lower bounds (the last line says `seed_loop_reached=0/1`).

Prints, per run: seconds and epochs to the target, final accuracy and, for cnnlab, the lowest
accuracy over the recipe's last `spec.last_epochs` epochs (the assignment's condition). Ends
with one machine-readable line per precision: `--amp auto off` races cnnlab in the precision
the recipe resolves to and in fp32, each against the same seed-loop runs (the seed loop is
plain fp32 either way).

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/time_to_target.py [--seeds 0 1 2]
        [--amp auto off] [--set KEY=VALUE]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import get_args

import torch

import cnnlab
from cnnlab.config import AmpMode
from cnnlab.run_folder.history import first_reaching
from machine import machine_line
from seed_loop import seed_style_loader, seed_style_test, seed_style_train_epoch


def cnnlab_run(args, data, seed: int, amp: str | None) -> dict:
    precision = [f"train.amp={amp}"] if amp else []
    recipe = cnnlab.load_recipe(args.recipe,
                                [f"train.seed={seed}", "train.device=cpu", *precision, *args.set])
    started = time.perf_counter()
    reached = {}

    def watch(row: dict, trainer: object) -> None:  # after each epoch, as a user's callback
        if "seconds" not in reached and first_reaching([row], args.target):
            reached["seconds"] = time.perf_counter() - started
            reached["at_epoch"] = row["epoch"]

    result = cnnlab.train(recipe, dataset=data, out_dir=args.out, progress=False, echo=None,
                        report=False, callbacks=(watch,))
    last_n = recipe.spec.last_epochs
    return {
        "seconds": reached.get("seconds", time.perf_counter() - started),
        "reached": "seconds" in reached,
        "epoch": reached.get("at_epoch", len(result.history)),
        "final": result.final_accuracy,
        "min_last": min(row["test_acc"] for row in result.history[-last_n:]),
        "epochs_run": len(result.history),
        "total": time.perf_counter() - started,
        "precision": result.history[-1]["precision"],
    }


def seed_loop_run(args, data, seed: int) -> dict:
    torch.manual_seed(seed)
    started = time.perf_counter()
    model = cnnlab.build_model("mnist_s5")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    train_loader = seed_style_loader(data.train_images, data.train_labels, data.mean, data.std,
                                     128, degrees=7.0, workers=args.workers)
    test_loader = seed_style_loader(data.test_images, data.test_labels, data.mean, data.std,
                                    128, shuffle=False, workers=args.workers)
    accuracies = []
    for epoch in range(1, args.seed_epochs + 1):
        seed_style_train_epoch(model, train_loader, optimizer)
        accuracies.append(seed_style_test(model, test_loader))
        print(f"  seed loop epoch {epoch}: {accuracies[-1]:.2f}% at "
              f"{time.perf_counter() - started:.1f}s", flush=True)
        if accuracies[-1] >= args.target:
            break
    reached = accuracies[-1] >= args.target
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "reached": reached, "epoch": len(accuracies),
            "final": accuracies[-1], "best": max(accuracies), "total": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="mnist-99.4-5ep")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seed-loop-seeds", type=int, nargs="*", default=[0],
                        help="runs of the seed loop (each is up to 20 epochs; none skips it)")
    parser.add_argument("--seed-epochs", type=int, default=20, help="the seed's epoch budget")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--target", type=float, default=99.4)
    parser.add_argument("--out", default="runs/benchmarks")
    parser.add_argument("--amp", nargs="+", choices=get_args(AmpMode),
                        help="train.amp for cnnlab's runs, each in turn (default: the recipe's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a recipe override for cnnlab's runs")
    args = parser.parse_args()

    print(machine_line())
    started = time.perf_counter()
    data = cnnlab.load_dataset("mnist")
    print(f"data loaded and verified in {time.perf_counter() - started:.2f}s (not counted)")

    ours: dict[str | None, list[dict]] = {}
    for seed in args.seeds:  # the precisions alternate: the machine's drift hits both alike
        for amp in args.amp or [None]:
            row = cnnlab_run(args, data, seed, amp)
            ours.setdefault(amp, []).append(row)
            print(f"cnnlab {args.recipe} ({row['precision']}) seed {seed}: {args.target}% "
                  f"{'after' if row['reached'] else 'NOT reached in'} {row['seconds']:.1f}s "
                  f"(epoch {row['epoch']}), final {row['final']:.2f}%, min of last epochs "
                  f"{row['min_last']:.2f}%, {row['epochs_run']} epochs in {row['total']:.1f}s",
                  flush=True)
    theirs = []
    for seed in args.seed_loop_seeds:
        row = seed_loop_run(args, data, seed)
        theirs.append(row)
        print(f"seed loop mnist-s5 seed {seed}: {args.target}% "
              f"{'after' if row['reached'] else 'NOT reached in'} {row['seconds']:.1f}s "
              f"({row['epoch']} epochs), final {row['final']:.2f}%, best {row['best']:.2f}%",
              flush=True)

    for rows in ours.values():
        print("time_to_target " + summary(rows, theirs))


def summary(ours: list[dict], theirs: list[dict]) -> str:
    """One precision's runs against the seed loop's, as key=value fields. A miss counts
    against cnnlab on both sides: a cnnlab run that never reached the target took forever
    (more than half missing: `seconds=never`, `speedup=none`), a seed-loop run that never
    reached it took only its epoch budget."""
    ours_seconds = median_to_target(ours, "seconds")
    fields = [f"precision={ours[0]['precision'].replace(' ', '_')}",
              f"seconds={finite_or_never(ours_seconds, '.1f')}",
              f"epochs={finite_or_never(median_to_target(ours, 'epoch'), 'g')}",
              f"reached={sum(row['reached'] for row in ours)}/{len(ours)}",
              f"final_acc_mean={statistics.mean(row['final'] for row in ours):.2f}",
              f"min_last_epochs={min(row['min_last'] for row in ours):.2f}"]
    if theirs:
        theirs_seconds = statistics.median(row["seconds"] for row in theirs)
        fields += [f"seed_loop_seconds={theirs_seconds:.1f}",
                   f"seed_loop_reached={sum(row['reached'] for row in theirs)}/{len(theirs)}",
                   f"speedup={theirs_seconds / ours_seconds:.1f}" if math.isfinite(ours_seconds)
                   else "speedup=none"]
    return " ".join(fields)


def median_to_target(rows: list[dict], key: str) -> float:
    """The median of `key` over cnnlab's runs, a run that missed the target counted as never."""
    return statistics.median(row[key] if row["reached"] else math.inf for row in rows)


def finite_or_never(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "never"


if __name__ == "__main__":
    main()
