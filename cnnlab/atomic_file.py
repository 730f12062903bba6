"""Write files all-or-nothing: a crash mid-write never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Yield a handle on a temporary file beside `path`; it replaces `path` only if the block
    finishes without an exception."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = ""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes files private; run files are meant to be read
        os.replace(tmp, path)
        _sync_folder(path.parent)  # the rename itself survives a power cut
    except OSError as exc:
        if exc.filename not in (None, tmp):  # raised by the caller's block, about its own file
            raise
        # The user never sees the temporary file: name the file being written.
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            if tmp:
                os.unlink(tmp)


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be synced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
