"""What happens when a dataset's files are not on disk, the same for every dataset: download
them when allowed, and otherwise (or when that fails) one error naming the files and the
root to fix, with no empty folder left behind."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from cnnlab.data.root import OFFLINE_REASON, offline
from cnnlab.errors import DataError


def ensure_files(
    folder: Path,
    names: tuple[str, ...],
    *,
    present: Callable[[str], bool],
    fetch: Callable[[list[str]], str],
    dataset: str,
    layout: str,
) -> None:
    """Make sure every file in `names` is `present` in `folder`. `fetch(missing)` downloads
    them and returns '' on success or why it failed. `layout` is the folder, relative to the
    data root, that the error tells the user to provide."""
    missing = [name for name in names if not present(name)]
    if not missing:
        return
    new_folders = [p for p in (folder, *folder.parents) if not p.exists()]
    reason = OFFLINE_REASON if offline() else fetch(missing)
    still = [name for name in names if not present(name)]
    if not reason and not still:
        return
    for created in new_folders:  # leave the disk as we found it
        with contextlib.suppress(OSError):
            created.rmdir()
    raise DataError(
        f"{dataset} files missing in {folder}: {', '.join(still)}, and the download failed "
        f"({reason or 'the files did not arrive'}); put the files there, or point --data-dir "
        f"or CNNLAB_DATA at a folder holding {layout}"
    )
