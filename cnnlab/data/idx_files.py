"""Datasets in MNIST's IDX format and torchvision's layout, `<root>/<Folder>/raw/*-ubyte(.gz)`:
MNIST, Fashion-MNIST and KMNIST (same four files, same shapes).

A file is verified by the md5 of its decompressed bytes where that is known (those equal the
official raw files, whatever gzip produced the .gz), else by the md5 of the official .gz as
distributed. Missing files are downloaded from the dataset's mirrors.
"""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnlab.data import download as downloader
from cnnlab.data.missing_files import ensure_files
from cnnlab.data.verify import verify_content
from cnnlab.errors import BadFileError, DataError

FILE_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
              "t10k-labels-idx1-ubyte")
SPLITS = {"train": FILE_NAMES[:2], "test": FILE_NAMES[2:]}
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class IdxSource:
    title: str  # as the error messages name it
    folder: str  # <root>/<folder>/raw
    mirrors: tuple[str, ...]
    content_md5: dict[str, str] = field(default_factory=dict)  # decompressed file -> md5
    gz_md5: dict[str, str] = field(default_factory=dict)  # the official .gz file -> md5


SOURCES = {
    "mnist": IdxSource(
        "MNIST", "MNIST",
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://yann.lecun.com/exdb/mnist/"),
        content_md5={
            "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
            "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
            "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
            "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
        }),
    "fashion_mnist": IdxSource(
        "Fashion-MNIST", "FashionMNIST",
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        content_md5={
            "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
            "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
            "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
        }),
    # Only the official .gz files' checksums are published for KMNIST: keep them as downloaded.
    "kmnist": IdxSource(
        "KMNIST", "KMNIST", ("https://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
        gz_md5={
            "train-images-idx3-ubyte": "bdb82020997e1d708af4cf47b453dcf7",
            "train-labels-idx1-ubyte": "e144d726b3acfaa3e44228e80efcd344",
            "t10k-images-idx3-ubyte": "5c965bf0a639b31b8f53240b1b52f4d7",
            "t10k-labels-idx1-ubyte": "7320c461ea6c1c855c0b718fb2a4b134",
        }),
}


def load_idx_dataset(name: str, root: Path, progress: bool = True
                     ) -> tuple[torch.Tensor, ...]:
    """Train images, train labels, test images, test labels of the IDX dataset `name` (a key of
    SOURCES): uint8 [N, 1, H, W] images and int64 [N] labels."""
    source = SOURCES[name]
    folder = Path(root) / source.folder / "raw"
    ensure_files(folder, FILE_NAMES, present=lambda file: _existing(folder, file) is not None,
                 fetch=lambda missing: _download(source, folder, missing, progress),
                 dataset=source.title, layout=f"{source.folder}/raw/ (the files raw or .gz)")
    return (*_load_split(source, folder, "train"), *_load_split(source, folder, "test"))


def _load_split(source: IdxSource, folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    image_name, label_name = SPLITS[split]
    images = _read_idx(source, folder, image_name, ndim=3)
    labels = _read_idx(source, folder, label_name, ndim=1)
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


def _download(source: IdxSource, folder: Path, names: list[str], progress: bool) -> str:
    """Each file from the first mirror that serves it; '' on success, else why the last
    attempt failed."""
    for name in names:
        reason = ""
        for mirror in source.mirrors:
            try:
                downloader.download(
                    f"{mirror}{name}.gz", folder / f"{name}.gz",
                    verify=lambda tmp, name=name: _verified_bytes(source, tmp, name),
                    progress=progress)
                reason = ""
                break
            except (OSError, DataError, ValueError) as exc:
                reason = f"{mirror}: {exc}"
        if reason:
            return reason
    return ""


def _verified_bytes(source: IdxSource, path: Path, name: str) -> bytes:
    """The decompressed content of `path`, checked against the source's checksums."""
    try:
        raw = path.read_bytes()
        # By content, not name: downloads arrive as .part files.
        data = gzip.decompress(raw) if raw[:2] == GZIP_MAGIC else raw
    except (OSError, EOFError, zlib.error) as exc:
        raise BadFileError(path, f"is truncated or not a valid gzip file ({exc})") from None
    what = f"{source.title} file {name}"
    if name in source.content_md5:
        verify_content(path, data, source.content_md5[name], what)
    elif raw is data:
        raise DataError(f"{path} cannot be verified: only the official {name}.gz's checksum "
                        f"is known for {source.title}; use that file as downloaded")
    else:
        verify_content(path, raw, source.gz_md5[name], what + ".gz (as distributed)")
    return data


def _read_idx(source: IdxSource, folder: Path, name: str, ndim: int) -> torch.Tensor:
    path = _existing(folder, name)
    data = _verified_bytes(source, path, name)
    header = 4 + 4 * ndim
    if len(data) < header or data[:4] != bytes((0, 0, 0x08, ndim)):
        raise DataError(f"{path} is not an IDX file of {ndim}-d uint8 data; replace it")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) != header + int(np.prod(dims)):
        raise DataError(f"{path} is truncated (size does not match its header); replace it")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    return torch.from_numpy(array.copy())

