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
    channel)."""
    kinds = {node.name: node.module for node in graph.nodes}
    total = 0
    for node in graph.nodes:
        module = node.module
        if isinstance(module, nn.Conv2d | nn.Linear):
            channels = module.out_channels if isinstance(module, nn.Conv2d) else \
                module.out_features
            total += module.weight.numel() + channels * INT8_CHANNEL_BYTES
        elif isinstance(module, nn.BatchNorm2d | nn.BatchNorm1d):
            folded = any(isinstance(kinds.get(source), nn.Conv2d | nn.Linear)
                         for source in node.inputs)
            total += 0 if folded else module.num_features * INT8_CHANNEL_BYTES
    return total


def int8_ram_bytes(graph: ModelGraph) -> int:
    """The activation memory of the int8 model: `peak_activation_bytes` at one byte a value."""
    return peak_activation_bytes(graph, bytes_per_value=1)


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
