"""How well a short training predicts a full one, per input shape: the rank correlation
(Spearman) between each rung's validation figure and the full-length figure, over designs
sampled from a design file's space (the shipped default space when the file gives none)
that fit its budget. `cnnlab design` chooses its rungs from this table (BENCHMARKS.md).

A rung trains the design with the recipe's whole schedule compressed into fewer epochs
(One Cycle's warm-up and decay both happen, and a plain tail shrinks with it, as in
`cnnlab design`); its figure is the last epoch's validation
accuracy. The full figure is the design's, as the
search ranks it: the lowest validation accuracy over the spec's last `last_epochs` epochs.

    OMP_NUM_THREADS=1 CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/rung_correlation.py \\
        DESIGN.toml --designs 12 --rungs 2 5 --out /work/runs-bg/rungs

Each training is kept in `--out` (results.jsonl), so a stopped run continues where it was,
the training it was in resumed from its last epoch (give it the same `--set` again).
`--share I/N` trains every N-th design from the I-th: N one-thread processes on one `--out`
split the designs between them.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import tomli_w

from cnnlab.config import recipe_from_table
from cnnlab.data import load_recipe_data
from cnnlab.design.confirm import trained_in
from cnnlab.design.design import _random_value
from cnnlab.design.design_file import load_design
from cnnlab.design.rungs import rung_values
from cnnlab.errors import CnnlabError
from cnnlab.prepare import prepare
from cnnlab.sweep.sweep_file import load_sweep
from machine import machine_line


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (ties get their mean rank)."""
    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=values.__getitem__)
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var if var else float("nan")


def fitting_designs(search, count: int, seed: int) -> list[dict]:
    """`count` distinct random points of the space whose design meets the budget."""
    rng, found, seen = random.Random(seed), [], set()
    for _ in range(100 * count):
        values = {d.key: _random_value(d, rng) for d in search.space}
        key = json.dumps(values, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        try:
            prepared = prepare(search.recipe_for(values), progress=False)
        except CnnlabError:
            continue
        if prepared.inspection.check.passed:
            found.append({"values": values, "params": prepared.inspection.summary.total_params})
            if len(found) == count:
                break
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("design_file")
    parser.add_argument("--designs", type=int, default=12)
    parser.add_argument("--rungs", type=int, nargs="+", default=[2, 5], help="epochs per rung")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data-dir")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="a recipe setting for every training "
                        "(e.g. train.amp=off), as `cnnlab train --set` takes it")
    parser.add_argument("--share", type=share, default=(0, 1), metavar="I/N",
                        help="train designs I, I+N, I+2N, ... (default 0/1: all)")
    parser.add_argument("--report", action="store_true", help="print the table of what is "
                        "kept in --out, training nothing")
    args = parser.parse_args()

    search = load_sweep_of(args.design_file, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    kept = args.out / "results.jsonl"
    done = kept_rows(kept)
    if args.report:
        report(done, [f"{e} epochs" for e in args.rungs], args.out / "runs")
        return 0
    data = load_recipe_data(search.base.data, args.data_dir, progress=False)
    full = search.base.train.epochs
    last = search.base.spec.last_epochs
    designs = fitting_designs(search, args.designs, args.seed)
    rungs = [f"{e} epochs" for e in args.rungs]
    print(machine_line())
    print(f"{len(designs)} designs of {search.name}'s space within budget; full = {full} "
          f"epochs, its figure the lowest val accuracy of the last {last}", flush=True)
    part, parts = args.share
    for number, design in enumerate(designs):
        if number % parts != part:
            continue
        for rung, epochs in [("full", full), *zip(rungs, args.rungs, strict=True)]:
            if (number, rung) in done:
                continue
            recipe = search.recipe_for(design["values"], name=f"d{number}")
            raw = recipe.with_values(rung_values(recipe, epochs, last=rung == "full")).to_dict()
            raw["spec"] = {}
            started = time.monotonic()
            history, _ = trained_in(recipe_from_table(raw, args.overrides, "rung"),
                                    args.out / "runs",
                                    f"d{number}-{rung.replace(' ', '_')}", data)
            figure = (min(r["val_acc"] for r in history[-last:]) if rung == "full"
                      else history[-1]["val_acc"])
            row = {"design": number, "rung": rung, "params": design["params"],
                   "val_acc": figure, "test_acc": history[-1]["test_acc"],
                   "seconds": round(time.monotonic() - started, 1)}
            done[(number, rung)] = row
            with kept.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    report(kept_rows(kept), rungs, args.out / "runs")  # with what the other shares wrote
    return 0


def report(done: dict, rungs: list[str], runs: Path) -> None:
    numbers = sorted({n for n, rung in done if rung == "full"})
    print("| design | params | full (val %) | test % at the last epoch | "
          + " | ".join(f"{rung} (val %)" for rung in rungs) + " |")
    print("|---|---|---|---|" + "---|" * len(rungs))
    for n in numbers:
        full = done[(n, "full")]
        shorts = [f"{done[(n, rung)]['val_acc']:.2f}" if (n, rung) in done else "-"
                  for rung in rungs]
        print(f"| {n} | {full['params']:,} | {full['val_acc']:.2f} | "
              f"{_last_test(full, runs / f'd{n}-full')} | " + " | ".join(shorts) + " |")
    print()
    print("| rung | designs | Spearman with full | gap to full, points (median) | "
          "seconds per design (median) |")
    print("|---|---|---|---|---|")
    for rung in rungs:
        pairs = [(done[(n, rung)]["val_acc"], done[(n, "full")]["val_acc"]) for n in numbers
                 if (n, rung) in done]
        # a row carried over from an earlier --out (its figure recorded, not its time) has none
        seconds = sorted(done[(n, rung)]["seconds"] for n in numbers
                         if (n, rung) in done and done[(n, rung)]["seconds"] is not None)
        if len(pairs) >= 3:
            rho = spearman(*map(list, zip(*pairs, strict=True)))
            gap = statistics.median(full - short for short, full in pairs)
            took = f"{statistics.median(seconds):.0f}" if seconds else "-"
            print(f"| {rung} | {len(pairs)} | {rho:.2f} | {gap:.2f} | {took} |")
    full = [done[(n, "full")]["seconds"] for n in numbers
            if done[(n, "full")]["seconds"] is not None]
    if full:
        print(f"| full | {len(full)} | 1.00 | 0 | {statistics.median(full):.0f} |")


def _last_test(row: dict, run: Path) -> str:
    """The full training's last test accuracy: kept in its row, else read from its run
    (rows written before they kept it); "-" where neither has it."""
    if row.get("test_acc") is not None:
        return f"{row['test_acc']:.2f}"
    history = run / "history.jsonl"
    if not history.is_file():
        return "-"
    return f"{json.loads(history.read_text().splitlines()[-1])['test_acc']:.2f}"


def kept_rows(kept: Path) -> dict:
    if not kept.is_file():
        return {}
    rows = map(json.loads, kept.read_text().splitlines())
    return {(r["design"], r["rung"]): r for r in rows}


def share(text: str) -> tuple[int, int]:
    try:
        part, parts = map(int, text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not I/N (e.g. 0/2)") from None
    if not 0 <= part < parts:
        raise argparse.ArgumentTypeError(f"{text!r}: I must be 0 to N-1")
    return part, parts


def load_sweep_of(design_file: str, out: Path):
    spec = load_design(design_file)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "search.toml"
    path.write_text(tomli_w.dumps(spec.sweep_document), encoding="utf-8")
    return load_sweep(path)


if __name__ == "__main__":
    sys.exit(main())
