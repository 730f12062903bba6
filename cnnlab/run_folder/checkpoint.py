"""Checkpoints written atomically: a crash mid-write never leaves a broken file behind."""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from cnnlab.atomic_file import atomic_write
from cnnlab.errors import TrainingError
from cnnlab.run_folder.confined import FolderFile, in_folder

# A bound on what is read into memory: a training state of a net ~100x cifar-s10's 6.6M
# parameters.
CHECKPOINT_BYTES = 4 << 30


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
