"""One run = one folder: resolved config, plain-text log, per-epoch history, checkpoints, the
shipped weights, and the model's source when it came from a file. This class is the only code
that writes a run folder or reads one back: every file is opened without following links
(confined.py), read once and checked (records.py), and the code a folder names runs only when
the folder is trusted (trust.py) by a signature over the very bytes that were parsed."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.config import Recipe, parse_recipe, recipe_from_table
from cnnlab.errors import ConfigError, RunFolderError, TrainingError, UntrustedCodeError
from cnnlab.models import is_registered
from cnnlab.models.model_code import SOURCE_FILE, from_file, names_code, source_sha256
from cnnlab.run_folder import confined, records, trust
from cnnlab.run_folder.checkpoint import CHECKPOINT_BYTES, Checkpoints, load_checkpoint
from cnnlab.run_folder.confined import FolderFile
from cnnlab.run_folder.history import History
from cnnlab.run_folder.lr_find_result import LRFindResult
from cnnlab.run_folder.shipped_weights import SHIPPED_FILE, read_safetensors

START_OPTIONS_FILE = "run.json"
RUN_CONFIG_KEYS = ("name", "data", "augment", "model", "optim", "schedule", "train", "spec")
LOCK_ATTEMPTS = 20  # 50 ms apart: the training lock waits out another process's brief probe
SUBFOLDERS = ("checkpoints", "plots", "tb")
# Every file a run writes: what a verb checks before it writes anything (a link, a folder or a
# FIFO in one of these places refuses the folder), and the only names whose leftover
# temporary files are removed.
WRITTEN_FILES = frozenset({
    "config.toml", START_OPTIONS_FILE, SOURCE_FILE, trust.SIGNATURE_FILE, "log.txt",
    "history.jsonl", "summary.txt", "rf.md", "check.md", "lr_find.json", SHIPPED_FILE,
    "model.onnx", "model.int8.onnx", "int8.json", "model.int8.tflite", "tflite.json",
    "README.md", "report.html",
    "checkpoints/last.pt", "checkpoints/best.pt", "checkpoints/partial.pt", "plots/curves.png",
    "plots/misclassified.png", "plots/confusion.png", "plots/gradcam.png", "plots/lr-find.png"})


@dataclass(frozen=True)
class ShippedWeights:
    """best.safetensors: the best epoch's weights and what feeding the model needs."""

    weights: dict
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_shape: tuple[int, int, int]


class RunFolder:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._read: dict[str, bytes] = {}  # each file that names or holds code, read once

    @classmethod
    def create(cls, out_dir: str | Path, recipe: Recipe, name: str | None = None,
               start_options: dict[str, Any] | None = None,
               model_source: str | None = None) -> RunFolder:
        """A new folder `out_dir/<name>`, by default `<recipe>-<time>`, never an existing one;
        `start_options` (how the run was asked for, e.g. {"check": False}) are kept for
        --resume; `model_source`, the text of the model's file, is kept beside the config. The
        folder is signed as this user's."""
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
        run = cls(path)
        confined.make_dirs(path, "checkpoints")
        if model_source is not None:
            run.write_text(SOURCE_FILE, model_source)
        run.write_text("config.toml", recipe.to_toml())
        run.write_text(START_OPTIONS_FILE, json.dumps(start_options or {}) + "\n")
        try:
            run.sign()
        except (OSError, ConfigError) as exc:  # no usable config folder: it trains all the same
            run.log(f"note: not signed ({exc}); later verbs will ask for --trust-code")
        return run

    def file(self, name: str) -> FolderFile:
        """`name` in this folder, opened without following any link."""
        return FolderFile(self.path, name)

    def require_writable(self) -> None:
        """Before a verb writes into this folder: every place a run writes holds what cnnlab
        would write there or nothing (no link, folder or special file), so no write is cut
        short halfway through a verb, and none lands outside the folder."""
        confined.require_writable(self.path, [f"{sub}/" for sub in SUBFOLDERS]
                                  + sorted(WRITTEN_FILES))

    @classmethod
    def existing(cls, path: str | Path) -> RunFolder:
        run = cls(Path(path))
        if not run.path.is_dir():
            raise RunFolderError(f"{path} is not a cnnlab run folder (no such folder)")
        if not run.config_path.exists():
            raise RunFolderError(f"{path} is not a cnnlab run folder (no config.toml)")
        return run

    @property
    def config_path(self) -> FolderFile:
        return self.file("config.toml")

    @property
    def last_checkpoint(self) -> FolderFile:
        return self.file("checkpoints/last.pt")

    @property
    def best_checkpoint(self) -> FolderFile:
        return self.file("checkpoints/best.pt")

    @property
    def checkpoints(self) -> Checkpoints:
        return Checkpoints(self.last_checkpoint, self.best_checkpoint, self.partial_checkpoint)

    @property
    def partial_checkpoint(self) -> FolderFile:
        """The training state partway through the epoch after last.pt's, saved inside long
        epochs and removed once that epoch is saved whole."""
        return self.file("checkpoints/partial.pt")

    @property
    def lr_find_path(self) -> FolderFile:
        """The LR range test that set the peak learning rate, when the recipe asked for one."""
        return self.file("lr_find.json")

    @property
    def shipped_path(self) -> FolderFile:
        return self.file(SHIPPED_FILE)

    # --- reading back: each file read once, through its check in records.py ---

    @staticmethod
    def is_run_folder(path: Path) -> bool:
        """Whether `path` looks like a folder cnnlab ran in (a config.toml beside a run.json or
        checkpoints/), whoever made it."""
        return (path / "config.toml").exists() and (
            (path / START_OPTIONS_FILE).exists() or (path / "checkpoints").exists())

    def recipe(self, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
        """config.toml, as the run resolved it (with `overrides`, as --set gives them): parsed
        from the same bytes the signature is checked over. A run writes every section, so a
        file without one is damaged, not a recipe that wants the defaults."""
        raw = records.toml_table(self._bytes("config.toml", records.CONFIG_BYTES),
                                 self.config_path)
        missing = [key for key in RUN_CONFIG_KEYS if key not in raw]
        if missing:
            raise RunFolderError(f"{self.config_path} lacks {', '.join(missing)}: it is cut "
                                 "short, or not a config.toml that cnnlab wrote")
        if overrides:
            return recipe_from_table(raw, overrides, str(self.config_path))
        with records.reading(self.config_path):
            return parse_recipe(raw, str(self.config_path))

    def start_options(self) -> dict[str, Any]:
        """How the run was asked for (e.g. {"check": False} for --no-check, {"lr_find": True}
        when a range test chose its peak rate)."""
        if not self.file(START_OPTIONS_FILE).exists():
            return {}
        path = self.file(START_OPTIONS_FILE)
        text = records.decoded(self._bytes(START_OPTIONS_FILE, records.SMALL_JSON_BYTES), path)
        return records.json_object(text, path, {"check": bool, "lr_find": bool})

    def history(self) -> History:
        path = self.file("history.jsonl")
        if not path.exists():
            return []
        return records.history_rows(records.read_text(path, records.HISTORY_BYTES), path)

    def logged_epochs(self) -> set[int]:
        """The epochs that have their `epoch N:` line in log.txt."""
        path = self.file("log.txt")
        text = records.read_text(path, records.LOG_BYTES) if path.exists() else ""
        return {int(match[1]) for line in text.splitlines()
                if (match := re.match(r"epoch (\d{1,6}):", line))}

    def best_weights(self, model: nn.Module | None = None) -> dict[str, Any]:
        """checkpoints/best.pt: the best epoch's evaluated weights, its epoch and accuracy;
        given this run's `model`, the weights are checked to be its own."""
        self.require_weights()
        state = load_checkpoint(self.best_checkpoint)
        state = records.checkpoint(state, self.best_checkpoint, records.BEST_WEIGHTS)
        if model is not None:
            records.check_weights(model, state["model"], self.best_checkpoint)
        return state

    def require_weights(self) -> None:
        """Refuse a run with no finished epoch, before anything is built for its weights."""
        if not (self.shipped_path.exists() or self.best_checkpoint.exists()):
            raise TrainingError(f"{self.path} has no trained weights yet (no "
                                f"{SHIPPED_FILE}, no best.pt): no epoch has finished")

    def shipped(self) -> ShippedWeights:
        path = self.shipped_path
        weights, meta = read_safetensors(path)
        classes, mean, std, shape = records.shipped_metadata(meta, path)
        return ShippedWeights(weights, classes, mean, std, shape)

    def int8_record(self) -> dict[str, Any] | None:
        """int8.json: the int8 export's accuracy beside the fp32 figure (None: not exported)."""
        path = self.file("int8.json")
        if not path.exists():
            return None
        return records.int8_record(records.read_text(path, records.SMALL_JSON_BYTES), path)

    def tflite_record(self) -> dict[str, Any] | None:
        """tflite.json: TFLite Micro's accuracy and arena for the run's .tflite (None: not
        exported)."""
        path = self.file("tflite.json")
        if not path.exists():
            return None
        return records.tflite_record(records.read_text(path, records.SMALL_JSON_BYTES), path)

    def int8_model(self) -> bytes:
        """model.int8.onnx's bytes (the caller's runtime checks they are a model)."""
        path = self.file("model.int8.onnx")
        if not path.exists():
            raise TrainingError(f"{self.path} has no int8 model yet: write it with `cnnlab "
                                "export RUN_DIR --int8`")
        return path.read_bytes(CHECKPOINT_BYTES)

    def lr_find_record(self) -> LRFindResult | None:
        """The range test this run ran; None for a run that ran none (its run.json says so),
        whatever lr_find.json the folder holds."""
        path = self.lr_find_path
        if not self.start_options().get("lr_find", False) or not path.exists():
            return None
        return records.lr_find_record(records.read_text(path, records.LR_FIND_BYTES), path)

    def load_trained(self, model: nn.Module) -> nn.Module:
        """`model` (this run's, untrained) with the last epoch's evaluated weights (the EMA
        copy when the run kept one), in eval mode."""
        state = self.checkpoints.training_state()
        ema = state.get("ema")
        weights = ema.get("weights") if isinstance(ema, dict) else state["model"]
        return records.load_weights(model, weights, self.last_checkpoint).eval()

    # --- the model's code ---

    def model_source(self, recipe: Recipe, trust_code: bool = False
                     ) -> tuple[str, Path] | None:
        """The kept source that `recipe` (this folder's) builds its model from (None for a
        registered or installed model), once the decision is made that the code this folder
        names may run: a registered model needs no trust; any other only if this user's
        cnnlab signed the folder, or `trust_code` (which signs it). Nothing the folder names is
        imported here."""
        model = recipe.model
        if is_registered(model.name) or not names_code(model.name):
            return None
        source = self.file(SOURCE_FILE)
        kept = self._bytes(SOURCE_FILE, records.SOURCE_BYTES) if source.exists() else None
        text = records.decoded(kept, source) if kept is not None else None
        if from_file(model.name):
            if text is None or model.source_sha256 is None:
                # a run from before runs kept their model's source, or whose source could
                # not be had: only the file it names can rebuild it, and only if trusted
                if not trust_code:
                    raise UntrustedCodeError(
                        f"{self.path} names the model file {model.name!r} and keeps no copy "
                        f"of it ({SOURCE_FILE}): that file, found from the working "
                        "directory, runs only if you trust it: add --trust-code (Python: "
                        "trust_code=True)")
                return None
            if source_sha256(text) != model.source_sha256:
                raise RunFolderError(f"{source} is not the source this run trained: its hash "
                                     "differs from the one in config.toml")
        if not self.is_signed():
            if not trust_code:
                what = (f"the source in {source}" if from_file(model.name)
                        else f"module {model.name.rpartition(':')[0]!r}")
                raise UntrustedCodeError(
                    f"{self.path} names model code {model.name!r} ({what}) and was not written "
                    "by this user's cnnlab; read that code, and if you trust it, add "
                    "--trust-code (Python: trust_code=True)")
            self.sign()
        return (text, source.path) if from_file(model.name) else None

    def is_signed(self) -> bool:
        """Whether this user's cnnlab signed the folder as it was read."""
        kept = self.file(trust.SIGNATURE_FILE)
        return kept.is_file() and trust.signed_by_this_user(kept.read_bytes(1024),
                                                            self._signed_parts())

    def sign(self) -> None:
        self.write_text(trust.SIGNATURE_FILE, trust.signature(self._signed_parts()) + "\n")

    def _signed_parts(self) -> list[bytes]:
        """What the signature covers: the files that name or hold code and how the run was
        started (config.toml, the model's source, run.json), as read once and parsed."""
        return [self._bytes(name, limit) if self.file(name).exists() else b""
                for name, limit in (("config.toml", records.CONFIG_BYTES),
                                    (SOURCE_FILE, records.SOURCE_BYTES),
                                    (START_OPTIONS_FILE, records.SMALL_JSON_BYTES))]

    def _bytes(self, name: str, limit: int) -> bytes:
        """The file's bytes as first read: what is verified is what is parsed, whatever is
        written there meanwhile."""
        if name not in self._read:
            self._read[name] = self.file(name).read_bytes(limit)
        return self._read[name]

    # --- writing ---

    def remove_leftovers(self) -> None:
        """Temporary files of writes a crash cut short: never the real files, nothing else."""
        confined.remove_leftovers(self.path, SUBFOLDERS, set(WRITTEN_FILES))

    @contextlib.contextmanager
    def training_lock(self) -> Iterator[None]:
        """Held while a process trains in this folder: a second one is refused. The lock is on
        config.toml, which a run never rewrites, so no lock file is left behind."""
        with os.fdopen(self.config_path.open_regular(), "rb") as handle:
            for attempt in range(LOCK_ATTEMPTS):  # `is_training` holds it for microseconds
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt == LOCK_ATTEMPTS - 1:
                        raise TrainingError(f"{self.path} is being trained by another process; "
                                            "wait for it to finish, or stop it first") from None
                    time.sleep(0.05)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def is_training(self) -> bool:
        """Whether a process is training in this folder now (it holds `training_lock`)."""
        with os.fdopen(self.config_path.open_regular(), "rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(handle, fcntl.LOCK_UN)
            return False

    def log(self, line: str) -> None:
        self.file("log.txt").append_line(line)

    def write_history(self, history: History) -> None:
        self.write_text("history.jsonl", "".join(json.dumps(row) + "\n" for row in history))

    def write_text(self, name: str, text: str) -> None:
        self.file(name).write_text(text)

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.file(name).replace() as handle:
            handle.write(data)
