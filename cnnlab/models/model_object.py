"""A model given as a Python object rather than a name: an `nn.Module` class, a function that
builds one, or an instance, typically defined in a notebook cell. The run keeps the code that
defines it, so its folder rebuilds the model later like one from a file:

- defined in a module file of the user's: that file's source;
- defined in a notebook or a script (`__main__`): the imports, classes, functions and
  constants of its cells or file, never the rest (which may train or plot);
- defined in an installed package: a `module:function` reference, as a recipe would name it.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from cnnlab.models.model_code import SOURCE_FILE

ModelObject = type | Callable[..., nn.Module] | nn.Module


def builder_of(model: ModelObject) -> Callable[..., nn.Module]:
    """What builds the model: the class or function itself; for an instance, a function that
    hands back that very instance (whatever arguments it is given)."""
    if isinstance(model, nn.Module):
        return lambda **_ignored: model
    if not callable(model):
        raise TypeError(f"model= takes an nn.Module class, a builder function or an instance, "
                        f"not {type(model).__name__}")
    return model


def instance_of(model: ModelObject) -> nn.Module:
    """`model` as a module: an instance as it is, a class or builder called with its
    defaults."""
    return model if isinstance(model, nn.Module) else builder_of(model)()


def code_of(model: ModelObject) -> tuple[str, str | None]:
    """(the model name a recipe records, the source to keep beside it or None): the name is
    `model_source.py:<class or function>` when the source is kept, else `module:name` for an
    installed package. Raises OSError when Python cannot find the source."""
    target = type(model) if isinstance(model, nn.Module) else model
    name = target.__qualname__
    module = sys.modules.get(target.__module__)
    file = getattr(module, "__file__", None)
    if module is not None and module.__name__ != "__main__" and file:
        if _installed(Path(file)):
            return f"{module.__name__}:{name}", None
        return f"{SOURCE_FILE}:{name}", Path(file).read_text(encoding="utf-8")
    return f"{SOURCE_FILE}:{name}", _definitions(target)


def object_name(model: ModelObject) -> str:
    return (type(model) if isinstance(model, nn.Module) else model).__qualname__


def model_name_of(model: ModelObject) -> str:
    """The model name a recipe records for `model` (as `code_of` gives it), without reading
    its source: what a sweep's trials name."""
    try:
        return code_of(model)[0]
    except (OSError, TypeError, UnicodeDecodeError):
        return f"{SOURCE_FILE}:{object_name(model)}"


def _installed(path: Path) -> bool:
    roots = {sysconfig.get_paths()[key] for key in ("purelib", "platlib", "stdlib")}
    return any(path.resolve().is_relative_to(Path(root).resolve()) for root in roots)


def _definitions(target: Any) -> str:
    """The imports, classes, functions and constants of the `__main__` file, or of the
    notebook's cells run so far (a class often needs an import or a helper from an earlier
    cell), the defining cell last: enough to define `target` again, nothing that runs."""
    filename = _defining_file(target)
    if Path(filename).is_file() and not linecache.getlines(filename):
        files = [filename]  # a script: the file holds it all
    else:  # a notebook: its cells live in linecache, beside the defining one
        folder = Path(filename).parent
        files = [name for name in list(linecache.cache)
                 if Path(name).parent == folder and name != filename] + [filename]
    kept = [part for name in files for part in _kept_parts(name)]
    if not any(f"class {target.__name__}" in part or f"def {target.__name__}" in part
               for part in kept):
        raise OSError(f"could not find the definition of {target.__name__} in {filename}")
    return "\n\n\n".join(kept) + "\n"


def _kept_parts(filename: str) -> list[str]:
    text = "".join(linecache.getlines(filename))
    if not text and Path(filename).is_file():
        text = Path(filename).read_text(encoding="utf-8")
    try:
        tree = ast.parse(text)
    except SyntaxError:  # a cell of IPython magics (%time, !pip): nothing to keep
        return []
    return [ast.get_source_segment(text, node) for node in tree.body
            if isinstance(node, ast.Import | ast.ImportFrom | ast.ClassDef | ast.FunctionDef)
            or isinstance(node, ast.Assign) and _is_literal(node.value)]  # WIDTH = 16


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


def _defining_file(target: Any) -> str:
    """The file (or the notebook cell's pseudo-file) that holds `target`'s code. A class is
    found through one of its functions: Python 3.11 keeps no file for classes in notebooks."""
    if inspect.isfunction(target):
        return target.__code__.co_filename
    for value in vars(target).values():
        function = getattr(value, "__func__", value)
        if inspect.isfunction(function):
            return function.__code__.co_filename
    raise OSError(f"{target.__name__} defines no method, so its source cannot be found")
