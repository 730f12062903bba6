"""MNIST in torchvision's layout: `<root>/MNIST/raw/*-ubyte` or `*-ubyte.gz`.

Files are verified by the md5 of their decompressed bytes (those equal the official raw files,
whatever gzip produced the .gz); missing files are downloaded from the canonical mirrors.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from cnnlab.data import download as downloader
from cnnlab.data.missing_files import ensure_files
from cnnlab.data.verify import verify_content
from cnnlab.errors import DataError

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://yann.lecun.com/exdb/mnist/",
)
# md5 of the decompressed files, as in the official distribution.
FILES = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
GZIP_MAGIC = b"\x1f\x8b"
MEAN = (0.1307,)
STD = (0.3081,)
CLASSES = tuple(str(digit) for digit in range(10))


def mnist_folder(root: Path) -> Path:
    return Path(root) / "MNIST" / "raw"


def load_mnist(root: Path) -> tuple[torch.Tensor, ...]:
    """Train images, train labels, test images, test labels: uint8 [N, 1, 28, 28] images and
    int64 [N] labels."""
    folder = mnist_folder(root)
    ensure_files(folder, tuple(FILES), present=lambda name: _existing(folder, name) is not None,
                 fetch=lambda missing: _download(folder, missing), dataset="MNIST",
                 layout="MNIST/raw/ (the files raw or .gz)")
    return (*_load_split(folder, "train"), *_load_split(folder, "test"))


def _load_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    image_name, label_name = SPLITS[split]
    images = _read_idx(folder, image_name, ndim=3)
    labels = _read_idx(folder, label_name, ndim=1)
    if len(images) != len(labels):
        raise DataError(
            f"{folder}: {image_name} holds {len(images)} images but {label_name} "
            f"{len(labels)} labels; replace both with the original files"
        )
    return images.unsqueeze(1), labels.long()


def _existing(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _download(folder: Path, names: list[str]) -> str:
    """Each file from the first mirror that serves it; '' on success, else why the last
    attempt failed."""
    for name in names:
        reason = ""
        for mirror in MIRRORS:
            try:
                downloader.download(
                    f"{mirror}{name}.gz", folder / f"{name}.gz",
                    verify=lambda tmp, name=name: _verified_bytes(tmp, name),
                )
                reason = ""
                break
            except (OSError, DataError, ValueError) as exc:
                reason = f"{mirror}: {exc}"
        if reason:
            return reason
    return ""


def _verified_bytes(path: Path, name: str) -> bytes:
    try:
        data = path.read_bytes()
        if data[:2] == GZIP_MAGIC or path.suffix == ".gz":  # by content: downloads end in .part
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path} is truncated or not a valid gzip file ({exc}): delete it so cnnlab "
            "downloads it again, or replace it with the original file"
        ) from None
    verify_content(path, data, FILES[name], f"MNIST file {name}")
    return data


def _read_idx(folder: Path, name: str, ndim: int) -> torch.Tensor:
    path = _existing(folder, name)
    data = _verified_bytes(path, name)
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes((0, 0, 0x08, ndim)):
        raise DataError(f"{path} is not an IDX file of {ndim}-d uint8 data; replace it")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) != header + int(np.prod(dims)):
        raise DataError(f"{path} is truncated (size does not match its header); replace it")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    return torch.from_numpy(array.copy())
