"""What the adversarial cases share: a stranger's folder is attacked beside an `outside/`
folder that stands for the rest of the user's disk, with the verbs run as the user whose
signing key lives in a folder of the case's."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

CLASSES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def small_arrays(root: Path) -> Path:
    """640 learnable 28x28 images as a user's arrays (one bright row per class)."""
    rng = np.random.default_rng(0)
    labels = np.arange(640) % 10
    images = (rng.random((640, 28, 28)) * 60).astype(np.uint8)
    images[np.arange(640), labels * 2 + 4, 4:24] = 255
    np.savez(root / "data.npz", x_train=images[:512], y_train=labels[:512],
             x_test=images[512:], y_test=labels[512:], classes=np.array(CLASSES))
    return root / "data.npz"


def outside_folder(root: Path) -> Path:
    """The rest of the disk: a canary file and a file named like a leftover of cnnlab's."""
    outside = root / "outside"
    outside.mkdir()
    (outside / "canary.txt").write_text("the user's own file\n")
    (outside / ".canary.txt.a1b2c3d4.tmp").write_text("looks like a leftover\n")
    return outside


def snapshot(root: Path, besides: set[Path]) -> dict[str, str]:
    """Every entry under `root` but those in or under `besides` (what the verb may write):
    path -> what it holds."""
    seen = {}
    for path in sorted(root.rglob("*")):
        if besides & {path, *path.parents}:
            continue
        if path.is_symlink():
            seen[str(path)] = f"link {os.readlink(path)}"
        elif path.is_file():
            seen[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            seen[str(path)] = "folder"
    return seen


@contextlib.contextmanager
def as_user(config: Path) -> Iterator[None]:
    """This process as the user whose signing key lives in `config`."""
    before = os.environ.get("CNNLAB_CONFIG_DIR")
    os.environ["CNNLAB_CONFIG_DIR"] = str(config)
    try:
        yield
    finally:
        if before is None:
            del os.environ["CNNLAB_CONFIG_DIR"]
        else:
            os.environ["CNNLAB_CONFIG_DIR"] = before
