"""`best.safetensors`: the best epoch's evaluated weights, with what a user needs to feed the
model (class names, normalisation, input shape) in its metadata. Safe to load from strangers:
safetensors holds tensors only, no code."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from cnnlab.data import Dataset
from cnnlab.errors import TrainingError
from cnnlab.run_folder.checkpoint import CHECKPOINT_BYTES
from cnnlab.run_folder.confined import FolderFile, in_folder

if TYPE_CHECKING:  # the folder reads this file through read_safetensors
    from cnnlab.run_folder.folder import RunFolder

SHIPPED_FILE = "best.safetensors"


def write_safetensors(run: RunFolder, data: Dataset, model: nn.Module | None = None) -> Path:
    """Write `<run>/best.safetensors` from checkpoints/best.pt, with `data`'s classes,
    normalisation and input shape; returns its path. Given the run's `model`, best.pt's
    weights are checked to be its own first."""
    from safetensors.torch import save

    state = run.best_weights(model)
    # safetensors wants each tensor on its own contiguous storage
    tensors = {name: t.detach().cpu().contiguous().clone() for name, t in state["model"].items()}
    metadata = {"cnnlab_recipe": run.recipe().name, "epoch": str(state["epoch"]),
                "test_acc": f"{state['test_acc']:.4f}", "classes": json.dumps(data.classes),
                "mean": json.dumps(data.mean), "std": json.dumps(data.std),
                "input_shape": json.dumps(list(data.input_shape))}
    run.write_bytes(SHIPPED_FILE, save(tensors, metadata=metadata))
    return run.shipped_path.path


def read_safetensors(path: Path | FolderFile
                     ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(weights, metadata) of a best.safetensors file, read once through no link."""
    path = in_folder(path)
    from safetensors import SafetensorError
    from safetensors.torch import load

    data = path.read_bytes(CHECKPOINT_BYTES)
    try:
        weights = load(data)
        metadata = _metadata(data)
    except (SafetensorError, ValueError, KeyError, TypeError, struct.error) as exc:
        raise TrainingError(f"{path} cannot be read as safetensors ({exc}); re-export it with "
                            "`cnnlab export RUN_DIR`") from None
    return weights, metadata


def _metadata(data: bytes) -> dict[str, str]:
    """The format's header: 8 bytes of its length, then JSON whose `__metadata__` holds text
    (safetensors.torch.load, which checked the header, returns the tensors only)."""
    (length,) = struct.unpack("<Q", data[:8])
    metadata = json.loads(data[8:8 + length]).get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("its metadata is not a table of text")
    return metadata
