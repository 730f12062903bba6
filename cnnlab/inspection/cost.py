"""What a model costs a device per image, read off its graph before any training: the
multiply-adds of its convolutions and linear layers (the time), the peak of activation
memory (what a microcontroller's RAM must hold while the image passes through), and, for the
model quantized to int8, the bytes of flash its parameters take and of RAM its activations
take."""

from __future__ import annotations

import math

from torch import nn

from cnnlab.inspection.graph import ModelGraph, Node

BYTES_PER_VALUE = 4  # fp32 activations; an int8-quantised model needs a quarter


def mult_adds(node: Node) -> int:
    """Multiply-adds of one call for one image: a conv's k*k*(cin/groups) per output value,
    a linear layer's in_features per output value; everything else counts 0."""
    module = node.module
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return math.prod(node.shape) * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return math.prod(node.shape) * module.in_features
    return 0


def total_mult_adds(graph: ModelGraph) -> int:
    return sum(mult_adds(node) for node in graph.nodes)


INT8_CHANNEL_BYTES = 8  # per output channel: an int32 bias and a float32 scale


def int8_flash_bytes(graph: ModelGraph) -> int:
    """The parameters of the int8 model: int8 weights of each convolution and linear layer,
    with an int32 bias and a float32 scale per output channel; a BatchNorm right after one is
    folded into it (0 bytes), any other becomes a per-channel scale and shift (8 bytes a
    channel). A layer called twice keeps one copy of its weights."""
    kinds = {node.name: node.module for node in graph.nodes}
    total = 0
    for node in graph.nodes:
        module = node.module
        # a layer's weights belong to its first call (node.params; 0 on a later call)
        if isinstance(module, nn.Conv2d | nn.Linear) and node.params:
            channels = module.out_channels if isinstance(module, nn.Conv2d) else \
                module.out_features
            total += module.weight.numel() + channels * INT8_CHANNEL_BYTES
        elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            folded = any(isinstance(kinds.get(source), nn.Conv2d | nn.Linear)
                         for source in node.inputs)
            total += 0 if folded else module.num_features * INT8_CHANNEL_BYTES
    return total


ARENA_ALIGNMENT = 16  # bytes: TFLite Micro aligns each buffer of its arena to this
# Calls that make no tensor of their own on a microcontroller runtime: they pass the one they
# read on (dropout and identity at inference, a reshape that only relabels the same bytes).
_PASS_THROUGH = {"Dropout", "Dropout2d", "Identity", "flatten", "view", "reshape", "Flatten"}
_ACTIVATIONS = {"ReLU", "ReLU6", "relu", "relu6"}
# Element-wise ops that, like a convolution, carry a fused activation in TFLite (ADD's RELU)
_FUSING_SUMS = {"add", "iadd", "sub", "mul"}


def int8_ram_bytes(graph: ModelGraph) -> int:
    """The activation arena of the int8 model as TFLite Micro lays it out for one image, after
    `cnnlab export --tflite`'s conversion: the input and each operation's output, after the
    fusions a converter makes (a BatchNorm right after a convolution or linear layer folds into
    it, and a ReLU after either fuses with it; any other BatchNorm becomes a multiply then an
    add, two tensors; dropout, identity and reshapes pass their input on; a convolution padded
    other than TensorFlow's "same" or "valid" pads its input first, a tensor of its own), each
    alive from the operation that writes it to the last that reads it, placed by the runtime's
    greedy planner: largest first, equal sizes the last made first, each at the lowest
    16-byte-aligned offset clear of the buffers alive beside it."""
    owner: dict[str, str] = {}  # node -> the tensor that holds its output
    tail: dict[str, str] = {}  # tensor -> its last op: "layer", "folded", "sum", "other"
    lives: dict[str, list[int]] = {}  # tensor -> [first, last] step (three steps per node)
    sizes: dict[str, int] = {}  # in the order the converted model makes them
    for index, node in enumerate(graph.nodes):
        step = 3 * index + 1  # step - 1: a pad before the node; step + 1: a BatchNorm's add
        source = owner.get(node.inputs[0]) if len(node.inputs) == 1 else None
        padded = _explicit_pad(node, graph)
        for name in node.inputs:
            lives[owner[name]][1] = max(lives[owner[name]][1], step - 1 if padded else step)
        state = tail.get(source)
        if source is not None and (
                node.kind in _PASS_THROUGH
                or node.kind.startswith("BatchNorm") and state == "layer"
                or node.kind in _ACTIVATIONS and state in ("layer", "folded", "sum")):
            owner[node.name] = source
            tail[source] = state if node.kind in _PASS_THROUGH else \
                "folded" if node.kind.startswith("BatchNorm") else "other"
            continue
        if padded:
            pad = f"{node.name}/padded"
            sizes[pad], lives[pad] = padded, [step - 1, step]
        owner[node.name] = node.name
        tail[node.name] = ("layer" if node.kind in ("Conv2d", "Linear") else
                           "sum" if node.kind in _FUSING_SUMS else "other")
        if node.kind.startswith("BatchNorm"):  # multiply, then add: the product lives between
            product = f"{node.name}/scaled"
            sizes[product], lives[product] = math.prod(node.shape), [step, step + 1]
            sizes[node.name], lives[node.name] = math.prod(node.shape), [step + 1, step + 1]
        else:
            sizes[node.name], lives[node.name] = math.prod(node.shape), [step, step]
    # TFLite Micro lists its buffers from the last, then sorts them by size, keeping ties
    made_last_first = list(reversed(sizes))
    placed: list[tuple[int, int, int, int]] = []  # offset, size, first, last
    for tensor in sorted(made_last_first, key=lambda t: -sizes[t]):
        size, (start, end) = sizes[tensor], lives[tensor]
        beside = sorted((o, n) for o, n, f, la in placed if f <= end and start <= la)
        offset = 0
        for other_offset, other_size in beside:
            if offset + size <= other_offset:
                break
            offset = max(offset, _aligned(other_offset + other_size))
        placed.append((offset, size, start, end))
    return max((o + n for o, n, _, _ in placed), default=0)


def _explicit_pad(node: Node, graph: ModelGraph) -> int:
    """The bytes of the padded input a convolution reads after conversion, or 0: TensorFlow
    pads "same" as (total // 2, the rest), so PyTorch's symmetric padding of a strided
    convolution on an even map (1 on each side; "same" would be 0 and 1) becomes a PAD op and
    an unpadded convolution, as does any padding that is neither."""
    conv = node.module
    if not isinstance(conv, nn.Conv2d) or isinstance(conv.padding, str) or not any(conv.padding):
        return 0
    channels, *spatial = graph.node(node.inputs[0]).shape
    for size, pad, kernel, stride, dilation in zip(spatial, conv.padding, conv.kernel_size,
                                                   conv.stride, conv.dilation, strict=True):
        reach = dilation * (kernel - 1) + 1
        total = max((-(-size // stride) - 1) * stride + reach - size, 0)
        if conv.padding_mode != "zeros" or (pad, pad) != (total // 2, total - total // 2):
            return channels * math.prod(s + 2 * p for s, p in zip(spatial, conv.padding,
                                                                   strict=True))
    return 0


def _aligned(offset: int) -> int:
    return -(-offset // ARENA_ALIGNMENT) * ARENA_ALIGNMENT


def peak_activation_bytes(graph: ModelGraph, bytes_per_value: int = BYTES_PER_VALUE) -> int:
    """The most activation memory alive at once for one image: at each operation, its output
    and every earlier tensor a later operation still reads (a residual's input, a branch's
    maps), with no operation working in place."""
    last_read = {}
    for index, node in enumerate(graph.nodes):
        for source in node.inputs:
            last_read[source] = index
    alive: dict[str, int] = {}
    peak = 0
    for index, node in enumerate(graph.nodes):
        alive[node.name] = math.prod(node.shape) * bytes_per_value
        peak = max(peak, sum(alive.values()))
        for name in list(alive):  # free what no later operation reads
            if last_read.get(name, -1) <= index and name != graph.output.name:
                del alive[name]
    return peak
