"""Where a model's code comes from, recorded so a run folder can rebuild it anywhere: a model
from a file keeps that file's source (the folder builds from its copy, after the original moved
or changed); a model from an installed module records the distribution and version."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
from pathlib import Path

from cnnlab.config import ModelConfig
from cnnlab.errors import ModelError

SOURCE_FILE = "model_source.py"  # the copy, in the run folder


def names_code(name: str) -> bool:
    """Whether a model name points at code outside cnnlab (`file.py:fn`, `module:fn`)."""
    return ":" in name


def from_file(name: str) -> bool:
    return name.rpartition(":")[0].endswith(".py")


def source_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def recorded(model: ModelConfig) -> tuple[ModelConfig, str | None]:
    """`model` as a run records it, and the source to keep beside it (None for a registered
    or installed model). Reading the file once here means the run trains on exactly the source
    it keeps."""
    if not names_code(model.name) or model.source_sha256 is not None:
        return model, None
    where = model.name.rpartition(":")[0]
    if from_file(model.name):
        path = Path(where)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ModelError(f"model file {path} not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelError(f"model file {path} cannot be read: {exc}") from None
        return dataclasses.replace(model, source_sha256=source_sha256(text)), text
    return dataclasses.replace(model, package=_distribution(where)), None


def _distribution(module: str) -> str | None:
    """"name==version" of the installed distribution that holds `module`, if one does."""
    top = module.split(".")[0]
    for dist in importlib.metadata.packages_distributions().get(top, []):
        return f"{dist}=={importlib.metadata.version(dist)}"
    return None
