"""Content checksums, verified once per file version.

The verdict is cached by (absolute path, size, mtime, ctime, inode, expected md5), so a file
that changes on disk is verified again, even with its mtime put back, and an unchanged one
costs nothing after the first load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from cnnlab.atomic_file import atomic_write
from cnnlab.data.root import cache_dir
from cnnlab.errors import BadFileError


def md5_hex(data: bytes | memoryview) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def verify_content(path: Path, content: bytes | memoryview, expected_md5: str, what: str) -> None:
    """Raise BadFileError naming `path` unless md5(content) equals `expected_md5`."""
    key = _cache_key(path, expected_md5)
    verified = _read_cache()
    if key in verified:
        return
    if md5_hex(content) != expected_md5:
        raise BadFileError(path, f"is corrupt or not the genuine {what} (checksum mismatch)")
    verified.add(key)
    _write_cache(verified)


def verify_file(path: Path, expected_md5: str, what: str) -> None:
    """`verify_content` on the file's own bytes, read only when no cached verdict holds."""
    if _cache_key(path, expected_md5) not in _read_cache():
        verify_content(path, path.read_bytes(), expected_md5, what)


def _cache_file() -> Path:
    return cache_dir() / "verified.json"


def _cache_key(path: Path, expected_md5: str) -> str:
    # ctime moves on any write, and on any reset of the mtime too (utime sets it), and the
    # inode on any replacement: an edited file never matches its old verdict.
    stat = path.stat()
    return (f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|"
            f"{stat.st_ino}|{expected_md5}")


def _read_cache() -> set[str]:
    try:
        return set(json.loads(_cache_file().read_text()))
    except (OSError, ValueError, TypeError):
        return set()


def _write_cache(keys: set[str]) -> None:
    # Best effort: an unwritable cache only means verifying again next time.
    with contextlib.suppress(OSError), atomic_write(_cache_file(), "w") as handle:
        json.dump(sorted(keys), handle)
