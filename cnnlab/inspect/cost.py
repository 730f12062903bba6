"""What a model costs a device per image, read off its graph before any training: the
multiply-adds of its convolutions and linear layers (the time), and the peak of activation
memory (what a microcontroller's RAM must hold while the image passes through)."""

from __future__ import annotations

import math

from torch import nn

from cnnlab.inspect.graph import ModelGraph, Node

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


def peak_activation_bytes(graph: ModelGraph) -> int:
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
        alive[node.name] = math.prod(node.shape) * BYTES_PER_VALUE
        peak = max(peak, sum(alive.values()))
        for name in list(alive):  # free what no later operation reads
            if last_read.get(name, -1) <= index and name != graph.output.name:
                del alive[name]
    return peak
