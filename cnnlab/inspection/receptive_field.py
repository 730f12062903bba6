"""Receptive field from the model's graph, in the seeds' table format.

Rules (per spatial dimension, height shown): r_out = r_in + (k - 1) * d * j_in and
j_out = j_in * s for convolutions and pools (any dilation, groups, stride); adaptive and
global pooling, a mean over H and W, or flattening a map cover the whole map. At a merge
(`cat`, `add`, `mul`) the receptive field is the largest of the inputs'; jumps that
disagree are reported, never averaged.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from torch import nn

from cnnlab.html_table import html_lines, html_table
from cnnlab.inspection.graph import ModelGraph, Node, collapses_space, trace
from cnnlab.markdown import markdown_table
from cnnlab.models.model_object import ModelObject, instance_of

SPATIAL_MODULES = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)
ADAPTIVE_MODULES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
MERGES = ("cat", "add", "mul")
COLLAPSING_OPS = ("flatten", "view", "reshape", "mean", "sum", "amax")
MARKDOWN_HEADER = ["Layer", "nin", "In Channels", "Out Channels", "padding", "kernel", "stride",
                   "dilation", "nout", "jin", "jout", "rin", "rout"]


@dataclass
class RFRow:
    name: str
    nin: int
    in_channels: int
    out_channels: int
    padding: int
    kernel: int
    stride: int
    dilation: int
    nout: int
    jin: int
    jout: int
    rin: int
    rout: int


@dataclass
class ReceptiveField:
    input_size: int  # input height
    rows: list[RFRow]
    final: int  # receptive field of the model's output, in input pixels
    exact: bool  # False when the graph came from the hook fallback
    warnings: list[str] = field(default_factory=list)
    by_node: dict[str, int] = field(default_factory=dict)  # rf after every graph node

    @property
    def covers_input(self) -> bool:
        return self.final >= self.input_size

    def summary_line(self) -> str:
        covers = "covers" if self.covers_input else "does not cover"
        return (f"final receptive field: {self.final} pixels; {covers} the whole "
                f"{self.input_size}x{self.input_size} input")

    def to_text(self) -> str:
        header = list(asdict(self.rows[0]).keys()) if self.rows else ["name"]
        table = [header] + [[str(v) for v in asdict(r).values()] for r in self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                           enumerate(zip(row, widths, strict=True))) for row in table]
        return "\n".join([*lines, *self._notes(), self.summary_line()])

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and rows in the seeds' RF-table columns."""
        return MARKDOWN_HEADER, [[str(v) for v in asdict(r).values()] for r in self.rows]

    def closing_line(self) -> str:
        """What follows the table: warnings, then the final receptive field."""
        return " ".join([*self._notes(), self.summary_line()])

    def to_markdown(self) -> str:
        return markdown_table(*self.table()) + "\n\n" + self.closing_line()

    def to_json(self) -> str:
        return json.dumps([asdict(r) for r in self.rows], indent=1)

    def _repr_markdown_(self) -> str:  # where a front end shows Markdown only
        return self.to_markdown()

    def _repr_html_(self) -> str:  # the table in Jupyter
        return html_table(*self.table()) + html_lines([self.closing_line()])

    def _notes(self) -> list[str]:
        return list(self.warnings)


def receptive_field(model: ModelObject, input_shape: tuple[int, int, int]) -> ReceptiveField:
    """Trace `model` (an nn.Module, or a class or builder called with its defaults) and compute
    the receptive field of every spatial layer."""
    return receptive_field_of(trace(instance_of(model), input_shape))


def receptive_field_of(graph: ModelGraph) -> ReceptiveField:
    state: dict[str, tuple[int, int]] = {}  # node -> (rf, jump)
    rows: list[RFRow] = []
    warnings = [graph.note] if graph.note else []
    for node in graph.nodes:
        if node.kind == "input":
            state[node.name] = (1, 1)
            continue
        inputs = [state[i] for i in node.inputs if i in state]
        if not inputs:
            continue  # a constant or a shape computation
        if len(inputs) > 1 and node.kind in MERGES:
            jumps = {j for _, j in inputs}
            if len(jumps) > 1:
                warnings.append(f"{node.name}: inputs with different jumps {sorted(jumps)} are "
                                "merged; rout takes the largest rf and jump")
            state[node.name] = (max(r for r, _ in inputs), max(jumps))
            continue
        rin, jin = inputs[0]
        geometry = _geometry(node, graph)
        if geometry is None:
            state[node.name] = (rin, jin)  # pointwise: activation, norm, dropout, linear, ...
            continue
        kernel, stride, padding, dilation = geometry
        rout, jout = rin + (kernel - 1) * dilation * jin, jin * stride
        state[node.name] = (rout, jout)
        source = graph.node(node.inputs[0])
        rows.append(RFRow(
            _label(node), _spatial(source), _channels(source), _channels(node), padding,
            kernel, stride, dilation, _spatial(node) if len(node.shape) == 3 else 1,
            jin, jout, rin, rout,
        ))
    final = state[graph.output.name][0] if graph.output.name in state else 1
    by_node = {name: rf for name, (rf, _) in state.items()}
    return ReceptiveField(graph.input_shape[-2], rows, final, graph.exact, warnings, by_node)


def _geometry(node: Node, graph: ModelGraph) -> tuple[int, int, int, int] | None:
    """(kernel, stride, padding, dilation) along the height, or None for pointwise ops."""
    module = node.module
    if isinstance(module, SPATIAL_MODULES):
        return tuple(_first(getattr(module, attr, 1)) for attr in
                     ("kernel_size", "stride", "padding", "dilation"))
    source = graph.node(node.inputs[0]) if node.inputs else None
    if source is None or len(source.shape) not in (2, 3):
        return None  # no spatial map comes in
    n = _spatial(source)
    if isinstance(module, ADAPTIVE_MODULES):
        out = _spatial(node)
        return math.ceil(n / out), n // out, 0, 1
    if node.kind in COLLAPSING_OPS and collapses_space(source.shape, node.shape):
        return n, n, 0, 1  # the map collapses: every output sees all of it
    return None


def _first(value: int | tuple[int, ...]) -> int:
    return value[0] if isinstance(value, tuple) else int(value)


def _spatial(node: Node) -> int:
    return node.shape[-2] if len(node.shape) >= 2 else 1


def _channels(node: Node) -> int:
    return 1 if len(node.shape) in (0, 2) else node.shape[0]  # an [H, W] map has one channel


def _label(node: Node) -> str:
    return node.target if node.module is not None else node.kind
