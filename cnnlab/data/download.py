"""Download a file with a progress bar, verify it, then move it into place atomically.

The bytes go to a temporary file beside the destination; only a verified download is renamed
to the final name, so an interrupted or bad download never leaves a file that looks real.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from tqdm.auto import tqdm  # a widget in Jupyter, text in a terminal

from cnnlab.errors import BadFileError, DataError

CHUNK = 1 << 16
READ_TIMEOUT = 30.0  # seconds a server may stay silent
DEADLINE = 1800.0  # seconds one file may take in all: a trickling server is given up on


def open_url(url: str, timeout: float | None = None) -> BinaryIO:
    """Open `url` for reading (`timeout`: READ_TIMEOUT). Nothing else touches the network."""
    request = urllib.request.Request(url, headers={"User-Agent": "cnnlab"})
    return urllib.request.urlopen(request, timeout=timeout or READ_TIMEOUT)  # noqa: S310 (fixed https mirrors)


def download(url: str, dest: Path, verify: Callable[[Path], None], progress: bool = True) -> None:
    """Fetch `url` into `dest`. `verify(tmp_path)` must raise if the bytes are wrong. Any
    failure (refused, cut off, silent, too slow, wrong bytes) raises DataError saying which,
    and leaves no file behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    started = time.monotonic()
    try:
        try:
            with os.fdopen(fd, "wb") as out, open_url(url) as response:
                total = int(getattr(response, "headers", {}).get("Content-Length", 0) or 0)
                received = 0  # counted here: a disabled bar counts nothing
                with tqdm(total=total or None, unit="B", unit_scale=True,
                          desc=f"download {dest.name}", leave=False, disable=not progress) as bar:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                        if time.monotonic() - started > DEADLINE:
                            raise DataError(f"gave up after {DEADLINE:.0f} s")
                if total and received != total:
                    raise DataError(f"cut off after {received:,} of {total:,} bytes")
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, cut
            raise DataError(f"{type(exc).__name__}: {exc}") from None
        try:
            verify(tmp)
        except BadFileError as exc:  # its message names the temporary file and local advice
            raise DataError(f"the server sent a file that {exc.problem}") from None
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
