"""ONNX export of a run's best model: a float NCHW input (normalised, as `LoadedRun.normalise`
makes it), any batch size, logits out."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch

from cnnlab.atomic_file import atomic_write
from cnnlab.errors import ConfigError
from cnnlab.run_folder import RunFolder
from cnnlab.ship.loaded_run import load_run


def export_onnx(run_dir: str | Path, out: str | Path | None = None,
                trust_code: bool = False) -> Path:
    """Write `<run>/model.onnx` (or `out`); returns its path. `trust_code` as in `load_run`."""
    _require_onnx()
    loaded = load_run(run_dir, trust_code)
    model = onnx_bytes(loaded.model, loaded.input_shape)
    if out is None:
        folder = RunFolder.existing(run_dir)
        folder.write_bytes("model.onnx", model)
        return folder.file("model.onnx").path
    with atomic_write(Path(out)) as handle:
        handle.write(model)
    return Path(out)


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise ConfigError("ONNX export needs onnx: pip install 'cnnlab[onnx]'") from None


def onnx_bytes(model: torch.nn.Module, input_shape: tuple[int, int, int]) -> bytes:
    """`model` (in eval mode, on the CPU) as an ONNX file's bytes: what a run whose model
    cannot be rebuilt ships beside its weights. The exporter writes into a private temporary
    folder, never into the run folder."""
    _require_onnx()
    example = torch.zeros(2, *input_shape)
    with (warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()),
          logs_quiet(), tempfile.TemporaryDirectory(prefix="cnnlab-onnx-") as tmp):
        warnings.simplefilter("ignore")  # the exporters' progress and deprecation notes
        path = Path(tmp) / "model.onnx"
        if torch_version() >= DYNAMO_EXPORTER_FROM:
            batch = torch.export.Dim("batch", min=1)
            program = torch.onnx.export(model, (example,), dynamo=True,
                                        input_names=["images"], output_names=["logits"],
                                        dynamic_shapes=({0: batch},))
            program.save(str(path))
        else:
            torch.onnx.export(model, (example,), str(path), dynamo=False,
                              input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
        return path.read_bytes()


@contextlib.contextmanager
def logs_quiet(name: str = "torch.onnx") -> Iterator[None]:
    """Only errors from the logger `name` while the block runs. The exporter logs a warning
    for each torchvision operator it cannot register when torchvision is absent (cnnlab does
    not use it): noise that reads as a missing dependency."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


# torch has two ONNX exporters: the TorchScript one, deprecated, and the torch.export-based one
# that replaces it, which cannot export BatchNorm in older torch (docs/benchmarks/torch-versions.md
# says which were tried).
DYNAMO_EXPORTER_FROM = (2, 13)


def torch_version() -> tuple[int, int]:
    major, minor = torch.__version__.split(".")[:2]
    return int(major), int(minor)
