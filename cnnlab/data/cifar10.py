"""CIFAR-10 in torchvision's layout: `<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}`.

The batches are Python pickles, and unpickling can run code named in the file, so they are
read with an unpickler that admits only what the format needs: numpy array reconstruction
and plain containers. Content is verified (md5 of each batch's pixel and label bytes), not
the file, so re-pickled copies of the genuine data pass and altered data does not.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from cnnlab.data import download as downloader
from cnnlab.data.missing_files import ensure_files
from cnnlab.data.verify import verify_content
from cnnlab.errors import DataError

FOLDER = "cifar-10-batches-py"
ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
# md5 of (data bytes uint8 [10000, 3072], labels as uint8) per batch
BATCHES = {
    "data_batch_1": ("e089133f4b27fe2499933fb92fbbcc51", "30f55b79f7954f592721267e37ffcbcf"),
    "data_batch_2": ("1de5dd711a8f0bcacfb9a30601172ecc", "bdca50851f742064551c3fa947e975d6"),
    "data_batch_3": ("28797e8984ca472a21646d72d5b1660b", "23228d18cd9f4c032bb8cfa72996e3ef"),
    "data_batch_4": ("21ac5d7ad76f680cc37bf831afe4901e", "61be7314d261d42101f429408af67a28"),
    "data_batch_5": ("5b7262fae1c886554070552d6ce4fa79", "8ca6bc10f4bd0e81fba552f724423842"),
    "test_batch": ("f1aa22116df97725db0e47461c45a82b", "251f18ce75337ae9ca5d0dbd7ea62cf4"),
}
TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
MEAN = (0.49139968, 0.48215841, 0.44653091)
STD = (0.24703223, 0.24348513, 0.26158784)
CLASSES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

# (module, name) a batch may name -> where to take it from. Arrays pickled by Python 2 (the
# official files) need the first four; re-pickled by Python 3, protocol 2 adds _codecs.encode
# (bytes as latin-1 text) and protocol 4+ numpy's _frombuffer. None of them can run code.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): "numpy._core.multiarray",
    ("numpy._core.multiarray", "_reconstruct"): "numpy._core.multiarray",
    ("numpy", "ndarray"): "numpy",
    ("numpy", "dtype"): "numpy",
    ("_codecs", "encode"): "_codecs",
    ("numpy.core.numeric", "_frombuffer"): "numpy._core.numeric",
    ("numpy._core.numeric", "_frombuffer"): "numpy._core.numeric",
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return getattr(__import__(_ALLOWED[module, name], fromlist=[name]), name)


def safe_unpickle(path: Path) -> object:
    """Unpickle a CIFAR batch file, refusing anything but arrays and plain containers."""
    try:
        with open(path, "rb") as handle:
            return _ArraysOnly(io.BufferedReader(handle), encoding="bytes").load()
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path} is not a CIFAR-10 batch ({exc}); replace it with the "
                        "original file") from None
    except (EOFError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise DataError(f"{path} is truncated or corrupt ({type(exc).__name__}); replace it "
                        "with the original file") from None


def load_cifar10(root: Path) -> tuple[torch.Tensor, ...]:
    """Train images, train labels, test images, test labels: uint8 [N, 3, 32, 32] images and
    int64 [N] labels."""
    folder = Path(root) / FOLDER
    ensure_files(folder, tuple(BATCHES), present=lambda name: (folder / name).is_file(),
                 fetch=lambda _missing: _download(folder), dataset="CIFAR-10",
                 layout=f"{FOLDER}/")
    train = [_read_batch(folder / name) for name in TRAIN]
    test_images, test_labels = _read_batch(folder / "test_batch")
    return (torch.cat([images for images, _ in train]), torch.cat([labels for _, labels in train]),
            test_images, test_labels)


def _download(folder: Path) -> str:
    """Fetch the official archive and unpack only the batch files; '' on success."""
    archive = folder.parent / "cifar-10-python.tar.gz"
    try:
        downloader.download(ARCHIVE_URL, archive, verify=_check_archive)
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if member.isfile() and (name in BATCHES or name == "batches.meta"):
                    folder.mkdir(parents=True, exist_ok=True)
                    (folder / name).write_bytes(tar.extractfile(member).read())
        archive.unlink()
        return ""
    except (OSError, DataError, tarfile.TarError) as exc:
        return f"{ARCHIVE_URL}: {exc}"


def _check_archive(path: Path) -> None:
    try:
        with tarfile.open(path, "r:gz") as tar:
            names = {Path(m.name).name for m in tar.getmembers()}
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"the downloaded CIFAR-10 archive is damaged ({exc})") from None
    if not set(BATCHES) <= names:
        raise DataError("the downloaded archive does not hold the CIFAR-10 batches")


def _read_batch(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    batch = safe_unpickle(path)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path} is not a CIFAR-10 batch (no data/labels); replace it")
    data, labels = batch[b"data"], batch[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{path} holds data of the wrong shape or type; replace it")
    label_bytes = np.asarray(labels, dtype=np.uint8)
    data_md5, label_md5 = BATCHES[path.name]
    verify_content(path, np.ascontiguousarray(data).data, data_md5, f"CIFAR-10 {path.name} data")
    verify_content(path, label_bytes.data, label_md5, f"CIFAR-10 {path.name} labels")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(label_bytes.astype(np.int64))
