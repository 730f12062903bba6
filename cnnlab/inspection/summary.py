"""The layer table of the seeds (torchsummary's format), read off the model's graph.

Rows are the leaf modules in execution order plus the functional ops that change what the
network computes: merges (`cat`, `add`, `mul`) and reductions (`mean`, `sum`). Pure reshapes
(`flatten`, `view`) are left out by default, as torchsummary leaves them out, so the seeds'
tables are reproduced row for row; `reshapes=True` lists them too.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from torch import nn

from cnnlab.errors import ConfigError
from cnnlab.html_table import html_lines, html_table
from cnnlab.inspection.cost import (
    int8_flash_bytes,
    int8_ram_bytes,
    mult_adds,
    peak_activation_bytes,
    total_mult_adds,
)
from cnnlab.inspection.graph import ModelGraph, Node, trace
from cnnlab.inspection.receptive_field import receptive_field_of
from cnnlab.models import count_parameters
from cnnlab.models.model_object import ModelObject, instance_of

MERGE_AND_REDUCE = ("cat", "add", "mul", "mean", "sum", "amax")
RESHAPES = ("flatten", "view", "reshape")
# mult_adds_share: the layer's part of the model's multiply-adds, where its time goes
COLUMNS = ("kernel", "stride", "dilation", "groups", "rf", "mult_adds", "mult_adds_share")
MB = 1024**2


@dataclass
class SummaryRow:
    name: str  # torchsummary style: Conv2d-1, cat-7
    node: str  # graph node name (the module's qualified name for modules)
    shape: tuple[int, ...]
    params: int
    extra: dict[str, str]  # optional columns
    is_module: bool = True


@dataclass
class Summary:
    rows: list[SummaryRow]
    input_shape: tuple[int, ...]
    total_params: int
    trainable_params: int
    columns: tuple[str, ...]
    exact: bool
    note: str = ""
    mult_adds: int = 0  # per image (cost.py)
    peak_activation_bytes: int = 0  # per image, fp32 (cost.py)
    int8_flash_bytes: int = 0  # the int8 model's parameters (cost.py)
    int8_ram_bytes: int = 0  # its peak activations per image

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def sizes_mb(self) -> dict[str, float]:
        """torchsummary's estimate: fp32, batch of 1, every module output kept for the backward
        pass (functional rows left out, as torchsummary cannot see them)."""
        outputs = sum(math.prod(r.shape) for r in self.rows if r.is_module)
        sizes = {
            "input": math.prod(self.input_shape) * 4 / MB,
            "forward_backward": 2 * outputs * 4 / MB,
            "params": self.total_params * 4 / MB,
        }
        sizes["total"] = sum(sizes.values())
        return sizes

    def to_text(self) -> str:
        extra = "".join(f"{c:>11}" for c in self.columns)
        width = 64 + 11 * len(self.columns)
        lines = ["-" * width, f"{'Layer (type)':>20}  {'Output Shape':>25} {'Param #':>15}{extra}",
                 "=" * width]
        for row in self.rows:
            shape = str([-1, *row.shape])
            cells = "".join(f"{row.extra.get(c, ''):>11}" for c in self.columns)
            lines.append(f"{row.name:>20}  {shape:>25} {row.params:>15,}{cells}")
        counts, sizes = self._totals()
        lines += ["=" * width, *counts, "-" * width, *sizes, "-" * width]
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def _totals(self) -> tuple[list[str], list[str]]:
        """The lines under the table, as torchsummary prints them: counts, then sizes."""
        sizes = self.sizes_mb
        return ([f"Total params: {self.total_params:,}",
                 f"Trainable params: {self.trainable_params:,}",
                 f"Non-trainable params: {self.non_trainable_params:,}"],
                [f"Input size (MB): {sizes['input']:.2f}",
                 f"Forward/backward pass size (MB): {sizes['forward_backward']:.2f}",
                 f"Params size (MB): {sizes['params']:.2f}",
                 f"Estimated Total Size (MB): {sizes['total']:.2f}",
                 f"Mult-adds per image: {self.mult_adds:,}",
                 f"Peak activations per image (KB, fp32): "
                 f"{self.peak_activation_bytes / 1024:.1f}",
                 f"int8: flash {self.int8_flash_bytes:,} bytes, RAM {self.int8_ram_bytes:,} "
                 "bytes per image"])

    def to_markdown(self) -> str:
        return "```\n" + self.to_text() + "\n```"

    def to_json(self) -> str:
        rows = [{"layer": r.name, "node": r.node, "output_shape": list(r.shape),
                 "params": r.params, **r.extra} for r in self.rows]
        return json.dumps({"rows": rows, "total_params": self.total_params,
                           "trainable_params": self.trainable_params,
                           "input_shape": list(self.input_shape), "exact": self.exact,
                           "mult_adds": self.mult_adds,
                           "peak_activation_bytes": self.peak_activation_bytes,
                           "int8_flash_bytes": self.int8_flash_bytes,
                           "int8_ram_bytes": self.int8_ram_bytes}, indent=1)

    def _repr_markdown_(self) -> str:  # where a front end shows Markdown only
        return self.to_markdown()

    def _repr_html_(self) -> str:  # the table in Jupyter
        header = ["Layer (type)", "Output Shape", "Param #", *self.columns]
        rows = [[row.name, str([-1, *row.shape]), f"{row.params:,}",
                 *(str(row.extra.get(c, "")) for c in self.columns)] for row in self.rows]
        counts, sizes = self._totals()
        return html_table(header, rows) + html_lines([*counts, *sizes, self.note or ""])


def summary(
    model: ModelObject,
    input_shape: tuple[int, int, int],
    columns: tuple[str, ...] = (),
    reshapes: bool = False,
) -> Summary:
    """The layer table of `model` (an nn.Module, or a class or builder called with its
    defaults) for one input of `input_shape` (C, H, W)."""
    unknown = set(columns) - set(COLUMNS)
    if unknown:
        raise ConfigError(f"unknown columns {sorted(unknown)}; choose from {', '.join(COLUMNS)}")
    model = instance_of(model)
    return summary_of(trace(model, input_shape), model, columns, reshapes)


def summary_of(
    graph: ModelGraph, model: nn.Module, columns: tuple[str, ...] = (), reshapes: bool = False
) -> Summary:
    shown = MERGE_AND_REDUCE + (RESHAPES if reshapes else ())
    rf = {}
    if "rf" in columns:
        rf = receptive_field_of(graph).by_node
    madds = total_mult_adds(graph)
    rows = []
    for node in graph.nodes:
        if not (node.is_module or node.kind in shown):
            continue
        name = f"{node.kind}-{len(rows) + 1}"
        extra = _extra_columns(node, columns, rf, madds)
        rows.append(SummaryRow(name, node.name, node.shape, node.params, extra, node.is_module))
    total, trainable = count_parameters(model), count_parameters(model, trainable_only=True)
    return Summary(rows, graph.input_shape, total, trainable, tuple(columns), graph.exact,
                   graph.note, madds, peak_activation_bytes(graph), int8_flash_bytes(graph),
                   int8_ram_bytes(graph))


def _extra_columns(node: Node, columns: tuple[str, ...], rf: dict[str, int], total: int
                   ) -> dict[str, str]:
    module = node.module
    extra = {}
    for column in columns:
        if column == "rf":
            extra[column] = str(rf.get(node.name, ""))
        elif column == "mult_adds":
            extra[column] = f"{mult_adds(node):,}" if mult_adds(node) else ""
        elif column == "mult_adds_share":
            extra[column] = f"{100 * mult_adds(node) / total:.1f}%" if mult_adds(node) else ""
        else:
            attr = {"kernel": "kernel_size"}.get(column, column)
            value = getattr(module, attr, None)
            extra[column] = _fmt(value) if value is not None else ""
    return extra


def _fmt(value: object) -> str:
    if isinstance(value, tuple) and len(set(value)) == 1:
        return str(value[0])
    return str(value)
