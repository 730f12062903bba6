"""Whether the code a run folder names may run, decided the way Jupyter decides for notebooks.

A run folder is data: it travels by zip, mail and upload. Its config.toml may name model code
(`file.py:fn`, whose source the folder keeps, or `module:fn`), and rebuilding the model runs
that code. Folders this user's cnnlab wrote carry a signature, an HMAC-SHA256 over config.toml,
the kept source and run.json (how the run was started) made with a key that never leaves this
user's config folder, so the user's own runs just work wherever they were moved. Any other
folder that names code is refused until the user says they trust it (`--trust-code`,
`trust_code=True`), which signs it."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cnnlab.errors import ConfigError

SIGNATURE_FILE = "signature"
CONFIG_DIR_ENV = "CNNLAB_CONFIG_DIR"


def config_dir() -> Path:
    """$CNNLAB_CONFIG_DIR, else $XDG_CONFIG_HOME/cnnlab, else ~/.config/cnnlab."""
    if os.environ.get(CONFIG_DIR_ENV):
        return Path(os.environ[CONFIG_DIR_ENV])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "cnnlab"


KEY_HEX_DIGITS = 64  # 32 random bytes


def signing_key() -> bytes:
    """This user's key, made on first use, readable by this user alone. It is made whole or not
    at all (written to a temporary file, synced, then linked into place: of processes making it
    at once, the first link wins and every process reads that key), and a key file of another
    length is refused, never used: an empty key would sign for anyone."""
    path = config_dir() / "signing.key"
    if not path.exists():
        _make_key(path)
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the signing key {path} ({exc.strerror}): set "
                          f"{CONFIG_DIR_ENV} to a folder of yours") from None
    if len(key) != KEY_HEX_DIGITS or any(c not in b"0123456789abcdef" for c in key):
        raise ConfigError(f"the signing key {path} is damaged (not {KEY_HEX_DIGITS} hex "
                          "digits): delete it and cnnlab makes a new one; your runs that name "
                          "model code then need --trust-code once")
    return key


def _make_key(path: Path) -> None:
    if path.parent.exists() and not path.parent.is_dir():
        raise ConfigError(f"{path.parent}, where cnnlab keeps its signing key, is not a folder: "
                          f"move it away, or set {CONFIG_DIR_ENV} to a folder of yours")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".signing.key.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(KEY_HEX_DIGITS // 2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process's key came first
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def signature(parts: list[bytes]) -> str:
    """HMAC-SHA256 of the parts, each prefixed by its length so no two lists sign alike."""
    mac = hmac.new(signing_key(), digestmod=hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest()


def signed_by_this_user(kept: bytes, parts: list[bytes]) -> bool:
    """Whether `kept` (a folder's signature file) signs `parts` with this user's key."""
    try:
        text = kept.decode("ascii").strip()
    except UnicodeDecodeError:
        return False
    return hmac.compare_digest(text, signature(parts))
