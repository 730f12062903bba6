"""CIFAR-10 and CIFAR-100 in torchvision's layout: `<root>/cifar-10-batches-py/{data_batch_1..5,
test_batch}` and `<root>/cifar-100-python/{train,test}` (fine labels).

The batches are Python pickles, and unpickling can run code named in the file, so they are
read with an unpickler that admits only what the format needs: numpy array reconstruction
and plain containers. CIFAR-10's content is verified (md5 of each batch's pixel and label
bytes), not the file, so re-pickled copies of the genuine data pass and altered data does not;
for CIFAR-100 only the official files' md5s are published, so those are checked.
"""

from __future__ import annotations

import codecs
import io
import math
import pickle
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.atomic_file import atomic_write
from cnnlab.data import download as downloader
from cnnlab.data.missing_files import ensure_files
from cnnlab.data.verify import verify_content, verify_file
from cnnlab.errors import DataError


@dataclass(frozen=True)
class CifarSource:
    title: str
    folder: str  # <root>/<folder>/
    archive_url: str
    train: tuple[str, ...]  # batch files
    test: tuple[str, ...]
    label_key: bytes
    # per batch file: md5 of (data bytes uint8 [N, 3072], labels as uint8), the content; or,
    # where only that is published, md5 of the official file
    content_md5: dict[str, tuple[str, str]] = field(default_factory=dict)
    file_md5: dict[str, str] = field(default_factory=dict)

    @property
    def files(self) -> tuple[str, ...]:
        return self.train + self.test


SOURCES = {
    "cifar10": CifarSource(
        "CIFAR-10", "cifar-10-batches-py", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), b"labels",
        content_md5={
            "data_batch_1": ("e089133f4b27fe2499933fb92fbbcc51",
                             "30f55b79f7954f592721267e37ffcbcf"),
            "data_batch_2": ("1de5dd711a8f0bcacfb9a30601172ecc",
                             "bdca50851f742064551c3fa947e975d6"),
            "data_batch_3": ("28797e8984ca472a21646d72d5b1660b",
                             "23228d18cd9f4c032bb8cfa72996e3ef"),
            "data_batch_4": ("21ac5d7ad76f680cc37bf831afe4901e",
                             "61be7314d261d42101f429408af67a28"),
            "data_batch_5": ("5b7262fae1c886554070552d6ce4fa79",
                             "8ca6bc10f4bd0e81fba552f724423842"),
            "test_batch": ("f1aa22116df97725db0e47461c45a82b",
                           "251f18ce75337ae9ca5d0dbd7ea62cf4"),
        }),
    "cifar100": CifarSource(
        "CIFAR-100", "cifar-100-python", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        ("train",), ("test",), b"fine_labels",
        file_md5={"train": "16019d7e3df5f24257cddd939b257f8d",
                  "test": "f0ef6b0ae62326f3e7ffdfab6717acfc"}),
}

# The most values one array in these files holds (CIFAR-100's train: 50,000 x 3072), and the
# widest element (a float64 label): a hostile file that asks numpy for more is refused before
# anything is allocated.
MAX_ELEMENTS = 50_000 * 3072
MAX_ITEMSIZE = 8


def _check_size(shape: Any, dtype: Any) -> None:
    try:
        elements = math.prod(int(n) for n in shape)
        itemsize = np.dtype(dtype).itemsize
    except (TypeError, ValueError) as exc:
        raise pickle.UnpicklingError(f"an array of shape {shape!r}: {exc}") from None
    if elements < 0 or elements > MAX_ELEMENTS or itemsize > MAX_ITEMSIZE:
        raise pickle.UnpicklingError(f"an array of {elements:,} values of {itemsize} bytes is "
                                     "more than a CIFAR file holds")


class _BoundedArray(np.ndarray):
    """An ndarray whose unpickled state is size-checked before numpy allocates it."""

    def __setstate__(self, state: tuple) -> None:
        if isinstance(state, tuple) and len(state) >= 3:
            _check_size(state[1], state[2])
        super().__setstate__(state)


def _reconstruct(_subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    _check_size(shape, dtype)
    return np.ndarray.__new__(_BoundedArray, shape, dtype)


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    _check_size(shape, dtype)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


# (module, name) a batch may name -> what it gets. Arrays pickled by Python 2 (the official
# files) need the first four; re-pickled by Python 3, protocol 2 adds _codecs.encode (bytes as
# latin-1 text) and protocol 4+ numpy's _frombuffer. None of them can run code, and the array
# makers check sizes first.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
}


class _ArraysOnly(pickle.Unpickler):
    """Admits the callables in _ALLOWED and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return _ALLOWED[module, name]


def safe_unpickle(path: Path, title: str = "CIFAR") -> object:
    """Unpickle a CIFAR batch file, refusing anything but arrays and plain containers."""
    try:
        with open(path, "rb") as handle:
            return _ArraysOnly(io.BufferedReader(handle), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path} is not a {title} batch ({exc}); replace it with the "
                        "original file") from None
    except (EOFError, ValueError, TypeError, IndexError, AttributeError, MemoryError) as exc:
        raise DataError(f"{path} is truncated or corrupt ({type(exc).__name__}); replace it "
                        "with the original file") from None


def load_cifar_dataset(name: str, root: Path, progress: bool = True
                       ) -> tuple[torch.Tensor, ...]:
    """Train images, train labels, test images, test labels of the CIFAR dataset `name` (a key
    of SOURCES): uint8 [N, 3, 32, 32] images and int64 [N] labels."""
    source = SOURCES[name]
    folder = Path(root) / source.folder
    ensure_files(folder, source.files, present=lambda file: (folder / file).is_file(),
                 fetch=lambda _missing: _download(source, folder, progress), dataset=source.title,
                 layout=f"{source.folder}/")
    train = [_read_batch(source, folder / file) for file in source.train]
    test = [_read_batch(source, folder / file) for file in source.test]
    return (torch.cat([images for images, _ in train]), torch.cat([labels for _, labels in train]),
            torch.cat([images for images, _ in test]), torch.cat([labels for _, labels in test]))


def _download(source: CifarSource, folder: Path, progress: bool) -> str:
    """Fetch the official archive and unpack only the batch files; '' on success."""
    archive = folder.parent / Path(source.archive_url).name
    try:
        downloader.download(source.archive_url, archive,
                            verify=lambda path: _check_archive(source, path), progress=progress)
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                file = Path(member.name).name
                if member.isfile() and file in (*source.files, "batches.meta", "meta"):
                    with atomic_write(folder / file) as handle:  # all of it or nothing
                        handle.write(tar.extractfile(member).read())
        archive.unlink()
        return ""
    except (OSError, DataError, tarfile.TarError) as exc:
        return f"{source.archive_url}: {exc}"


def _check_archive(source: CifarSource, path: Path) -> None:
    try:
        with tarfile.open(path, "r:gz") as tar:
            names = {Path(m.name).name for m in tar.getmembers()}
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"the downloaded {source.title} archive is damaged ({exc})") from None
    if not set(source.files) <= names:
        raise DataError(f"the downloaded archive does not hold the {source.title} batches")


def _read_batch(source: CifarSource, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    what = f"{source.title} {path.name}"
    if path.name in source.file_md5:
        verify_file(path, source.file_md5[path.name], what)
    batch = safe_unpickle(path, source.title)
    if not isinstance(batch, dict) or b"data" not in batch or source.label_key not in batch:
        raise DataError(f"{path} is not a {source.title} batch (no data/labels); replace it")
    data, labels = batch[b"data"], batch[source.label_key]
    data = np.asarray(data) if isinstance(data, np.ndarray) else data  # a plain ndarray again
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{path} holds data of the wrong shape or type; replace it")
    label_bytes = np.asarray(labels, dtype=np.uint8)
    if path.name in source.content_md5:
        data_md5, label_md5 = source.content_md5[path.name]
        verify_content(path, np.ascontiguousarray(data).data, data_md5, f"{what} data")
        verify_content(path, label_bytes.data, label_md5, f"{what} labels")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(label_bytes.astype(np.int64))
