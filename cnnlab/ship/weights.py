"""`best.safetensors`: the best epoch's evaluated weights, with what a user needs to feed the
model (class names, normalisation, input shape) in its metadata. Safe to load from strangers:
safetensors holds tensors only, no code."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from cnnlab.atomic_file import atomic_write
from cnnlab.data import Dataset
from cnnlab.errors import TrainingError
from cnnlab.run_folder import RunFolder


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
    path = run.shipped_path
    with atomic_write(path) as handle:
        handle.write(save(tensors, metadata=metadata))
    return path


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(weights, metadata) of a best.safetensors file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            weights = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    except (OSError, SafetensorError, ValueError) as exc:
        raise TrainingError(f"{path} cannot be read as safetensors ({exc}); re-export it with "
                            "`cnnlab export RUN_DIR`") from None
    return weights, metadata
