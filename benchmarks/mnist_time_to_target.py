"""Time to 99.4% MNIST test accuracy for the `mnist-99.4` recipe, one run per seed.

Prints, per seed: wall seconds and epochs until test accuracy first reaches the target, the
final accuracy and the lowest accuracy over the last `spec.last_epochs` epochs (the
assignment's condition). Ends with one machine-readable line.

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/mnist_time_to_target.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import cnnlab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="mnist-99.4")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--target", type=float, default=99.4)
    parser.add_argument("--out", default="runs/benchmarks")
    args = parser.parse_args()

    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    started = time.perf_counter()
    data = cnnlab.load_dataset("mnist")
    print(f"data loaded and verified in {time.perf_counter() - started:.2f}s (not counted)")

    rows = []
    for seed in args.seeds:
        recipe = cnnlab.load_recipe(args.recipe, [f"train.seed={seed}", "train.device=cpu"])
        run_started = time.perf_counter()
        reached = {}

        def watch(line: str, reached=reached, run_started=run_started) -> None:
            if line.startswith("Epoch :"):
                reached["epoch"] = int(line.split()[2].split("/")[0])
            elif line.startswith("Test set") and "seconds" not in reached:
                accuracy = float(line.rsplit("(", 1)[1].rstrip("%)"))
                if accuracy >= args.target:
                    reached["seconds"] = time.perf_counter() - run_started
                    reached["at_epoch"] = reached["epoch"]

        result = cnnlab.train(recipe, dataset=data, out_dir=args.out, progress=False, echo=watch,
                              report=False)
        total = time.perf_counter() - run_started
        last_n = recipe.spec.last_epochs
        row = {
            "seed": seed,
            "seconds": reached.get("seconds", float("nan")),
            "epoch": reached.get("at_epoch", 0),
            "final": result.final_accuracy,
            "min_last": min(r["test_acc"] for r in result.history[-last_n:]),
            "total": total,
        }
        rows.append(row)
        print(f"seed {seed}: {args.target}% after {row['seconds']:.1f}s (epoch {row['epoch']}), "
              f"final {row['final']:.2f}%, min of last {last_n} epochs {row['min_last']:.2f}%, "
              f"{len(result.history)} epochs in {total:.1f}s", flush=True)

    median = statistics.median(r["seconds"] for r in rows)
    print(f"time_to_target seconds={median:.1f} "
          f"epochs={statistics.median(r['epoch'] for r in rows)} "
          f"final_acc_mean={statistics.mean(r['final'] for r in rows):.2f} "
          f"min_last_epochs={min(r['min_last'] for r in rows):.2f} seeds={len(rows)}")


if __name__ == "__main__":
    main()
