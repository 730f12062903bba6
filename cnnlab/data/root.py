"""Where datasets and caches live on disk."""

from __future__ import annotations

import os
from pathlib import Path

from cnnlab.errors import DataError


def data_root(data_dir: str | Path | None = None) -> Path:
    """The data root: `--data-dir` if given, else `$CNNLAB_DATA`, else `~/.cache/cnnlab`."""
    if data_dir:
        root, named = Path(data_dir).expanduser(), "--data-dir"
    elif os.environ.get("CNNLAB_DATA"):
        root, named = Path(os.environ["CNNLAB_DATA"]).expanduser(), "CNNLAB_DATA"
    else:
        return Path.home() / ".cache" / "cnnlab"
    if root.exists() and not root.is_dir():
        raise DataError(f"{named} {root} is a file: give the folder that holds (or will hold) "
                        "the datasets")
    return root


def cache_dir() -> Path:
    """Where cnnlab keeps small bookkeeping files (verified checksums): `$CNNLAB_CACHE` or
    `~/.cache/cnnlab`. Kept apart from the data root, which may be read-only."""
    return Path(os.environ.get("CNNLAB_CACHE") or Path.home() / ".cache" / "cnnlab")


OFFLINE_REASON = "downloads are off: CNNLAB_OFFLINE is set"


def offline() -> bool:
    """True when `$CNNLAB_OFFLINE` is set: never try to download (air-gapped machines, tests)."""
    return os.environ.get("CNNLAB_OFFLINE", "") not in ("", "0")
