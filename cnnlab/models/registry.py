"""Looking models up: the built-in builders (registration.py), user models given as
`file.py:function` or `module:function`, and models rebuilt from the source a run folder
kept (`source`: the file's text, and where it lies)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import types
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.data.catalog import dataset_info
from cnnlab.errors import ModelError
from cnnlab.models.registration import BUILDERS, DESIGNED_FOR, Builder


def default_input_shape(name: str) -> tuple[int, int, int]:
    """The input shape (C, H, W) of the dataset a registered model was designed for."""
    _load_zoo()
    if name not in DESIGNED_FOR:
        raise ModelError(f"model {name!r} names no dataset, so its input shape is unknown: "
                         "give --input C,H,W, or inspect a recipe that uses it")
    return dataset_info(DESIGNED_FOR[name]).input_shape


def model_names() -> list[str]:
    _load_zoo()
    return sorted(BUILDERS)


ModelSource = tuple[str, Path]  # a model file's text, and the file it was read from


def build_model(name: str, source: ModelSource | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered model by name, or a user model from `path.py:fn` / `pkg.mod:fn`
    (from `source` instead of the file, when given)."""
    return _built(name, _resolve(name, source), kwargs)


def _built(name: str, builder: Builder, kwargs: dict[str, Any]) -> nn.Module:
    try:
        inspect.signature(builder).bind(**kwargs)
    except TypeError as exc:
        raise ModelError(f"model {name!r} does not accept these model.args: {exc}") from None
    try:
        model = builder(**kwargs)
    except Exception as exc:  # the user's builder failed: say where, not a traceback
        raise ModelError(f"building model {name!r} failed: {type(exc).__name__}: {exc}"
                         ) from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"model {name!r} returned {type(model).__name__}, not an nn.Module")
    return model


def build_for_data(name: str, args: dict[str, Any], channels: int, num_classes: int,
                   source: ModelSource | None = None, builder: Builder | None = None
                   ) -> nn.Module:
    """`build_model(name, **args)`, told the data's channels and class count where the builder
    takes them (`in_channels`, `num_classes`) and `args` does not set them: a recipe's model
    fits the dataset it trains on."""
    builder = builder or _resolve(name, source)
    accepted = inspect.signature(builder).parameters
    fitted = {key: value for key, value in (("in_channels", channels),
                                             ("num_classes", num_classes))
              if key in accepted and key not in args}
    return _built(name, builder, {**fitted, **args})


def is_registered(name: str) -> bool:
    _load_zoo()
    return _FORMER_NAMES.get(name, name) in BUILDERS


# Former names of built-in models, which run folders written before a rename still carry.
_FORMER_NAMES = {"mnist_fast": "mnist_pool", "mnist_lean": "mnist_strided"}


def _resolve(name: str, source: ModelSource | None = None) -> Builder:
    _load_zoo()
    name = _FORMER_NAMES.get(name, name)
    if name in BUILDERS:
        return BUILDERS[name]
    if ":" not in name:
        raise ModelError(
            f"unknown model {name!r}: use one of {', '.join(sorted(BUILDERS))}, "
            "or path/to/file.py:function or package.module:function"
        )
    where, _, attr = name.rpartition(":")
    if source is not None:
        module = _module_from_source(*source)
    else:
        module = _import_file(where) if where.endswith(".py") else _import_module(where)
    builder = getattr(module, attr, None)
    if not callable(builder):
        raise ModelError(f"{where} has no function {attr!r}")
    return builder


def _import_file(path_text: str) -> Any:
    path = Path(path_text)
    if not path.is_file():
        raise ModelError(f"model file {path} not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"model file {path} cannot be read: {exc}") from None
    return _module_from_source(text, path)


def _module_from_source(text: str, path: Path) -> Any:
    """A module made from `text` (read from `path`, which tracebacks and inspect point at),
    named after its hash: two runs with different versions of one file never share one."""
    name = f"cnnlab_model_{hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # lets pickle and dataclasses find the module
    try:
        exec(compile(text, str(path), "exec"), module.__dict__)
    except Exception as exc:  # the kept source failed; say where, not a traceback
        del sys.modules[name]
        raise ModelError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    return module


def _import_module(module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"cannot import module {module_name!r}: {exc}") from None


def _load_zoo() -> None:
    import cnnlab.models.cifar  # noqa: F401  (registers the built-in models)
    import cnnlab.models.cifar_speed  # noqa: F401
    import cnnlab.models.compact  # noqa: F401
    import cnnlab.models.mlperf_tiny  # noqa: F401
    import cnnlab.models.mnist  # noqa: F401
