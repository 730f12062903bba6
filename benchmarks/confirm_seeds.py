"""A recipe trained on several seeds, on the full training split, judged on the test split the
way its [spec] judges it: the figure a sweep's pick must show outside the sweep.

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/confirm_seeds.py mnist-s5-8k \
        --seeds 0 1 2

Prints each run's test accuracy per epoch, the lowest over the spec's last epochs, and ends
with one machine-readable line.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import cnnlab
from machine import machine_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    print(machine_line())
    data = cnnlab.load_recipe(args.recipe)
    window = data.spec.last_epochs
    lows, finals, passed = [], [], 0
    with tempfile.TemporaryDirectory() as out:
        for seed in args.seeds:
            recipe = cnnlab.load_recipe(args.recipe, [*args.overrides, f"train.seed={seed}"])
            result = cnnlab.train(recipe, out_dir=out, progress=False, echo=None, report=False)
            accuracies = [row["test_acc"] for row in result.history]
            low = min(accuracies[-window:])
            lows.append(low)
            finals.append(accuracies[-1])
            passed += result.check.passed
            seconds = sum(row["seconds"] for row in result.history)
            print(f"seed {seed}: {', '.join(f'{a:.2f}' for a in accuracies)} | lowest of last "
                  f"{window}: {low:.2f} | {seconds:.0f} s | spec "
                  f"{'met' if result.check.passed else 'NOT met'}", flush=True)
    params = cnnlab.count_parameters(cnnlab.build_model(recipe.model.name, **recipe.model.args))
    print(f"confirm_seeds recipe={args.recipe} params={params} seeds={len(args.seeds)} "
          f"spec_met={passed}/{len(args.seeds)} min_last_epochs={min(lows):.2f} "
          f"final_median={statistics.median(finals):.2f}")


if __name__ == "__main__":
    main()
