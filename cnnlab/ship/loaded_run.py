"""A trained model ready for inference: `cnnlab.load_run(RUN_DIR).predict(images, topk=3)`.

Images may be uint8 (0-255) or float (0-1), one or a batch, as HW, CHW, HWC, or NCHW; the
run's own normalisation is applied, so callers pass pixels as they are."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cnnlab.config import USER_DATASETS, Recipe
from cnnlab.data.catalog import dataset_info
from cnnlab.errors import ConfigError, TrainingError
from cnnlab.html_table import html_table
from cnnlab.prepare import build_run_model
from cnnlab.run_folder import RunFolder
from cnnlab.run_folder.records import load_weights


@dataclass
class Prediction:
    classes: list[list[str]]  # per image, the top k class names, most probable first
    indices: torch.Tensor  # int64 [N, k]
    probabilities: torch.Tensor  # float [N, k]

    def _repr_html_(self) -> str:  # in Jupyter: one row per image
        k = len(self.classes[0]) if self.classes else 0
        rows = [[str(i), *(f"{c} {p:.1%}" for c, p in zip(names, probs.tolist(), strict=True))]
                for i, (names, probs) in enumerate(zip(self.classes, self.probabilities,
                                                       strict=True))]
        return html_table(["image", *(f"top {j + 1}" for j in range(k))], rows)

    def __repr__(self) -> str:
        rows = [", ".join(f"{c} {p:.1%}" for c, p in zip(names, probs.tolist(), strict=True))
                for names, probs in zip(self.classes, self.probabilities, strict=True)]
        return "\n".join(rows)


@dataclass
class LoadedRun:
    model: nn.Module  # on the CPU, in eval mode
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_shape: tuple[int, int, int]  # (C, H, W)
    recipe: Recipe
    folder: RunFolder | None = None  # where model.int8.onnx is read from, when asked for
    _int8: Any = field(default=None, repr=False)  # its ONNX Runtime session, once loaded

    def normalise(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Images in any accepted layout and range -> the float NCHW batch the model takes."""
        x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
        scale = 255.0 if x.dtype == torch.uint8 else 1.0
        x = x.float() / scale
        c, h, w = self.input_shape
        if x.dim() == 2:
            x = x[None, None]
        elif x.dim() == 3:
            if x.shape[0] == c and x.shape[1:] == (h, w):
                x = x[None]
            elif x.shape[-1] == c and x.shape[:2] == (h, w):
                x = x.permute(2, 0, 1)[None]
            elif c == 1 and x.shape[1:] == (h, w):
                x = x[:, None]  # a batch of grey HW images
        elif x.dim() == 4 and x.shape[-1] == c and x.shape[1:3] == (h, w):
            x = x.permute(0, 3, 1, 2)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ConfigError(f"images of shape {tuple(np.shape(images))} do not fit this model: "
                              f"it takes {c}x{h}x{w} (one as HW/CHW/HWC, or a batch as NCHW)")
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return (x - mean) / std

    @torch.inference_mode()
    def predict(self, images: torch.Tensor | np.ndarray, topk: int = 3, int8: bool = False
                ) -> Prediction:
        """The top `topk` classes of each image; with `int8`, by the run's int8 model
        (`cnnlab export RUN_DIR --int8`) on ONNX Runtime, as a device would run it."""
        k = max(1, min(topk, len(self.classes)))
        x = self.normalise(images)
        logits = self.int8_logits(x) if int8 else self.model(x)
        probs = logits.float().softmax(1)
        top = probs.topk(k, dim=1)
        names = [[self.classes[i] for i in row] for row in top.indices.tolist()]
        return Prediction(names, top.indices, top.values)


    def int8_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self._int8 is None:
            from cnnlab.ship.int8_runtime import require_ort, session

            require_ort()
            if self.folder is None:
                raise ConfigError("this model was not loaded from a run folder: no int8 model")
            self._int8 = session(self.folder.int8_model(), self.folder.file("model.int8.onnx"))
        return torch.from_numpy(self._int8.run(None, {"images": x.numpy()})[0])


def load_run(run_dir: str | Path, trust_code: bool = False) -> LoadedRun:
    """The best epoch's model of a run folder, from best.safetensors (else checkpoints/best.pt),
    with its class names, normalisation and input shape. Model code the folder names runs only
    if the folder is trusted: this user's own run, or `trust_code` (which signs it)."""
    folder = RunFolder.existing(run_dir)
    recipe = folder.recipe()
    if folder.shipped_path.exists():
        shipped = folder.shipped()
        weights, source = shipped.weights, folder.shipped_path
        classes, mean, std, shape = (shipped.classes, shipped.mean, shipped.std,
                                     shipped.input_shape)
    else:  # (best_weights says when there are none yet)
        weights, source = folder.best_weights()["model"], folder.best_checkpoint
        classes, mean, std, shape = _facts(recipe)
    model = build_run_model(recipe, shape[0], len(classes), folder.model_source(recipe, trust_code))
    load_weights(model, weights, source)
    return LoadedRun(model.eval(), classes, mean, std, shape, recipe, folder)


def _facts(recipe: Recipe) -> tuple[tuple[str, ...], tuple, tuple, tuple[int, int, int]]:
    data = recipe.data
    if data.dataset in USER_DATASETS:
        raise TrainingError("this run has no best.safetensors to say its input shape: write "
                            "it with `cnnlab export RUN_DIR`")
    info = dataset_info(data.dataset)
    return info.classes, info.mean, info.std, info.input_shape
