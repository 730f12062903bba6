"""Budget checks: does a recipe (and its run) meet the assignment stated in its `[spec]`?

Layer-type rules are decided from the traced graph, not from class names alone: GAP is any
pooling or mean that collapses a map to 1x1, depthwise-separable is a conv with
groups == in_channels followed by a 1x1 conv.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from cnnlab.config import Recipe
from cnnlab.errors import ConfigError
from cnnlab.html_table import html_table
from cnnlab.inspection.cost import (
    int8_flash_bytes,
    int8_ram_bytes,
    peak_activation_bytes,
    total_mult_adds,
)
from cnnlab.inspection.graph import ModelGraph, Node, collapses_space, trace
from cnnlab.inspection.receptive_field import ReceptiveField, receptive_field_of
from cnnlab.markdown import markdown_table
from cnnlab.models import count_parameters

POINTWISE = ("ReLU", "BatchNorm2d", "Dropout", "Dropout2d", "relu", "dropout", "GELU", "SiLU")


@dataclass
class Verdict:
    rule: str
    ok: bool | None  # None: cannot be decided yet (needs a finished run)
    measured: str

    def line(self) -> str:
        mark = {True: "✓", False: "✗", None: "-"}[self.ok]
        return f"{mark} {self.rule}: {self.measured}"


@dataclass
class CheckReport:
    recipe: str
    verdicts: list[Verdict]

    @property
    def passed(self) -> bool:
        return all(v.ok is not False for v in self.verdicts)

    @property
    def failures(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.ok is False]

    def to_text(self) -> str:
        return "\n".join(v.line() for v in self.verdicts)

    def table(self) -> tuple[list[str], list[list[str]]]:
        return ["", "rule", "measured"], [[v.line()[0], v.rule, v.measured]
                                          for v in self.verdicts]

    def to_markdown(self) -> str:
        return markdown_table(*self.table())

    def to_json(self) -> str:
        return json.dumps({"recipe": self.recipe, "passed": self.passed,
                           "verdicts": [dataclasses.asdict(v) for v in self.verdicts]}, indent=1)

    def _repr_markdown_(self) -> str:  # where a front end shows Markdown only
        return self.to_markdown()

    def _repr_html_(self) -> str:  # the verdicts in Jupyter
        return html_table(*self.table())


def _conv(node: Node) -> nn.Conv2d | None:
    return node.module if isinstance(node.module, nn.Conv2d) else None


def _is_gap(node: Node, graph: ModelGraph) -> bool:
    averages = isinstance(node.module, nn.AdaptiveAvgPool2d | nn.AvgPool2d) or node.kind == "mean"
    return averages and bool(node.inputs) and collapses_space(
        graph.node(node.inputs[0]).shape, node.shape)


def _is_depthwise_separable(node: Node, graph: ModelGraph) -> bool:
    conv = _conv(node)
    if conv is None or conv.groups == 1 or conv.groups != conv.in_channels:
        return False
    consumers = [n for n in graph.nodes if node.name in n.inputs]
    while consumers:  # walk through activations and norms to the next real layer
        nxt = consumers[0]
        pointwise_conv = _conv(nxt)
        if pointwise_conv is not None:
            return pointwise_conv.kernel_size == (1, 1) and pointwise_conv.groups == 1
        if nxt.kind not in POINTWISE:
            return False
        consumers = [n for n in graph.nodes if nxt.name in n.inputs]
    return False


FEATURES: dict[str, tuple[str, Callable[[Node, ModelGraph], bool]]] = {
    "batchnorm": ("BatchNorm", lambda n, g: isinstance(n.module, nn.modules.batchnorm._NormBase)),
    "dropout": ("Dropout", lambda n, g: isinstance(n.module, nn.modules.dropout._DropoutNd)
                or n.kind == "dropout"),
    "gap": ("global average pooling", _is_gap),
    "fc": ("a fully connected layer", lambda n, g: isinstance(n.module, nn.Linear)),
    "maxpool": ("MaxPool", lambda n, g: isinstance(n.module, nn.MaxPool2d | nn.AdaptiveMaxPool2d)
                or n.kind == "max_pool2d"),
    "dilated_conv": ("a dilated convolution",
                     lambda n, g: _conv(n) is not None and max(_conv(n).dilation) > 1),
    "depthwise_separable": ("a depthwise-separable convolution", _is_depthwise_separable),
    "strided_conv": ("a strided convolution",
                     lambda n, g: _conv(n) is not None and max(_conv(n).stride) > 1),
}


def check_model(recipe: Recipe, model: nn.Module, input_shape: tuple[int, int, int]) -> CheckReport:
    """The rules that can be decided before training: size, epochs, RF, layer types."""
    graph = trace(model, input_shape)
    return check_graph(recipe, model, graph, receptive_field_of(graph))


def check_graph(recipe: Recipe, model: nn.Module, graph: ModelGraph, field: ReceptiveField
                ) -> CheckReport:
    """`check_model` on a graph traced already and its receptive field."""
    spec = recipe.spec
    unknown = [f for f in (*spec.require, *spec.forbid) if f not in FEATURES]
    if unknown:
        raise ConfigError(f"{recipe.name}: spec.require/forbid has unknown {unknown[0]!r}; "
                          f"known: {', '.join(FEATURES)}")
    verdicts = []
    if spec.max_params is not None:
        params = count_parameters(model)
        verdicts.append(Verdict(f"parameters <= {spec.max_params:,}", params <= spec.max_params,
                                f"{params:,}"))
    if spec.max_mult_adds is not None:
        madds = total_mult_adds(graph)
        verdicts.append(Verdict(f"multiply-adds per image <= {spec.max_mult_adds:,}",
                                madds <= spec.max_mult_adds, f"{madds:,}"))
    if spec.max_activation_bytes is not None:
        peak = peak_activation_bytes(graph)
        verdicts.append(Verdict(f"peak activation bytes per image <= "
                                f"{spec.max_activation_bytes:,}",
                                peak <= spec.max_activation_bytes, f"{peak:,}"))
    for limit, label, measure in ((spec.max_flash_bytes, "int8 flash bytes", int8_flash_bytes),
                                  (spec.max_ram_bytes, "int8 RAM bytes per image",
                                   int8_ram_bytes)):
        if limit is not None:
            figure = measure(graph)
            verdicts.append(Verdict(f"{label} <= {limit:,}", figure <= limit, f"{figure:,}"))
    if spec.max_epochs is not None:
        epochs = recipe.train.epochs
        verdicts.append(Verdict(f"epochs <= {spec.max_epochs}", epochs <= spec.max_epochs,
                                str(epochs)))
    if spec.min_rf is not None:
        rf = field.final
        verdicts.append(Verdict(f"receptive field >= {spec.min_rf}", rf >= spec.min_rf, str(rf)))
    for feature in spec.require:
        label, found = _find(feature, graph)
        verdicts.append(Verdict(f"uses {label}", bool(found), _names(found) or "none found"))
    for feature in spec.forbid:
        label, found = _find(feature, graph)
        verdicts.append(Verdict(f"no {label}", not found, _names(found) or "none"))
    if not graph.exact:
        verdicts.append(Verdict("graph traced exactly", None, graph.note))
    return CheckReport(recipe.name, verdicts)


def check_int8(recipe: Recipe, int8: dict | None) -> list[Verdict]:
    """`min_int8_acc`, decided by the run's int8 export (int8.json), once there is one."""
    limit = recipe.spec.min_int8_acc
    if limit is None:
        return []
    rule = f"int8 test accuracy >= {limit}%"
    if int8 is None:
        return [Verdict(rule, None, "needs the int8 model: cnnlab export RUN_DIR --int8")]
    return [Verdict(rule, int8["test_acc_int8"] >= limit, f"{int8['test_acc_int8']:.2f}%")]


def last_epochs_phrase(last: int, epochs: int | None = None) -> str:
    """Where the accuracy rule is judged, in words: "in each of the last 3 (of 15) epochs"."""
    of = f" of {epochs}" if epochs else ""
    return (f"in the last{of} epochs" if last == 1 and epochs else
            "in the last epoch" if last == 1 else f"in each of the last {last}{of} epochs")


def check_history(recipe: Recipe, history: list[dict], planned_epochs: int | None = None,
                  training: bool | None = None) -> list[Verdict]:
    """The rules a finished run decides: the target accuracy over the last N epochs. A run
    short of its `planned_epochs` (the recipe's by default) is still going (`training`), or was
    stopped (`training` False; None: not known): its last epochs so far decide nothing."""
    spec = recipe.spec
    if spec.min_test_acc is None:
        return []
    n = spec.last_epochs
    planned = planned_epochs or recipe.train.epochs
    rule = f"test accuracy >= {spec.min_test_acc}% {last_epochs_phrase(n)}"
    if planned < n:
        return [Verdict(rule, None, f"needs a run of at least {n} epochs")]
    if len(history) < planned:
        so_far = f"{history[-1]['test_acc']:.2f}% at epoch {len(history)}; " if history else ""
        state = {True: "still training", False: "stopped: cnnlab train --resume goes on",
                 None: "a stopped run goes on with cnnlab train --resume"}[training]
        return [Verdict(rule, None, f"{so_far}{len(history)} of the run's {planned} epochs so "
                                    f"far ({state})")]
    last = [row["test_acc"] for row in history[-n:]]
    measured = ", ".join(f"{a:.2f}%" for a in last)
    if recipe.train.tta != "none":
        rule += f", with {recipe.train.tta} test-time augmentation"
        without = [row.get("test_acc_no_tta") for row in history[-n:]]
        if None not in without:
            measured += f" ({', '.join(f'{a:.2f}%' for a in without)} without)"
    return [Verdict(rule, min(last) >= spec.min_test_acc, measured)]


def _names(found: list[str], shown: int = 3) -> str:
    more = f" ({len(found)} in all)" if len(found) > shown else ""
    return ", ".join(found[:shown]) + more


def _find(feature: str, graph: ModelGraph) -> tuple[str, list[str]]:
    label, detect = FEATURES[feature]
    return label, [n.target or n.name for n in graph.nodes if detect(n, graph)]
