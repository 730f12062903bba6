"""What `cnnlab design`'s confirmation predicts for each design in the design library: the
share of unseen seeds on which it meets its rule, from its confirmation runs and the spread
between the other library designs' runs (cnnlab/design/confirm.py), judged in fp32 alone and
in fp32 and bf16. Set beside what those designs did on seeds nobody confirmed them on
(docs/benchmarks/design.md), it is the check that the prediction means something.

    .venv/bin/python benchmarks/unseen_seed_prediction.py
"""

from __future__ import annotations

from pathlib import Path

from cnnlab.config import load_recipe
from cnnlab.design.confirm import UNSEEN_HOLDS, Confirmation, SeedRun
from cnnlab.design.library import entries, seed_spread

SHAPE = (1, 28, 28)


def main() -> None:
    print(f"{'design':<28} {'params':>6} {'judged in':<10} runs  margin  spread  dof  "
          f"holds unseen  kept (>= {UNSEEN_HOLDS:.0%})")
    for entry in entries(SHAPE):
        spec = entry["spec"]
        # the library keeps each run's last epochs: the recipe is judged on those alone
        recipe = load_recipe("mnist-s5-5k", [f"spec.min_test_acc={spec['min_test_acc']}",
                                             f"spec.last_epochs={spec['last_epochs']}",
                                             f"train.epochs={spec['last_epochs']}",
                                             "augment.off_last_epochs=0"])
        runs = [SeedRun(run["seed"], Path("."), [{"test_acc": a} for a in run["last_test_acc"]],
                        run["precision"]) for run in entry["runs"]]
        for precisions in (("fp32",), ("fp32", "bf16")):
            candidate = Confirmation(0, entry["params"], recipe, runs, precisions=precisions,
                                     library_spread=seed_spread(SHAPE,
                                                                besides=entry["values"]))
            spread, dof = candidate.spread
            holds = candidate.holds_unseen
            print(f"{entry['name']:<28} {entry['params']:>6} {'+'.join(precisions):<10} "
                  f"{len(candidate.judged):>4}  {candidate.mean_margin:6.3f}  {spread:6.3f}  "
                  f"{dof:>3}  "
                  f"{'-' if holds is None else f'{holds:.3f}':>12}  "
                  f"{'yes' if candidate.confirmed else 'no'}")


if __name__ == "__main__":
    main()
