"""Whether the code a run folder names may run, decided the way Jupyter decides for notebooks.

A run folder is data: it travels by zip, mail and upload. Its config.toml may name model code
(`file.py:fn`, whose source the folder keeps, or `module:fn`), and rebuilding the model runs
that code. Folders this user's cnnlab wrote carry a signature, an HMAC-SHA256 over config.toml
and the kept source made with a key that never leaves this user's config folder, so the user's
own runs just work wherever they were moved. Any other folder that names code is refused until
the user says they trust it (`--trust-code`, `trust_code=True`), which signs it."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cnnlab.atomic_file import atomic_write

SIGNATURE_FILE = "signature"
CONFIG_DIR_ENV = "CNNLAB_CONFIG_DIR"


def config_dir() -> Path:
    """$CNNLAB_CONFIG_DIR, else $XDG_CONFIG_HOME/cnnlab, else ~/.config/cnnlab."""
    if os.environ.get(CONFIG_DIR_ENV):
        return Path(os.environ[CONFIG_DIR_ENV])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "cnnlab"


def signing_key() -> bytes:
    """This user's key, made on first use: readable by this user alone."""
    path = config_dir() / "signing.key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: two processes making the key at once keep the first one's
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
        except FileExistsError:
            pass
    return path.read_text(encoding="ascii").strip().encode("ascii")


def signature(parts: list[bytes]) -> str:
    """HMAC-SHA256 of the parts, each prefixed by its length so no two lists sign alike."""
    mac = hmac.new(signing_key(), digestmod=hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest()


def is_signed(folder: Path, parts: list[bytes]) -> bool:
    path = folder / SIGNATURE_FILE
    try:
        kept = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return False
    return hmac.compare_digest(kept, signature(parts))


def sign(folder: Path, parts: list[bytes]) -> None:
    with atomic_write(folder / SIGNATURE_FILE, "w") as handle:
        handle.write(signature(parts) + "\n")
