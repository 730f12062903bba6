"""What feeding infeasible designs back to the sampler saves: the search of a design file run
twice with the same sampler seed, the designs over the budget told to the sampler as
infeasible (Optuna's constraints) and told as failed trials (which samplers ignore), on a
small real slice with one-epoch trials, so the count of proposals is what differs.

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/design_feedback.py \\
        benchmarks/designs/mnist-s5-5k.toml --trials 30 --seeds 0 1 2 [--max-params 3000]

Prints, per sampler seed and setting, the designs trained, the designs proposed over the
budget, and the seconds spent; then `design_feedback ...` with the medians.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import tomli_w

from cnnlab.design.design_file import load_design
from cnnlab.sweep import sweep


def search(design_file: str, trials: int, seed: int, constraints: bool, root: Path,
           max_params: int | None) -> tuple:
    document = copy.deepcopy(load_design(design_file).sweep_document)
    if max_params is not None:  # a tighter budget: more of the space over it
        document["spec"]["max_params"] = max_params
    document["train"]["epochs"] = 1  # what is measured is the proposals, not the accuracy
    document["data"].update(train_limit=3000, test_limit=500)
    document["sweep"].update(trials=trials, seed=seed, constraints=constraints, val_split=500,
                             name=f"feedback-{seed}-{constraints}", pruner="none")
    document["spec"].pop("max_epochs", None)
    path = root / f"{document['sweep']['name']}.toml"
    path.write_text(tomli_w.dumps(document))
    started = time.monotonic()
    result = sweep(path, out_dir=root / "sweeps", progress=False, echo=None)
    seconds = time.monotonic() - started
    everything = result.study.get_trials(deepcopy=False)
    rejected = sum("rejected" in t.user_attrs for t in everything)
    return len(everything) - rejected, rejected, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("design_file")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-params", type=int, help="replace the design's max_params")
    args = parser.parse_args()
    found: dict[bool, list[int]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            for constraints in (True, False):
                trained, rejected, seconds = search(args.design_file, args.trials, seed,
                                                    constraints, Path(scratch), args.max_params)
                found[constraints].append(rejected)
                label = "infeasible fed back" if constraints else "told as failed    "
                print(f"seed {seed}, {label}: {trained} designs trained, {rejected} proposed "
                      f"over the budget, {seconds:.0f} s", flush=True)
    on, off = statistics.median(found[True]), statistics.median(found[False])
    print(f"design_feedback trials={args.trials} seeds={len(args.seeds)} "
          f"max_params={args.max_params or 'as designed'} "
          f"rejected_median_fed_back={on:g} rejected_median_failed={off:g}")


if __name__ == "__main__":
    main()
