"""A user's images: `root/train/<class>/*` and `root/test/<class>/*` (or `root/val/`), PNG or
JPEG, one folder per class (the folder names are the class names, in sorted order).

They are decoded once with Pillow into the uint8 tensors the fast loader uses, and the result
is cached as a tensor file next to the data (or in cnnlab's cache when the data folder is
read-only), keyed by the file list, sizes, modification times and the options: the second run
starts at once, and any change to the images is read afresh.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm  # a widget in Jupyter, text in a terminal

from cnnlab.atomic_file import atomic_write
from cnnlab.data.root import cache_dir
from cnnlab.errors import DataError

EXTENSIONS = (".png", ".jpg", ".jpeg")
TEST_NAMES = ("test", "val")


def load_image_folders(root: str | Path, image_size: int | None = None,
                       channels: int | None = None, progress: bool = True
                       ) -> tuple[tuple[torch.Tensor, ...], tuple[str, ...]]:
    """((train images, train labels, test images, test labels), class names): uint8
    [N, C, H, W] images and int64 [N] labels. `image_size` resizes each image to a square;
    `channels` (1 or 3) converts them to grey or RGB, else the images' own mode decides."""
    root = Path(root).expanduser()
    splits = _split_folders(root)
    files = {split: _files_by_class(folder) for split, folder in splits.items()}
    classes = tuple(sorted(files["train"]))
    if set(files["test"]) != set(classes):
        only_train = sorted(set(classes) - set(files["test"]))
        only_test = sorted(set(files["test"]) - set(classes))
        raise DataError(f"{root}: train and {splits['test'].name} have different classes "
                        f"(only in train: {only_train or 'none'}; only in "
                        f"{splits['test'].name}: {only_test or 'none'}); make them match")
    listing = [(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
               for split in ("train", "test") for name in classes for p in files[split][name]]
    key = hashlib.md5(repr((listing, image_size, channels)).encode()).hexdigest()[:16]
    cached = _read_cache(root, key)
    if cached is not None:
        return cached, classes
    with tqdm(total=len(listing), desc=f"reading {root.name}", unit="img", leave=False,
              disable=not progress) as bar:
        decoded = [_decode(files[split], classes, image_size, channels, bar)
                   for split in ("train", "test")]
    sizes = {tuple(images.shape[1:]) for images, _ in decoded}
    if len(sizes) > 1:
        raise DataError(f"{root}: train images are {sizes} apart from the test images; set "
                        "data.image_size (and data.channels) to read them at one size")
    splits_tensors = (*decoded[0], *decoded[1])
    _write_cache(root, key, splits_tensors)
    return splits_tensors, classes


def _split_folders(root: Path) -> dict[str, Path]:
    if not (root / "train").is_dir():
        raise DataError(f"{root} has no train/ folder: a folder dataset holds train/<class>/ "
                        "and test/<class>/ (or val/<class>/) with PNG or JPEG images")
    test = next((root / name for name in TEST_NAMES if (root / name).is_dir()), None)
    if test is None:
        raise DataError(f"{root} has train/ but no test/ or val/ folder to measure accuracy on")
    return {"train": root / "train", "test": test}


def _files_by_class(folder: Path) -> dict[str, list[Path]]:
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise DataError(f"{folder} holds no class folders: put each class's images in "
                        f"{folder}/<class name>/")
    files = {}
    for class_folder in classes:
        images = sorted(p for p in class_folder.iterdir()
                        if p.is_file() and p.suffix.lower() in EXTENSIONS)
        if not images:
            raise DataError(f"{class_folder} holds no PNG or JPEG images: add some or remove "
                            "the folder")
        files[class_folder.name] = images
    return files


def _decode(files: dict[str, list[Path]], classes: tuple[str, ...], image_size: int | None,
            channels: int | None, bar: tqdm) -> tuple[torch.Tensor, torch.Tensor]:
    from PIL import Image, UnidentifiedImageError  # Pillow comes with matplotlib

    arrays, labels = [], []
    for label, name in enumerate(classes):
        for path in files[name]:
            try:
                with Image.open(path) as image:
                    mode = {1: "L", 3: "RGB"}.get(channels) or (
                        "L" if image.mode in ("1", "L", "I;16", "I", "LA") else "RGB")
                    image = image.convert(mode)
                    if image_size is not None:
                        image = image.resize((image_size, image_size), Image.BILINEAR)
                    array = np.asarray(image, dtype=np.uint8)
            except (UnidentifiedImageError, OSError, ValueError) as exc:
                raise DataError(f"{path} cannot be read as an image ({exc}); fix or remove "
                                "it") from None
            arrays.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
            labels.append(label)
            bar.update()
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"{files[classes[0]][0].parent.parent}: images of {len(shapes)} sizes or "
                        f"modes ({', '.join(map(str, sorted(shapes)[:3]))}, ...); set "
                        "data.image_size (and data.channels) to read them at one size")
    return torch.from_numpy(np.stack(arrays)), torch.tensor(labels, dtype=torch.int64)


def _cache_paths(root: Path, key: str) -> list[Path]:
    name = f".cnnlab-images-{key}.pt"
    return [root / name, cache_dir() / "image-folders" / name]


def _read_cache(root: Path, key: str) -> tuple[torch.Tensor, ...] | None:
    for path in _cache_paths(root, key):
        if path.is_file():
            with contextlib.suppress(Exception):  # a damaged cache is only read afresh
                tensors = torch.load(path, map_location="cpu", weights_only=True)
                if isinstance(tensors, tuple) and len(tensors) == 4:
                    return tensors
    return None


def _write_cache(root: Path, key: str, tensors: tuple[torch.Tensor, ...]) -> None:
    for path in _cache_paths(root, key):
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(path) as handle:
                torch.save(tensors, handle)
            return
