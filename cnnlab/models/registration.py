"""The table of named model builders: each built-in model module adds its builders with
`@register` as it is imported; registry.py imports those modules and looks names up. (Two
modules, so that a model module and the lookup never import each other.)"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from cnnlab.data.catalog import dataset_info

Builder = Callable[..., nn.Module]
BUILDERS: dict[str, Builder] = {}
DESIGNED_FOR: dict[str, str] = {}  # model name -> the dataset it was designed for


def register(
    builder: Builder | None = None, *, dataset: str | None = None
) -> Builder | Callable[[Builder], Builder]:
    """Decorator (`@register` or `@register(dataset="cifar10")`): make a builder available
    under its function name. `dataset`, a name in `cnnlab.data.catalog`, gives the input
    shape `cnnlab summary NAME` feeds it; without it, the shape must be given."""
    if dataset is not None:
        dataset_info(dataset)  # a typo fails at import, not at the first summary

    def add(fn: Builder) -> Builder:
        BUILDERS[fn.__name__] = fn
        if dataset is not None:
            DESIGNED_FOR[fn.__name__] = dataset
        return fn

    return add(builder) if builder is not None else add
