"""What each part of airbench94's method is worth in `cifar-94-10ep`: the recipe trained with
one part switched off at a time, accuracy at its last epoch beside the full recipe's.

Each part trains into OUT/<part> as `cnnlab train` would, and a part whose folder is there is
resumed (or skipped when finished), so a long ablation can be stopped and run again:

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/ablation.py --out /somewhere \
        --parts full no-lookahead bn-bias-lr-1x
    .venv/bin/python benchmarks/ablation.py --out /somewhere --table

Each part tests each epoch on the plain images and gets its test-time-augmented accuracy once,
from its last epoch's weights (OUT/<part>/tta.json): training does not depend on the test, so
the figure is the one a run testing with TTA every epoch reports, and the six views' 60,000
forward passes an epoch (a third of an epoch's time on a CPU) are spent once instead of ten
times. Run one process with all the machine's threads, not one per core: this net trains
faster so (docs/benchmarks/cifar10.md, "The ablation"). The table shows every part under OUT at its
latest epoch; the full recipe's row is the part `full`, or `--baseline DIR` (a run of the
unchanged recipe).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import NamedTuple

import cnnlab
from cnnlab.atomic_file import atomic_write
from cnnlab.run_folder import RunFolder
from machine import machine_line
from tta_gain import accuracies

RECIPE = "cifar-94-10ep"
TTA = cnnlab.load_recipe(RECIPE).train.tta

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
    # Not a part switched off: the scale traded for the learning rate it stands in for (it
    # scales every gradient by 1/9), with the same weight decay per step (lr x decay).
    "head-scale-1-lr-ninth": ("logits scaled by 1/9, traded for lr / 9 and decay x 9",
                              ["model.args.head_scale=1", "schedule.max_lr=0.16667",
                               "optim.weight_decay=0.012"]),
}


def train_part(out: Path, part: str) -> None:
    """Train `part` into out/part, continuing what an earlier call left there, then test its
    last epoch with the recipe's TTA if its epochs were tested without."""
    folder = out / part
    if folder.exists():
        run = RunFolder(folder)
        done, epochs = run.history(), run.recipe().train.epochs
        if len(done) >= epochs:
            print(f"{part}: finished ({len(done)} epochs)", flush=True)
        elif done:
            print(f"{part}: resuming after epoch {len(done)}", flush=True)
            cnnlab.resume(folder, progress=False, report=False)
        else:
            shutil.rmtree(folder)  # stopped inside its first epoch: nothing to keep
    if not folder.exists():
        print(f"{part}: switching off {PARTS[part][0]}", flush=True)
        recipe = cnnlab.load_recipe(RECIPE, [*PARTS[part][1], "train.tta=none"])
        cnnlab.train(recipe, out_dir=out, run_name=part, progress=False, report=False)
    trained = RunFolder(folder)
    if trained.recipe().train.tta == "none" and tta_row(folder) is None:
        epoch = len(trained.history())
        accuracy = accuracies(folder, (TTA,), echo=lambda line: print(f"{part}: {line}"))[TTA]
        with atomic_write(folder / "tta.json", "w") as handle:
            handle.write(json.dumps({"epoch": epoch, "tta": TTA, "test_acc": accuracy}) + "\n")


def tta_row(folder: Path) -> dict | None:
    """The TTA accuracy `train_part` measured on the folder's last epoch, if it did."""
    path = folder / "tta.json"
    return json.loads(path.read_text()) if path.exists() else None


class Scores(NamedTuple):
    epoch: int
    with_tta: float | None  # None: a part tested plain, before its last epoch's TTA test
    plain: float
    precision: str


def scores(folder: Path, epoch: int | None = None) -> Scores | None:
    """The folder's test accuracies at `epoch` (its latest by default), None before it."""
    if not (folder / "history.jsonl").exists():
        return None
    rows = {row["epoch"]: row for row in RunFolder(folder).history()}
    row = rows.get(max(rows, default=0) if epoch is None else epoch)
    if row is None:
        return None
    if "test_acc_no_tta" in row:  # tested with TTA every epoch
        return Scores(row["epoch"], row["test_acc"], row["test_acc_no_tta"], row["precision"])
    measured = tta_row(folder)
    with_tta = measured["test_acc"] if measured and measured["epoch"] == row["epoch"] else None
    return Scores(row["epoch"], with_tta, row["test_acc"], row["precision"])


def print_table(out: Path, baseline: Path | None) -> None:
    """Each part at its latest epoch against the full recipe at the same epoch: a part still
    running is compared where both stand."""
    full_folder = baseline or out / "full"

    def shown(value: float | None) -> str:
        return "" if value is None else f"{value:.2f}"

    def change(value: float | None, against: float | None) -> str:
        return "" if value is None or against is None else f"{value - against:+.2f}"

    print("| switched off | epoch | test acc (TTA) | change | without TTA | precision |")
    print("|---|---:|---:|---:|---:|---|")
    full = scores(full_folder)
    if full:
        print(f"| nothing (`{full_folder.name}`) | {full.epoch} | {shown(full.with_tta)} | | "
              f"{full.plain:.2f} | {full.precision} |")
        print(f"| test-time augmentation | {full.epoch} | {full.plain:.2f} | "
              f"{change(full.plain, full.with_tta)} | | {full.precision} |")
    for part, (what, _) in PARTS.items():
        part_scores = scores(out / part) if part != "full" else None
        if part_scores is None:
            continue
        same = scores(full_folder, part_scores.epoch)
        print(f"| {what} | {part_scores.epoch} | {shown(part_scores.with_tta)} | "
              f"{change(part_scores.with_tta, same and same.with_tta)} | "
              f"{part_scores.plain:.2f} | {part_scores.precision} |")


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
