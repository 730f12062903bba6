"""The files of a folder that may come from a stranger, opened the way a careful archive
extractor opens its output: every component below the folder relative to its parent's handle
and with O_NOFOLLOW, so no link planted in the folder is followed; only regular files are read,
replaced, appended to or removed (a FIFO, a device or a folder where a file belongs is refused
before anything blocks on it); every read has a size limit. This is the one place a run folder
is opened: what a run writes cannot land outside its folder, whatever the folder holds.

The folder itself is the user's choice (named on the command line, perhaps through a link of
theirs); only what lies inside it is distrusted."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cnnlab.atomic_file import atomic_write_at
from cnnlab.errors import RunFolderError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO must not wait for a writer; the file is checked to be regular
# straight after, before any read.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK \
    | os.O_CLOEXEC
# The temporary file of an atomic write: `.<name>.<8 characters>.tmp` (atomic_file.py).
_LEFTOVER = re.compile(r"\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp")


@dataclass(frozen=True)
class FolderFile:
    """`relative` (e.g. "checkpoints/last.pt") inside `folder`, reached without following
    links."""

    folder: Path
    relative: str

    def __post_init__(self) -> None:
        parts = self.relative.split("/")
        if self.relative.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"{self.relative!r} is not a plain path inside a folder")

    @property
    def path(self) -> Path:
        """For messages and for tools that take a path; opening it would follow links."""
        return self.folder / self.relative

    @property
    def name(self) -> str:
        """The last component, as Path.name."""
        return self.relative.rpartition("/")[2]

    def __str__(self) -> str:
        return str(self.path)

    def is_file(self) -> bool:
        """A regular file there, reached through no link."""
        try:
            return stat.S_ISREG(self._lstat().st_mode)
        except (OSError, RunFolderError):
            return False

    def exists(self) -> bool:
        try:
            self._lstat()
        except FileNotFoundError:
            return False
        except (OSError, RunFolderError):
            return True  # something is there: a link, or a folder where a file belongs
        return True

    def open_regular(self) -> int:
        """A read-only descriptor on the file, refused unless it is a regular file reached
        through no link."""
        with _opened_dir(self, create=False) as (fd, leaf):
            try:
                handle = os.open(leaf, _READ_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise _refusal(self, exc) from None
        try:
            _require_regular(self, os.fstat(handle).st_mode)
        except RunFolderError:
            os.close(handle)
            raise
        return handle

    def read_bytes(self, limit: int) -> bytes:
        """The whole file, refused when it is a link, not a regular file, or over `limit`."""
        with os.fdopen(self.open_regular(), "rb") as file:
            size = os.fstat(file.fileno()).st_size
            if size > limit:
                raise RunFolderError(f"{self} is {size:,} bytes, more than the {limit:,} cnnlab "
                                     "reads from it: it is not a file cnnlab wrote")
            data = file.read(limit + 1)
        if len(data) > limit:  # grown while read
            raise RunFolderError(f"{self} grew past {limit:,} bytes while read")
        return data

    @contextlib.contextmanager
    def replace(self, mode: str = "wb") -> Iterator[IO]:
        """Write the file all-or-nothing: a temporary file beside it, renamed over it (a rename
        replaces a link itself, never what it points to). What stands there must be a regular
        file or nothing."""
        with _opened_dir(self, create=True) as (fd, leaf):
            _require_file_or_nothing(self, fd, leaf)
            with atomic_write_at(fd, leaf, self.path, mode) as handle:
                yield handle

    def write_text(self, text: str) -> None:
        with self.replace("w") as handle:
            handle.write(text)

    def append_line(self, line: str) -> None:
        with _opened_dir(self, create=True) as (fd, leaf):
            try:
                handle = os.open(leaf, _APPEND_FLAGS, 0o644, dir_fd=fd)
            except OSError as exc:
                raise _refusal(self, exc) from None
            with os.fdopen(handle, "a", encoding="utf-8") as file:
                _require_regular(self, os.fstat(file.fileno()).st_mode)
                file.write(line + "\n")

    def unlink(self, missing_ok: bool = False) -> None:
        """Remove the file: a regular file only (unlinking a link would remove no more than the
        link, but a folder cnnlab did not write is left as it is)."""
        try:
            with _opened_dir(self, create=False) as (fd, leaf):
                _require_regular(self, os.stat(leaf, dir_fd=fd, follow_symlinks=False).st_mode)
                os.unlink(leaf, dir_fd=fd)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def _lstat(self) -> os.stat_result:
        with _opened_dir(self, create=False) as (fd, leaf):
            return os.stat(leaf, dir_fd=fd, follow_symlinks=False)


def in_folder(path: Path | FolderFile) -> FolderFile:
    """A plain path as a FolderFile: the folder as named, the file itself not followed."""
    return path if isinstance(path, FolderFile) else FolderFile(Path(path).parent,
                                                                 Path(path).name)


def make_dirs(folder: Path, name: str) -> None:
    """The sub-folder `name` of `folder` (made if missing), refused if it is a link."""
    with _opened_dir(FolderFile(folder, f"{name}/x"), create=True):
        pass


def refuse_links_within(folder: Path, what: str) -> None:
    """Before a verb writes into `folder`, a folder of folders (a sweep's or a design's, which
    travel as run folders do, and which SQLite, Optuna and the run folders inside it open by
    path): refused whole at the first link or special file anywhere inside it, found by a walk
    that follows none."""
    def walk(fd: int, shown: Path) -> None:
        with os.scandir(fd) as entries:
            for entry in entries:
                path = shown / entry.name
                if entry.is_dir(follow_symlinks=False):
                    child = os.open(entry.name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
                    try:
                        walk(child, path)
                    finally:
                        os.close(child)
                elif not entry.is_file(follow_symlinks=False):
                    mode = os.stat(entry.name, dir_fd=fd, follow_symlinks=False).st_mode
                    raise RunFolderError(f"{path} is {_kind(mode)}: cnnlab follows no link and "
                                         f"writes no special file in a {what} folder; remove it")

    fd = os.open(folder, _DIR_FLAGS)
    try:
        walk(fd, folder)
    finally:
        os.close(fd)


def require_writable(folder: Path, names: list[str]) -> None:
    """Before a verb writes anything: each of `names` (files cnnlab writes, and the folders
    they go into) is absent, or what cnnlab would write there; the first that is not is
    refused, so nothing is written into a folder that would refuse a later write."""
    for name in names:
        target = FolderFile(folder, name.rstrip("/"))
        try:
            info = target._lstat()
        except FileNotFoundError:
            continue
        if name.endswith("/"):
            if not stat.S_ISDIR(info.st_mode):
                raise RunFolderError(f"{target} is not a folder ({_kind(info.st_mode)}): cnnlab "
                                     "writes into it; move it away")
        else:
            _require_regular(target, info.st_mode)


def remove_leftovers(folder: Path, subfolders: tuple[str, ...], written: set[str]) -> None:
    """The temporary files of writes a crash cut short: regular files named as cnnlab names
    them, for a file it writes; nothing else is removed."""
    for sub in ("", *subfolders):
        base = FolderFile(folder, f"{sub}/x" if sub else "x")
        try:
            with _opened_dir(base, create=False) as (fd, _), os.scandir(fd) as entries:
                for entry in entries:
                    match = _LEFTOVER.fullmatch(entry.name)
                    if match is None or not entry.is_file(follow_symlinks=False):
                        continue
                    if (f"{sub}/{match['name']}" if sub else match["name"]) in written:
                        with contextlib.suppress(OSError):
                            os.unlink(entry.name, dir_fd=fd)
        except (FileNotFoundError, RunFolderError):
            continue


@contextlib.contextmanager
def _opened_dir(target: FolderFile, create: bool) -> Iterator[tuple[int, str]]:
    """A handle on the folder that holds `target`'s last component, reached from `target.folder`
    one component at a time without following links, and that component's name."""
    *dirs, leaf = target.relative.split("/")
    fd = os.open(target.folder, _DIR_FLAGS)
    try:
        for depth, part in enumerate(dirs, start=1):
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            try:
                child = os.open(part, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                raise _refusal(FolderFile(target.folder, "/".join(dirs[:depth])), exc) from None
            os.close(fd)
            fd = child
        yield fd, leaf
    finally:
        os.close(fd)


def _require_file_or_nothing(target: FolderFile, fd: int, leaf: str) -> None:
    try:
        mode = os.stat(leaf, dir_fd=fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return
    _require_regular(target, mode)


def _require_regular(target: FolderFile, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise RunFolderError(f"{target} is {_kind(mode)}, not a file cnnlab wrote: cnnlab "
                             "follows no link and reads or writes no special file in a run, "
                             "sweep or design folder; remove it")


def _refusal(target: FolderFile, exc: OSError) -> Exception:
    """An open that O_NOFOLLOW or O_DIRECTORY refused says so; other errors stay as they are."""
    if exc.errno in (errno.ELOOP, errno.EMLINK):
        return RunFolderError(f"{target} is a symbolic link: cnnlab follows no link in a run, "
                              "sweep or design folder; remove it")
    if exc.errno in (errno.ENOTDIR, errno.ENXIO, errno.EISDIR):
        return RunFolderError(f"{target} is not what cnnlab wrote there (a file where a folder "
                              "belongs, a folder, or a special file); remove it")
    return exc


def _kind(mode: int) -> str:
    for test, word in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return word
    return "a regular file" if stat.S_ISREG(mode) else "a special file"
