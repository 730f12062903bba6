"""What each file of a run folder must hold, checked as it is read back. A folder travels
between people and disks: any file may be truncated, emptied, edited or swapped for another
run's, so every check ends in one RunFolderError that names the file and what is wrong."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_type_hints

import torch
from torch import nn

from cnnlab.errors import CnnlabError, RunFolderError
from cnnlab.train.history import History, HistoryRow
from cnnlab.train.lr_find import LRFindResult

_NUMBER = (int, float)


@contextlib.contextmanager
def reading(path: Path, what: str = "") -> Iterator[None]:
    """Turn any error met while using what `path` held into one line that names the file.
    Errors cnnlab raised on purpose pass through as they are."""
    try:
        yield
    except CnnlabError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RuntimeError,
            UnicodeDecodeError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RunFolderError(f"{path} {what or 'is damaged'}: {detail[:300]}") from None


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RunFolderError(f"{path} is not UTF-8 text: the file is damaged") from None


def history_rows(text: str, path: Path) -> History:
    """history.jsonl: one JSON object per epoch, epochs 1, 2, 3, ... in order."""
    rows: History = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
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
    return row


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
        value = json.loads(text)
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
    if any(not _fits(v, float) or v <= 0 for v in numbers.values()) \
            or any(c is None or not all(_fits(x, float) for x in c) for c in curves) \
            or len(curves[0]) != len(curves[1]) or len(curves[0]) < 2 \
            or not isinstance(value.get("diverged"), bool):
        raise RunFolderError(f"{path} is not an LR range test record: it needs lrs and losses "
                             "(numbers, as many of each), minimum, valley and steepest (above "
                             "0) and diverged (true or false)")
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


def checkpoint(state: Any, path: Path, keys: dict[str, type]) -> dict[str, Any]:
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


def partway(state: dict[str, Any], path: Path) -> dict[str, Any]:
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
