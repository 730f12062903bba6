"""What each part of airbench94's method is worth in `cifar-94-10ep`: the recipe trained with
one part switched off at a time, accuracy at its last epoch beside the full recipe's.

Each part trains into OUT/<part> as `cnnlab train` would, and a part whose folder is there is
resumed (or skipped when finished), so a long ablation can be stopped and run again:

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/ablation.py --out /somewhere \
        --parts full no-lookahead bn-bias-lr-1x
    .venv/bin/python benchmarks/ablation.py --out /somewhere --table

Run one process with all the machine's threads, not one per core: this net trains faster so
(BENCHMARKS.md, "The ablation"). The table shows every part under OUT at its latest epoch;
the full recipe's row is the part `full`, or `--baseline DIR` (a run of the unchanged recipe).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cnnlab
from cnnlab.run_folder import RunFolder
from machine import machine_line

RECIPE = "cifar-94-10ep"

# part -> (what is switched off, the --set overrides that switch it off)
PARTS: dict[str, tuple[str, list[str]]] = {
    "full": ("nothing: the recipe as it ships", []),
    "no-lookahead": ("lookahead (0.95^5 x progress^3 every 5 steps)", ["train.lookahead_every=0"]),
    "bn-bias-lr-1x": ("BatchNorm shifts at 64x the learning rate", ["optim.bn_bias_lr_scale=1"]),
    "no-nesterov": ("Nesterov momentum (plain heavy-ball)", ["optim.nesterov=false"]),
    "whitening-bias-trained": ("the whitening bias held after epoch 3",
                               ["train.whitening_bias_epochs=10"]),
    "bn-momentum-0.1": ("fast BatchNorm statistics (0.4 -> PyTorch's 0.1)",
                        ["model.args.bn_momentum=0.1"]),
    "bn-scale-learned": ("frozen BatchNorm scales", ["model.args.freeze_bn_scale=false"]),
    "default-init": ("identity-initialised convolutions", ["model.args.identity_init=false"]),
    "head-scale-1": ("logits scaled by 1/9", ["model.args.head_scale=1"]),
}


def train_part(out: Path, part: str) -> None:
    """Train `part` into out/part, continuing what an earlier call left there."""
    folder = out / part
    if folder.exists():
        run = RunFolder(folder)
        done, epochs = run.history(), run.recipe().train.epochs
        if len(done) >= epochs:
            print(f"{part}: finished ({len(done)} epochs)", flush=True)
            return
        if done:
            print(f"{part}: resuming after epoch {len(done)}", flush=True)
            cnnlab.run(resume=folder, progress=False, report=False)
            return
        shutil.rmtree(folder)  # stopped inside its first epoch: nothing to keep
    print(f"{part}: switching off {PARTS[part][0]}", flush=True)
    recipe = cnnlab.load_recipe(RECIPE, PARTS[part][1])
    cnnlab.run(recipe, out_dir=out, run_name=part, progress=False, report=False)


def history(folder: Path) -> dict[int, dict]:
    """The folder's epochs so far, by number ({} before its first)."""
    if not (folder / "history.jsonl").exists():
        return {}
    return {row["epoch"]: row for row in RunFolder(folder).history()}


def print_table(out: Path, baseline: Path | None) -> None:
    """Each part at its latest epoch against the full recipe at the same epoch: a part still
    running is compared where both stand."""
    full_folder = baseline or out / "full"
    full = history(full_folder)
    print("| switched off | epoch | test acc (TTA) | change | without TTA | precision |")
    print("|---|---:|---:|---:|---:|---|")
    if full:
        last = full[max(full)]
        print(f"| nothing (`{full_folder.name}`) | {last['epoch']} | {last['test_acc']:.2f} | | "
              f"{last['test_acc_no_tta']:.2f} | {last['precision']} |")
        print(f"| test-time augmentation | {last['epoch']} | {last['test_acc_no_tta']:.2f} | "
              f"{last['test_acc_no_tta'] - last['test_acc']:+.2f} | | {last['precision']} |")
    for part, (what, _) in PARTS.items():
        rows = history(out / part) if part != "full" else {}
        if not rows:
            continue
        last = rows[max(rows)]
        same = full.get(last["epoch"])
        change = f"{last['test_acc'] - same['test_acc']:+.2f}" if same else ""
        plain = last.get("test_acc_no_tta")
        print(f"| {what} | {last['epoch']} | {last['test_acc']:.2f} | {change} | "
              f"{'' if plain is None else f'{plain:.2f}'} | {last['precision']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=[])
    parser.add_argument("--table", action="store_true", help="print the table of OUT and stop")
    parser.add_argument("--baseline", type=Path, help="a finished run of the unchanged recipe")
    args = parser.parse_args()
    if not args.table:
        print(machine_line())
        for part in args.parts:  # a bad override fails now, not hours into the queue
            cnnlab.load_recipe(RECIPE, PARTS[part][1])
        args.out.mkdir(parents=True, exist_ok=True)
        for part in args.parts:
            train_part(args.out, part)
    print_table(args.out, args.baseline)


if __name__ == "__main__":
    main()
