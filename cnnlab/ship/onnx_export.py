"""ONNX export of a run's best model: a float NCHW input (normalised, as `LoadedRun.normalise`
makes it), any batch size, logits out."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch

from cnnlab.errors import ConfigError
from cnnlab.ship.loaded_run import load_run


def export_onnx(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write `<run>/model.onnx` (or `out`); returns its path."""
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise ConfigError("ONNX export needs onnx: pip install 'cnnlab[onnx]'") from None
    loaded = load_run(run_dir)
    path = Path(out) if out is not None else Path(run_dir) / "model.onnx"
    example = torch.zeros(2, *loaded.input_shape)
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporter's progress notes
        program = torch.onnx.export(loaded.model, (example,), dynamo=True,
                                    input_names=["images"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},))
    tmp = path.with_name(f".{path.name}.tmp")
    program.save(str(tmp))
    tmp.replace(path)
    return path
