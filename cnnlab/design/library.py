"""The design library: what finished design studies learned, shipped with cnnlab so that the
next study starts from it instead of from nothing.

One TOML file per input shape in `cnnlab/design/library/` (`1x28x28.toml`, ...), written by
`cnnlab design-library DESIGN_DIR...` from finished design folders (each keeps its record in
`design.json`), never by hand. An entry is a study's pick or, where it had none, the design
that came nearest the rule in confirmation (`met = false`): its searched values (layout and
training settings), its budget figures (parameters, mult-adds, activation bytes), the spec it
was searched for, its validation figures at the last rung and its confirmation runs (seed,
precision, last epochs' test accuracies).

A new study first tries the library's designs nearest its budget, scaled to it: every width
times sqrt(budget / parameters) (a conv stack's parameters grow with the square of its
widths), rounded, then shrunk 3% at a time until the design fits the budget. They are
enqueued as the first designs of rung 0; the sampler searches around them.

The library's confirmation runs also say how far one design's judged figure moves from seed
to seed and precision to precision: the margin a new study aims above the target, and the
share of unseen seeds on which a confirmed design is predicted to hold its rule (confirm.py).
"""

from __future__ import annotations

import math
import re
from importlib import resources
from pathlib import Path
from statistics import NormalDist
from typing import Any

import tomli_w

from cnnlab.atomic_file import atomic_write
from cnnlab.config import get_dotted, read_toml
from cnnlab.errors import CnnlabError, ConfigError, RunFolderError
from cnnlab.run_folder.confined import FolderFile
from cnnlab.run_folder.records import json_object, plain_strings, read_text, reading
from cnnlab.sweep.sweep_file import Dimension, SweepPlan

RECORD_FILE = "design.json"
RECORD_BYTES = 4 << 20  # a study's record is a few kB
# CxHxW: a record's input shape names the library file it goes into
SHAPE_NAME = re.compile(r"[1-9][0-9]{0,4}x[1-9][0-9]{0,4}x[1-9][0-9]{0,4}")
WIDTH_KEY = re.compile(r"model\.args\.widths\.\d+")
STARTS = 3  # library designs a study starts from
SHRINK = 0.97
# A learned seed margin stands on this many degrees of freedom at least (below: the start's),
# and aims for all of a confirmation's runs to meet the target together this often.
SPREAD_DOF = 8
CONFIRMATION_HOLDS = 0.8


def shape_name(input_shape: tuple[int, int, int]) -> str:
    return "x".join(map(str, input_shape))


def library_folder() -> Path:
    return Path(str(resources.files("cnnlab.design") / "library"))


def entries(input_shape: tuple[int, int, int], folder: Path | None = None) -> list[dict]:
    """The library's designs for inputs of `input_shape` (none: an empty list)."""
    path = (folder or library_folder()) / f"{shape_name(input_shape)}.toml"
    if not path.is_file():
        return []
    return read_toml(path.read_text(encoding="utf-8"), path).get("design", [])


def seed_spread(input_shape: tuple[int, int, int], folder: Path | None = None, *,
                besides: dict[str, Any] | None = None) -> tuple[float, int]:
    """How far a design's judged figure (the lowest of its last epochs' test accuracy) moves
    between its confirmation runs (seeds and precisions): the standard deviation within each
    library design's runs, pooled over the designs of `input_shape` (but the one whose values
    are `besides`), and the degrees of freedom it rests on (0 where no design has two runs)."""
    return pooled_spread([[min(run["last_test_acc"]) for run in entry.get("runs", [])]
                          for entry in entries(input_shape, folder)
                          if besides is None or entry.get("values") != besides])


def pooled_spread(groups: list[list[float]], prior: tuple[float, int] = (0.0, 0)
                  ) -> tuple[float, int]:
    """The standard deviation of figures about their own group's mean, pooled over `groups`
    and a `prior` (a spread and its degrees of freedom), with the degrees of freedom it rests
    on."""
    spread, dof = prior
    squares = spread * spread * dof
    for group in groups:
        if len(group) > 1:
            mean = sum(group) / len(group)
            squares += sum((x - mean) ** 2 for x in group)
            dof += len(group) - 1
    return (math.sqrt(squares / dof) if dof else 0.0), dof


def seed_margin(spread: float, runs: int) -> float:
    """Points a design must hold above the target, on average over seeds, for all `runs`
    confirmation runs to meet it together CONFIRMATION_HOLDS of the time, its runs spreading
    by `spread` (a standard deviation) about that average, independently."""
    return spread * NormalDist().inv_cdf(CONFIRMATION_HOLDS ** (1 / runs))


def write_library(design_dirs: list[str | Path], folder: Path | None = None) -> list[Path]:
    """Add the finished designs in `design_dirs` to the library (an entry per design folder,
    replaced when the folder is added again); returns the files written."""
    folder = folder or library_folder()
    by_shape: dict[str, list[dict]] = {}
    for design_dir in design_dirs:
        record = _record(Path(design_dir))
        if _design_of(record) is None:
            continue  # a study that confirmed nothing teaches no starting point
        by_shape.setdefault(record["input_shape"], []).append(record)
    written = []
    for shape, records in sorted(by_shape.items()):
        path = folder / f"{shape}.toml"
        kept = read_toml(path.read_text(encoding="utf-8"), path).get("design", []) \
            if path.is_file() else []
        names = {r["name"] for r in records}
        merged = [e for e in kept if e["name"] not in names] + [_entry(r) for r in records]
        merged.sort(key=lambda e: (e["dataset"], e["params"]))
        with atomic_write(path, "w") as handle:
            handle.write(f"# The design library for {shape} inputs: written by `cnnlab "
                         "design-library`, not by hand.\n\n" + tomli_w.dumps({"design": merged}))
        written.append(path)
    return written


def _record(design_dir: Path) -> dict:
    """A finished design folder's record, read as data from a folder that may be someone
    else's: through no link, bounded, plain text, every field an entry takes present, and its
    input shape CxHxW (it names the file written)."""
    source = FolderFile(design_dir, RECORD_FILE)
    if not source.exists():
        raise ConfigError(f"{design_dir} holds no {RECORD_FILE}: it is not a finished "
                          "design folder (run `cnnlab design` to its end first)")
    with reading(source.path, "is not a design record cnnlab wrote"):
        record = json_object(read_text(source, RECORD_BYTES), source.path,
                             {"name": str, "dataset": str, "input_shape": str, "spec": dict})
        plain_strings(record, source.path)
        if not SHAPE_NAME.fullmatch(record["input_shape"]):
            raise RunFolderError(f"{source.path}: input_shape {record['input_shape']!r} is not "
                                 "CxHxW: it is not a design record cnnlab wrote")
        if _design_of(record) is not None:
            tomli_w.dumps(_entry(record))  # every field an entry takes, of a kind TOML holds
    return record


def _design_of(record: dict) -> dict | None:
    """What a study teaches the next one: its pick; else the design that came nearest the
    rule in confirmation (a near miss at a budget is a better start than a design scaled to
    it from elsewhere); None where nothing was confirmed."""
    if record.get("pick") is not None:
        return record["pick"]
    return min(record.get("candidates", []), key=lambda c: c["short_by"], default=None)


def _entry(record: dict) -> dict:
    design = _design_of(record)
    return {"name": record["name"], "dataset": record["dataset"], "spec": record["spec"],
            "values": design["values"], "params": design["params"],
            "mult_adds": design["mult_adds"], "activation_bytes": design["activation_bytes"],
            "val_acc": design["val_acc"], "met": design.get("met", True),
            "runs": design["runs"], "failed_candidates": record.get("failed", [])}


def starting_points(search: SweepPlan, input_shape: tuple[int, int, int], budget: int | None,
                    library: list[dict] | None = None) -> list[dict[str, Any]]:
    """The library's designs nearest `budget` (parameters), then the search's own base design,
    each scaled to the budget and fitted to the search's space: points to enqueue (every key
    the space searches, values within its ranges; a key a library design lacks takes the
    base's value). The base design comes last, so that a budget the library holds nothing
    near still starts from a design that fits it."""
    from cnnlab.prepare import prepare

    designs = entries(input_shape) if library is None else library
    base = _base_design(search)
    target = budget or max(d["params"] for d in [*designs, base])
    nearest = sorted(designs, key=lambda d: abs(math.log(d["params"] / target)))[:STARTS]
    space = {d.key: d for d in search.space}
    points = []
    for design in [*nearest, base]:
        factor = math.sqrt(target / design["params"])
        # a design from a study whose space lacked a key takes the base's value for it, not
        # the sampler's draw: the base is what this space knows best
        values = {**base["values"], **design["values"]}
        for _ in range(40):
            point = _fitted(scaled(values, factor), space)
            try:
                prepared = prepare(search.recipe_for(point), progress=False)
            except CnnlabError:
                break
            if prepared.inspection.check.passed:
                if point not in points:
                    points.append(point)
                break
            factor *= SHRINK
    return points


def _base_design(search: SweepPlan) -> dict[str, Any]:
    """The search's base recipe as a design: its values at the keys the space searches, and
    its parameters."""
    from cnnlab.prepare import prepare

    raw = search.base.to_dict()
    values = {dim.key: get_dotted(raw, dim.key) for dim in search.space}
    params = prepare(search.base, progress=False).inspection.summary.total_params
    return {"values": {k: v for k, v in values.items() if v is not None}, "params": params}


def scaled(values: dict[str, Any], factor: float) -> dict[str, Any]:
    """`values` with every width times `factor` (at least 1 channel)."""
    return {key: max(1, round(value * factor)) if WIDTH_KEY.fullmatch(key) else value
            for key, value in values.items()}


def _fitted(values: dict[str, Any], space: dict[str, Dimension]) -> dict[str, Any]:
    point = {}
    for key, value in values.items():
        dim = space.get(key)
        if dim is None:
            continue
        if dim.kind == "choice":
            if value in dim.values:
                point[key] = value
        elif dim.kind == "int":
            steps = round((min(max(value, dim.low), dim.high) - dim.low) / dim.step)
            point[key] = int(dim.low + steps * dim.step)
        else:
            point[key] = float(min(max(value, dim.low), dim.high))
    return point
