"""A user's arrays: one `.npz` holding `x_train`, `y_train`, `x_test`, `y_test` (uint8 images,
N x H x W or N x H x W x C with C = 1 or 3; integer labels from 0) and, optionally, `classes`
(one name per label)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from cnnlab.errors import DataError

KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(path: str | Path) -> tuple[tuple[torch.Tensor, ...], tuple[str, ...]]:
    """((train images, train labels, test images, test labels), class names): uint8
    [N, C, H, W] images and int64 [N] labels."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(f"data.path {path} is not a file: give the .npz holding "
                        f"{', '.join(KEYS)}")
    if not zipfile.is_zipfile(path):  # np.load would take it for a pickle and advise one
        raise DataError(f"{path} is not an .npz archive: write one with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as archive:  # no pickles: no code runs
            missing = [key for key in KEYS if key not in archive.files]
            if missing:
                raise DataError(f"{path} has no {', '.join(missing)}: an .npz for cnnlab holds "
                                f"{', '.join(KEYS)} (and optionally classes)")
            arrays = {key: archive[key] for key in (*KEYS, "classes") if key in archive.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):  # an object array: loading it would run a pickle
            raise DataError(f"{path} holds Python objects, which cnnlab never unpickles: save "
                            "uint8 images and integer labels") from None
        raise DataError(f"{path} is not a readable .npz file ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not a readable .npz file ({exc})") from None
    images = {split: _images(path, f"x_{split}", arrays[f"x_{split}"])
              for split in ("train", "test")}
    if images["train"].shape[1:] != images["test"].shape[1:]:
        raise DataError(f"{path}: x_train images are {tuple(images['train'].shape[1:])} "
                        f"(C, H, W) but x_test images {tuple(images['test'].shape[1:])}; make "
                        "them match")
    labels = {split: _labels(path, split, arrays[f"y_{split}"], len(images[split]))
              for split in ("train", "test")}
    classes = _classes(path, arrays.get("classes"), labels)
    return (images["train"], labels["train"], images["test"], labels["test"]), classes


def _images(path: Path, key: str, array: np.ndarray) -> torch.Tensor:
    if array.dtype != np.uint8:
        raise DataError(f"{path}: {key} is {array.dtype}; cnnlab reads uint8 images (0-255)")
    if array.ndim == 3:
        array = array[:, None]
    elif array.ndim == 4 and array.shape[3] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{path}: {key} has shape {array.shape}; give N x H x W, or "
                        "N x H x W x C with C = 1 or 3")
    return torch.from_numpy(np.ascontiguousarray(array))


def _labels(path: Path, split: str, array: np.ndarray, n: int) -> torch.Tensor:
    key = f"y_{split}"
    if not np.issubdtype(array.dtype, np.integer) or array.ndim != 1:
        raise DataError(f"{path}: {key} must be a 1-d array of integer labels, got "
                        f"{array.dtype} {array.shape}")
    if len(array) != n:
        raise DataError(f"{path}: {key} holds {len(array)} labels for {n} images in x_{split}")
    if len(array) and array.min() < 0:
        raise DataError(f"{path}: {key} has a negative label ({array.min()}); labels count from 0")
    return torch.from_numpy(array.astype(np.int64))


def _classes(path: Path, names: np.ndarray | None, labels: dict[str, torch.Tensor]
             ) -> tuple[str, ...]:
    highest = max(int(t.max()) if len(t) else -1 for t in labels.values())
    if names is None:
        return tuple(str(i) for i in range(highest + 1))
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DataError(f"{path}: classes must be a 1-d array of names")
    if highest >= len(names):
        raise DataError(f"{path}: a label is {highest} but classes names only {len(names)} "
                        f"classes (labels 0 to {len(names) - 1})")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())
