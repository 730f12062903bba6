"""Write files all-or-nothing: a crash mid-write never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Yield a handle on a temporary file beside `path`; it replaces `path` only if the block
    finishes without an exception."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with atomic_write_at(folder, path.name, path, mode) as handle:
            yield handle
    finally:
        os.close(folder)


@contextlib.contextmanager
def atomic_write_at(folder: int, name: str, shown: Path, mode: str = "wb") -> Iterator[IO]:
    """`atomic_write` of the file `name` in the open folder `folder` (`shown` names it in
    errors). The temporary file `.<name>.<8 hex digits>.tmp` is made new (O_EXCL, no link
    followed) and renamed over `name`: a rename replaces a link itself, never its target."""
    tmp = f".{name}.{secrets.token_hex(4)}.tmp"
    made = False
    try:
        fd = _open_temp(folder, tmp)
        made = True
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
        made = False
        with contextlib.suppress(OSError):  # the rename survives a power cut, where it can
            os.fsync(folder)
    except OSError as exc:
        if exc.filename not in (None, tmp, name):  # the caller's block, about its own file
            raise
        # The user never sees the temporary file: name the file being written.
        raise OSError(exc.errno, exc.strerror, str(shown)) from None
    finally:
        if made:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=folder)


def _open_temp(folder: int, name: str) -> int:
    return os.open(name, _TEMP_FLAGS, 0o644, dir_fd=folder)
