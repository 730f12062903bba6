"""A run's checkpoints: each written atomically (a crash mid-write never leaves a broken file
behind), and the rules of which is saved when and which a resume starts from, in one place
(`Checkpoints`), which the trainer feeds and a resume reads."""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.atomic_file import atomic_write
from cnnlab.errors import TrainingError
from cnnlab.run_folder import records
from cnnlab.run_folder.confined import FolderFile, in_folder
from cnnlab.run_folder.history import History, best_row

# A bound on what is read into memory: a training state of a net ~100x cifar-s10's 6.6M
# parameters.
CHECKPOINT_BYTES = 4 << 30


@dataclass(frozen=True)
class Checkpoints:
    """checkpoints/ of a run folder. After each epoch the trainer saves the whole training
    state (last.pt) and, when the test accuracy improved, the evaluated weights (best.pt);
    inside a long epoch, the state with its place in the epoch (partial.pt), dropped once the
    epoch is saved whole or the loss diverges. A resume starts from the newest of last.pt and
    partial.pt, and mends a best.pt a crash between two saves left behind."""

    last: FolderFile
    best: FolderFile
    partial: FolderFile

    def save_epoch(self, state: dict[str, Any], test_acc: float, improved: bool,
                   evaluated: nn.Module) -> None:
        save_atomic(state, self.last)
        self.partial.unlink(missing_ok=True)  # last.pt is newer now
        if improved:
            self.save_best(state["epoch"], evaluated, test_acc)

    def save_best(self, epoch: int, evaluated: nn.Module, test_acc: float) -> None:
        save_atomic({"epoch": epoch, "model": evaluated.state_dict(), "test_acc": test_acc},
                    self.best)

    def save_partway(self, state: dict[str, Any], partway: dict[str, Any]) -> None:
        save_atomic({**state, "partway": partway}, self.partial)

    def after_divergence(self, epoch: int) -> str:
        """Drop partial.pt (it would resume into the same divergence); what is kept, said."""
        self.partial.unlink(missing_ok=True)
        if self.last.is_file():
            return (f"; the last good checkpoint (epoch {epoch - 1}) is kept in "
                    f"{self.last.path.parent}")
        return f" before any checkpoint: nothing in {self.last.path.parent.parent} to resume"

    def training_state(self) -> dict[str, Any]:
        """last.pt: everything a resume needs."""
        if not self.last.exists():
            raise TrainingError(f"no checkpoint at {self.last}: nothing to resume from")
        return records.checkpoint(load_checkpoint(self.last), self.last, records.TRAINING_STATE)

    def resume_state(self) -> tuple[dict[str, Any], FolderFile]:
        """The newest training state and its file: partial.pt when it is partway through the
        epoch after last.pt's (a crash between saving last.pt and removing partial.pt leaves
        an older one, not used), else last.pt."""
        if not self.partial.exists():  # (says so when last.pt is missing too)
            return self.training_state(), self.last
        last = self.training_state() if self.last.exists() else None
        partial = records.partway(
            records.checkpoint(load_checkpoint(self.partial), self.partial,
                               records.TRAINING_STATE), self.partial)
        if last is not None and partial["epoch"] < last["epoch"]:
            return last, self.last
        return partial, self.partial

    def repair_best(self, history: History, evaluated: nn.Module, saved_epoch: int | None
                    ) -> str | None:
        """After a crash between writing last.pt and best.pt, best.pt (which holds
        `saved_epoch`) may hold an older epoch than the history's best; when the best is the
        last epoch, its weights are `evaluated`'s, restored from last.pt. Returns the log line
        of a repair."""
        if not history:
            return None
        best = best_row(history)
        if saved_epoch == best["epoch"] or best["epoch"] != len(history):
            return None
        self.save_best(best["epoch"], evaluated, best["test_acc"])
        return f"best.pt repaired: epoch {best['epoch']} (it held {saved_epoch})"


def save_atomic(state: dict[str, Any], path: Path | FolderFile) -> None:
    """Save `state` at `path`, a run folder's file (written through no link) or a plain path."""
    # Serialised in memory first: torch's zip writer turns a full disk into a RuntimeError
    # ("unexpected pos"); a plain write raises the OSError (ENOSPC) that names the cause.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    target = path.replace() if isinstance(path, FolderFile) else atomic_write(path)
    with target as handle:
        handle.write(buffer.getbuffer())


def load_checkpoint(path: Path | FolderFile) -> dict[str, Any]:
    """A checkpoint, read once, through no link, up to CHECKPOINT_BYTES."""
    path = in_folder(path)
    if not path.exists():
        raise TrainingError(f"no checkpoint at {path}")
    data = path.read_bytes(CHECKPOINT_BYTES)
    try:
        # Our own checkpoints hold tensors, numbers, strings and dicts only.
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's message advises weights_only=False, which would run the file's code: no.
        raise TrainingError(f"{path} is not a cnnlab checkpoint: it holds objects other than "
                            "tensors and numbers, so it is not loaded") from None
    except Exception as exc:  # torch raises many types for a damaged file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise TrainingError(f"{path} cannot be read ({type(exc).__name__}): {first}") from None


def rng_states(generator: torch.Generator) -> dict[str, Any]:
    """Everything random the loop draws from: dropout (global RNG) and the data generator."""
    states = {"torch": torch.get_rng_state(), "data": generator.get_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    generator.set_state(states["data"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
