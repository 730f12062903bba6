"""What each file of a run folder must hold, checked as it is read back. A folder travels
between people and disks: any file may be truncated, emptied, edited or swapped for another
run's, so every check ends in one RunFolderError that names the file and what is wrong."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_type_hints

import torch
from torch import nn

from cnnlab.config import nesting, read_toml
from cnnlab.display_text import control_character
from cnnlab.errors import CnnlabError, RunFolderError
from cnnlab.run_folder.confined import FolderFile
from cnnlab.run_folder.history import History, HistoryRow
from cnnlab.run_folder.lr_find_result import LRFindResult

_NUMBER = (int, float)

# Bounds on what a file may make cnnlab do, checked as it is read. Each is far above what any
# run writes and low enough that reading, plotting and reporting the file take seconds.
CONFIG_BYTES = 1 << 20  # a resolved recipe is a few kB; a user's list of 10,000 class names fits
SOURCE_BYTES = 4 << 20  # one model's source file
SMALL_JSON_BYTES = 64 << 10  # run.json: a few flags
LR_FIND_BYTES = 4 << 20  # a range test of up to ~100,000 steps
HISTORY_BYTES = 16 << 20  # MAX_EPOCHS rows of ~1 kB
LOG_BYTES = 64 << 20  # log.txt, read for its `epoch N:` lines
MAX_EPOCHS = 10_000  # recipe schemas admit no more (config.py); the report plots every epoch
MAX_STEPS_PER_EPOCH = 10_000_000  # 60,000 images at batch size 1 is 60,000 steps
MAX_NESTING = 32  # a config nests 3 tables deep, a history row 1: deeper is an attack on the
# parsers' recursion (Python's JSON and TOML readers would raise RecursionError)


@contextlib.contextmanager
def reading(path: Path, what: str = "") -> Iterator[None]:
    """Turn any error met while using what `path` held into one line that names the file.
    Errors cnnlab raised on purpose pass through as they are."""
    try:
        yield
    except CnnlabError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RuntimeError,
            UnicodeDecodeError, OverflowError, RecursionError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunFolderError(f"{path} {what or 'is damaged'}: {detail[:300]}") from None


def read_text(path: FolderFile, limit: int) -> str:
    return decoded(path.read_bytes(limit), path)


def decoded(data: bytes, path: FolderFile) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise RunFolderError(f"{path} is not UTF-8 text: the file is damaged") from None


def toml_table(data: bytes, path: FolderFile) -> dict[str, Any]:
    """A TOML file of a run folder, parsed once nesting and text were checked."""
    raw = read_toml(decoded(data, path), path, RunFolderError)
    plain_strings(raw, path)
    return raw


def plain_strings(value: Any, path: FolderFile | Path, where: str = "") -> None:
    """Refuse text with control characters anywhere in `value` (tables, lists, strings); a
    description may hold line breaks."""
    if isinstance(value, str):
        problem = control_character(value, lines=where.endswith("description"))
        if problem:
            raise RunFolderError(f"{path}: {where or 'a text'} {problem}: cnnlab shows no "
                                 "text that could drive a terminal")
    elif isinstance(value, dict):
        for key, item in value.items():
            plain_strings(key, path, "a key")
            plain_strings(item, path, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for item in value:
            plain_strings(item, path, where)


def _shallow(text: str, path: FolderFile | Path) -> None:
    """Refuse brackets nested deeper than MAX_NESTING before a parser recurses into them. Brackets
    inside strings count too: a file cnnlab wrote nests far less even so."""
    if nesting(text) > MAX_NESTING:
        raise RunFolderError(f"{path} nests more than {MAX_NESTING} levels deep: it is not a "
                             "file cnnlab wrote")


def _json(text: str, path: FolderFile | Path) -> Any:
    _shallow(text, path)
    return json.loads(text)


def history_rows(text: str, path: FolderFile) -> History:
    """history.jsonl: one JSON object per epoch, epochs 1, 2, 3, ... in order."""
    rows: History = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(rows) == MAX_EPOCHS:
            raise RunFolderError(f"{path} holds more than {MAX_EPOCHS:,} epochs: it is not a "
                                 "history cnnlab wrote")
        try:
            row = _json(line, path)
        except ValueError:
            raise RunFolderError(f"{path} line {number} is not JSON (a cut or edited file?): "
                                 "delete the line, or train the run again") from None
        rows.append(_checked_row(row, len(rows) + 1, f"{path} line {number}"))
    return rows


def _checked_row(row: Any, epoch: int, where: str) -> HistoryRow:
    if not isinstance(row, dict):
        raise RunFolderError(f"{where} is not a JSON object")
    missing = sorted(HistoryRow.__required_keys__ - row.keys())
    if missing:
        raise RunFolderError(f"{where} lacks {', '.join(missing)}")
    for key, value in row.items():
        kind = _ROW_TYPES.get(key)
        if kind is not None and not _fits(value, kind):
            raise RunFolderError(f"{where}: {key} = {value!r} is not {_word(kind)}")
    if row["epoch"] != epoch:
        raise RunFolderError(f"{where} is epoch {row['epoch']}, where epoch {epoch} belongs")
    for key, value in row.items():
        problem = _out_of_range(key, value)
        if problem:
            raise RunFolderError(f"{where}: {key} = {value!r} {problem}")
    if row["test_total"] < 1 or not 0 <= row["test_correct"] <= row["test_total"]:
        raise RunFolderError(f"{where}: test_correct = {row['test_correct']!r} of test_total = "
                             f"{row['test_total']!r} is no count of images")
    return row


def _out_of_range(key: str, value: Any) -> str | None:
    """Why a history field's value cannot be what training measured, or None."""
    if isinstance(value, str):
        return control_character(value)
    if not isinstance(value, _NUMBER) or isinstance(value, bool):
        return None
    if not math.isfinite(value):
        return "is not a finite number"
    if key.endswith("_acc") or key == "test_acc_no_tta":
        return None if 0 <= value <= 100 else "is not a percentage (0 to 100)"
    if key == "steps":
        return None if 1 <= value <= MAX_STEPS_PER_EPOCH else \
            f"is not a number of steps (1 to {MAX_STEPS_PER_EPOCH:,})"
    return None if value >= 0 else "is negative"


_ROW_TYPES = get_type_hints(HistoryRow)


def _fits(value: Any, kind: type) -> bool:
    if isinstance(value, bool):  # JSON's true is no number
        return kind is bool
    return isinstance(value, _NUMBER if kind is float else kind)


def _word(kind: type) -> str:
    return {float: "a number", int: "a whole number", str: "text"}.get(kind, kind.__name__)


def json_object(text: str, path: Path, types: dict[str, type]) -> dict[str, Any]:
    """A JSON object whose keys, where present, hold values of `types`."""
    try:
        value = _json(text, path)
    except ValueError:
        raise RunFolderError(f"{path} is not JSON: the file is damaged") from None
    if not isinstance(value, dict):
        raise RunFolderError(f"{path} must hold a JSON object")
    for key, kind in types.items():
        if key in value and not isinstance(value[key], kind):
            raise RunFolderError(f"{path}: {key} = {value[key]!r} has the wrong type")
    return value


def lr_find_record(text: str, path: Path) -> LRFindResult:
    """lr_find.json: the range test's curve and its three suggestions."""
    value = json_object(text, path, {"lrs": list, "losses": list, "diverged": bool})
    numbers = {key: value.get(key) for key in ("minimum", "valley", "steepest")}
    curves = (value.get("lrs"), value.get("losses"))
    if any(not _positive(v) for v in numbers.values()) \
            or any(c is None or not all(_fits(x, float) and math.isfinite(x) for x in c)
                   for c in curves) \
            or len(curves[0]) != len(curves[1]) or len(curves[0]) < 2 \
            or not all(_positive(lr) for lr in curves[0]) \
            or not isinstance(value.get("diverged"), bool):
        raise RunFolderError(f"{path} is not an LR range test record: it needs lrs (above 0) "
                             "and losses (finite numbers, as many of each), minimum, valley "
                             "and steepest (above 0) and diverged (true or false)")
    return LRFindResult(**{key: value[key] for key in ("lrs", "losses", "minimum", "valley",
                                                       "steepest", "diverged")})


# The two kinds of checkpoint: last.pt holds everything a resume needs, best.pt the best
# epoch's evaluated weights only.
TRAINING_STATE = {"epoch": int, "model": dict, "optimizer": dict, "schedule": dict, "rng": dict,
                  "history": list}
BEST_WEIGHTS = {"epoch": int, "model": dict, "test_acc": float}
# partial.pt is a training state with where it stopped inside the epoch after its history's.
PARTWAY = {"step": int, "seen": int, "loss_sum": torch.Tensor, "correct": torch.Tensor,
           "seconds": float}


INT8_FIELDS = {"test_acc_int8": float, "test_acc_fp32": float, "flash_bytes": int,
               "calibration_images": int, "test_images": int}


def int8_record(text: str, path: FolderFile) -> dict[str, Any]:
    """int8.json: the int8 model's test accuracy beside the fp32 one, its flash bytes."""
    return _figures(text, path, INT8_FIELDS, "--int8")


def _figures(text: str, path: FolderFile, fields: dict[str, type], flag: str) -> dict[str, Any]:
    """An export's record: each of `fields` present, of its type, finite, not negative, and an
    accuracy no more than 100."""
    value = json_object(text, path, {})
    for key, kind in fields.items():
        if not _fits(value.get(key), kind) or not math.isfinite(value[key]) or value[key] < 0 \
                or (key.startswith("test_acc") and value[key] > 100):
            raise RunFolderError(f"{path}: {key} is missing or out of range: the file is "
                                 f"damaged; export it again with `cnnlab export RUN_DIR {flag}`")
    return value


TFLITE_FIELDS = {"test_acc_tflm": float, "arena_bytes": int, "arena_total_bytes": int,
                 "ram_estimate_bytes": int, "tflite_bytes": int, "calibration_images": int,
                 "test_images": int}


def tflite_record(text: str, path: FolderFile) -> dict[str, Any]:
    """tflite.json: TFLite Micro's test accuracy, its arena and cnnlab's estimate of it."""
    return _figures(text, path, TFLITE_FIELDS, "--tflite")


def _positive(value: Any) -> bool:
    return _fits(value, float) and math.isfinite(value) and value > 0


def shipped_metadata(meta: dict[str, str], path: FolderFile
                     ) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...],
                                tuple[int, int, int]]:
    """best.safetensors' metadata: (classes, mean, std, input_shape), each of its type."""
    with reading(path, "has damaged metadata"):
        fields = {key: _json(meta[key], path) for key in ("classes", "mean", "std",
                                                          "input_shape")}
    classes, mean, std, shape = (fields[k] for k in ("classes", "mean", "std", "input_shape"))
    numbers = [*mean, *std] if isinstance(mean, list) and isinstance(std, list) else None
    if not (isinstance(classes, list) and classes and len(classes) <= MAX_CLASSES
            and all(isinstance(c, str) and c and len(c) <= MAX_NAME for c in classes)
            and isinstance(shape, list) and len(shape) == 3
            and all(_fits(v, int) for v in shape) and 1 <= shape[0] <= 4
            and all(1 <= v <= MAX_SIDE for v in shape[1:])
            and numbers is not None and all(_fits(v, float) and math.isfinite(v)
                                            for v in numbers)
            and len(mean) == len(std) == shape[0] and min(std) > 0):
        raise RunFolderError(f"{path} has damaged metadata: classes (names), mean and std (one "
                             "finite number per channel, std above 0) and input_shape (channels "
                             f"1-4, sides 1-{MAX_SIDE}) do not fit together")
    plain_strings(classes, path, "a class name")
    return tuple(classes), tuple(map(float, mean)), tuple(map(float, std)), tuple(shape)


MAX_CLASSES = 100_000  # ImageNet-21k has 21,841
MAX_NAME = 200  # characters in a class name
MAX_SIDE = 4096  # pixels per side of an input image: an export traces one batch of this size


def checkpoint(state: Any, path: FolderFile, keys: dict[str, type]) -> dict[str, Any]:
    if not isinstance(state, dict):
        raise RunFolderError(f"{path} is not a cnnlab checkpoint (it holds a "
                             f"{type(state).__name__})")
    missing = [key for key in keys if key not in state]
    if missing:
        kind = "training state" if keys is TRAINING_STATE else "best-epoch checkpoint"
        bare = keys is TRAINING_STATE and "optimizer" in missing and "model" in state
        hint = (" (it holds bare weights, like best.pt: a resume needs the last.pt that "
                "training wrote)") if bare else ""
        raise RunFolderError(f"{path} is not a {kind}: it lacks {', '.join(missing)}{hint}")
    for key, kind in keys.items():
        value = state[key]
        if not _fits(value, kind):
            raise RunFolderError(f"{path}: {key} has the wrong type ({type(value).__name__})")
    if keys is TRAINING_STATE:
        for epoch, row in enumerate(state["history"], start=1):
            _checked_row(row, epoch, f"{path}, history row {epoch},")
    return state


def partway(state: dict[str, Any], path: FolderFile) -> dict[str, Any]:
    """The training state of partial.pt (checked by `checkpoint`) whose `partway` says where
    in the epoch it stopped: the next batch, the images seen, the epoch's sums so far and the
    order of its images (None for a split not shuffled)."""
    where = state.get("partway")
    if not isinstance(where, dict):
        raise RunFolderError(f"{path} is not a partial checkpoint: it lacks partway")
    for key, kind in PARTWAY.items():
        if not _fits(where.get(key), kind):
            raise RunFolderError(f"{path}: partway's {key} is missing or has the wrong type")
    order = where.get("order")
    if where["step"] < 1 or not (order is None or isinstance(order, torch.Tensor)):
        raise RunFolderError(f"{path}: partway's step or order is damaged")
    return state


def load_weights(model: nn.Module, weights: Any, path: Path) -> nn.Module:
    """Load `weights` into `model` once `check_weights` passed."""
    check_weights(model, weights, path)
    with reading(path):
        model.load_state_dict(weights)
    return model


def check_weights(model: nn.Module, weights: Any, path: Path) -> None:
    """Refuse `weights` that are not `model`'s tensors, by name and shape, with the first
    difference."""
    if not isinstance(weights, dict) or not all(isinstance(t, torch.Tensor)
                                                for t in weights.values()):
        raise RunFolderError(f"{path} holds no weights (a table of tensors)")
    expected = model.state_dict()
    missing = [name for name in expected if name not in weights]
    extra = [name for name in weights if name not in expected]
    if missing or extra:
        first = (f"the model's {missing[0]} is not in it" if missing
                 else f"it holds {extra[0]}, which the model lacks")
        raise RunFolderError(f"{path} holds weights for another model: {first} "
                             f"({len(missing)} missing, {len(extra)} unexpected)")
    for name, tensor in expected.items():
        if tuple(weights[name].shape) != tuple(tensor.shape):
            raise RunFolderError(f"{path} holds weights for another model: {name} is "
                                 f"{list(weights[name].shape)}, the model's is "
                                 f"{list(tensor.shape)}")
        if weights[name].dtype != tensor.dtype:
            raise RunFolderError(f"{path} holds weights for another model: {name} is "
                                 f"{weights[name].dtype}, the model's is {tensor.dtype}")
