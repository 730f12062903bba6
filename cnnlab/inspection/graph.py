"""One traversal of a model: the graph of tensor operations with their output shapes.

torch.fx traces the model symbolically, so branches, `cat` and residual `+` are real edges;
a forward pass on a dummy input fills in every shape. Models fx cannot trace fall back to
forward hooks on the leaf modules, which see execution order but not the wiring: that graph
is marked approximate (treated as a chain).
"""

from __future__ import annotations

import contextlib
import io
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from cnnlab.errors import ModelError
from cnnlab.models.parameters import count_parameters

# Functions and methods that get a name of their own in the graph; anything else is named
# after its target.
_OP_NAMES = {
    operator.add: "add", operator.iadd: "add", torch.add: "add",
    operator.mul: "mul", operator.imul: "mul", torch.mul: "mul",
    torch.cat: "cat", torch.concat: "cat", torch.flatten: "flatten", torch.mean: "mean",
}


@dataclass
class Node:
    """One tensor operation: a leaf module call, a function (`cat`, `add`) or a method."""

    name: str  # fx node name, unique
    kind: str  # module class name (`Conv2d`) or op name (`cat`, `add`, `flatten`, `mean`)
    inputs: list[str]  # names of the nodes whose tensors flow in
    shape: tuple[int, ...]  # output shape without the batch dimension
    module: nn.Module | None = None
    target: str = ""  # qualified module name, or the op's target
    params: int = 0  # parameters owned by this call (counted at a module's first call only)

    @property
    def is_module(self) -> bool:
        return self.module is not None


def collapses_space(source: tuple[int, ...], out: tuple[int, ...]) -> bool:
    """Does an op take a [C, H, W] map (H*W > 1) to per-channel values or a flat vector? A
    mean over channels, which keeps H and W, does not. An [H, W] map counts as C = 1."""
    source = (1, *source) if len(source) == 2 else source
    out = (1, *out) if len(out) == 2 else out
    if len(source) != 3 or source[1] * source[2] == 1:
        return False
    if len(out) == 3:
        return out[0] == source[0] and out[1:] == (1, 1)
    return len(out) == 1 and out[0] in (source[0], source[0] * source[1] * source[2])


@dataclass
class ModelGraph:
    input_shape: tuple[int, ...]
    nodes: list[Node]  # in execution order; the first is the input
    exact: bool  # False when traced by hooks: the wiring is assumed to be a chain
    note: str = ""  # why the graph is approximate

    def node(self, name: str) -> Node:
        return self._by_name[name]

    def __post_init__(self) -> None:
        self._by_name = {n.name: n for n in self.nodes}

    @property
    def output(self) -> Node:
        return self.nodes[-1]


def trace(model: nn.Module, input_shape: tuple[int, ...]) -> ModelGraph:
    """The graph of `model` for inputs of `input_shape` (C, H, W), shapes filled in."""
    was_training = model.training
    model.eval()  # BatchNorm and Dropout behave, and no running statistics change
    try:
        try:
            graph_module = fx.symbolic_trace(model)
        except Exception as exc:  # fx raises many types on dynamic control flow
            return _trace_with_hooks(model, input_shape, f"{type(exc).__name__}: {exc}")
        return _from_fx(model, graph_module, input_shape)
    finally:
        model.train(was_training)


def _dummy(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else "cpu"
    # Random so no path is all-zero; its own generator so the global RNG stays untouched.
    return torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)


@contextlib.contextmanager
def _forward_errors(input_shape: tuple[int, ...]) -> Iterator[None]:
    """A forward pass that fails on this input becomes one ModelError with the real cause (fx
    wraps it, and prints its own traceback, which is swallowed here)."""
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    except RuntimeError as exc:  # shape mismatches surface as RuntimeError
        where = ""
        match = re.search(r"target=([\w.]+)", str(exc))
        if match:
            where = f" at {match.group(1)}"
        while exc.__cause__ is not None:
            exc = exc.__cause__
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"the model cannot take an input of shape {tuple(input_shape)}{where}: "
                         f"{first}; give the right one with --input C,H,W (or, for a recipe, "
                         "data.image_size)") from None


def _from_fx(model: nn.Module, gm: fx.GraphModule, input_shape: tuple[int, ...]) -> ModelGraph:
    with torch.no_grad(), _forward_errors(input_shape):
        ShapeProp(gm).propagate(_dummy(model, input_shape))
    modules = dict(model.named_modules())
    counted: set[int] = set()
    nodes: list[Node] = []
    for fx_node in gm.graph.nodes:
        if fx_node.op == "output":
            continue
        meta = fx_node.meta.get("tensor_meta")
        if not hasattr(meta, "shape"):
            continue  # not a single tensor (sizes, tuples): no row, no edge
        inputs = [a.name for a in fx_node.all_input_nodes if a.name in _names(nodes)]
        shape = tuple(meta.shape[1:])
        if fx_node.op == "placeholder":
            nodes.append(Node(fx_node.name, "input", [], shape, target="input"))
        elif fx_node.op == "call_module":
            module = modules[fx_node.target]
            params = 0
            if id(module) not in counted:  # a module called twice owns its weights once
                counted.add(id(module))
                params = count_parameters(module)
            nodes.append(Node(fx_node.name, type(module).__name__, inputs, shape, module,
                              fx_node.target, params))
        elif fx_node.op in ("call_function", "call_method"):
            kind = _op_name(fx_node)
            nodes.append(Node(fx_node.name, kind, inputs, shape, target=str(fx_node.target)))
        elif fx_node.op == "get_attr":
            continue  # a parameter or buffer used directly: not an activation
    return ModelGraph(tuple(input_shape), nodes, exact=True)


def _names(nodes: list[Node]) -> set[str]:
    return {n.name for n in nodes}


def _op_name(fx_node: fx.Node) -> str:
    if fx_node.op == "call_method":
        return {"flatten": "flatten", "view": "view", "reshape": "reshape", "mean": "mean",
                "add": "add", "mul": "mul"}.get(fx_node.target, str(fx_node.target))
    target = fx_node.target
    if target in _OP_NAMES:
        return _OP_NAMES[target]
    return getattr(target, "__name__", str(target))


def _trace_with_hooks(model: nn.Module, input_shape: tuple[int, ...], reason: str) -> ModelGraph:
    nodes = [Node("input", "input", [], tuple(input_shape), target="input")]
    counted: set[int] = set()
    names = {module: name for name, module in model.named_modules()}

    def record(module: nn.Module, _inputs: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor):
            return
        params = 0
        if id(module) not in counted:
            counted.add(id(module))
            params = count_parameters(module)
        name = f"{names[module] or 'model'}_{len(nodes)}"
        nodes.append(Node(name, type(module).__name__, [nodes[-1].name],
                          tuple(output.shape[1:]), module, names[module], params))

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        with torch.no_grad(), _forward_errors(input_shape):
            model(_dummy(model, input_shape))
    finally:
        for handle in handles:
            handle.remove()
    note = f"approximate: torch.fx could not trace the model ({reason}); wiring assumed a chain"
    return ModelGraph(tuple(input_shape), nodes, exact=False, note=note)
