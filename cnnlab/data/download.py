"""Download a file with a progress bar, verify it, then move it into place atomically.

The bytes go to a temporary file beside the destination; only a verified download is renamed
to the final name, so an interrupted or bad download never leaves a file that looks real.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from tqdm.auto import tqdm  # a widget in Jupyter, text in a terminal

CHUNK = 1 << 16


def open_url(url: str, timeout: float = 30.0) -> BinaryIO:
    """Open `url` for reading. Tests replace this function; nothing else touches the network."""
    request = urllib.request.Request(url, headers={"User-Agent": "cnnlab"})
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (fixed https mirrors)


def download(url: str, dest: Path, verify: Callable[[Path], None]) -> None:
    """Fetch `url` into `dest`. `verify(tmp_path)` must raise if the bytes are wrong."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, open_url(url) as response:
            total = int(getattr(response, "headers", {}).get("Content-Length", 0) or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}",
                      leave=False) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
        verify(tmp)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
