"""SVHN (cropped digits): `<root>/svhn/{train,test}_32x32.mat`, or the two files straight in
the data root, where torchvision's SVHN(root) keeps them.

The files are MATLAB arrays (X: uint8 [32, 32, 3, N], y: [N, 1] with 10 standing for the
digit 0), read with SciPy, an optional extra (`pip install cnnlab[svhn]`). Verified by the
md5 of the official files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cnnlab.data import download as downloader
from cnnlab.data.missing_files import ensure_files
from cnnlab.data.verify import verify_file
from cnnlab.errors import DataError

FOLDER = "svhn"
URL = "http://ufldl.stanford.edu/housenumbers/"
FILES = {"train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
         "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3"}


def load_svhn(root: Path, progress: bool = True) -> tuple[torch.Tensor, ...]:
    """Train images, train labels, test images, test labels: uint8 [N, 3, 32, 32] images and
    int64 [N] labels (0-9)."""
    root = Path(root)
    folder = root / FOLDER
    if all((root / name).is_file() for name in FILES) and not folder.is_dir():
        folder = root  # torchvision's own placement
    ensure_files(folder, tuple(FILES), present=lambda file: (folder / file).is_file(),
                 fetch=lambda missing: _download(folder, missing, progress), dataset="SVHN",
                 layout=f"{FOLDER}/")
    return (*_read(folder / "train_32x32.mat"), *_read(folder / "test_32x32.mat"))


def _download(folder: Path, names: list[str], progress: bool) -> str:
    for name in names:
        try:
            downloader.download(f"{URL}{name}", folder / name,
                                verify=lambda tmp, name=name: verify_file(tmp, FILES[name],
                                                                          f"SVHN {name}"),
                                progress=progress)
        except (OSError, DataError) as exc:
            return f"{URL}{name}: {exc}"
    return ""


def _read(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError("reading SVHN needs SciPy: pip install 'cnnlab[svhn]'") from None
    verify_file(path, FILES[path.name], f"SVHN {path.name}")
    try:
        arrays = loadmat(path)
    except (ValueError, OSError, TypeError) as exc:
        raise DataError(f"{path} is not a readable MATLAB file ({exc}); replace it") from None
    images, labels = arrays.get("X"), arrays.get("y")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
            or images.shape[:3] != (32, 32, 3) or labels is None \
            or labels.size != images.shape[3]:
        raise DataError(f"{path} does not hold SVHN's X [32, 32, 3, N] and y [N]; replace it")
    images = torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1)))
    labels = torch.from_numpy(labels.reshape(-1).astype(np.int64)) % 10  # 10 is the digit 0
    return images, labels
