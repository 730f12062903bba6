"""One run = one folder: resolved config, plain-text log, per-epoch history, checkpoints."""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnlab.atomic_file import atomic_write
from cnnlab.config import Recipe, load_recipe
from cnnlab.errors import TrainingError

CHOICES_FILE = "run.json"


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, out_dir: str | Path, recipe: Recipe, name: str | None = None,
               choices: dict[str, Any] | None = None) -> RunFolder:
        """A new folder `out_dir/<name>`, by default `<recipe>-<time>`, never an existing one;
        `choices` (how the run was asked for, e.g. {"check": False}) are kept for --resume."""
        base = Path(out_dir) / (name or f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        path, n = base, 1
        while True:  # mkdir is the test: two runs started in the same second get two folders
            try:
                path.mkdir()
                break
            except FileExistsError:
                n += 1
                path = base.with_name(f"{base.name}-{n}")
        (path / "checkpoints").mkdir()
        run = cls(path)
        run.write_text("config.toml", recipe.to_toml())
        run.write_text(CHOICES_FILE, json.dumps(choices or {}) + "\n")
        return run

    @classmethod
    def existing(cls, path: str | Path) -> RunFolder:
        run = cls(Path(path))
        if not run.config_path.is_file():
            raise TrainingError(f"{path} is not a cnnlab run folder (no config.toml)")
        return run

    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def last_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.path / "checkpoints" / "best.pt"

    @property
    def lr_find_path(self) -> Path:
        """The LR range test that set the peak learning rate, when the recipe asked for one."""
        return self.path / "lr_find.json"

    def recipe(self) -> Recipe:
        return load_recipe(self.config_path)

    def choices(self) -> dict[str, Any]:
        """How the run was asked for (e.g. {"check": False} for --no-check)."""
        try:
            return json.loads((self.path / CHOICES_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def remove_leftovers(self) -> None:
        """Temporary files of writes a crash cut short: never the real files."""
        for leftover in [*self.path.glob(".*.tmp"), *self.path.glob("checkpoints/.*.tmp")]:
            with contextlib.suppress(OSError):
                leftover.unlink()

    @contextlib.contextmanager
    def training_lock(self) -> Iterator[None]:
        """Held while a process trains in this folder: a second one is refused. The lock is on
        config.toml, which a run never rewrites, so no lock file is left behind."""
        with open(self.config_path, "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TrainingError(f"{self.path} is being trained by another process; wait "
                                    "for it to finish, or stop it first") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def log(self, line: str) -> None:
        with open(self.path / "log.txt", "a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    def logged_epochs(self) -> set[int]:
        """The epochs that have their `epoch N:` line in log.txt."""
        path = self.path / "log.txt"
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        return {int(match[1]) for line in lines if (match := re.match(r"epoch (\d+):", line))}

    def write_history(self, history: list[dict[str, Any]]) -> None:
        self.write_text("history.jsonl", "".join(json.dumps(row) + "\n" for row in history))

    def write_text(self, name: str, text: str) -> None:
        with atomic_write(self.path / name, "w") as handle:
            handle.write(text)

    def history(self) -> list[dict[str, Any]]:
        path = self.path / "history.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
