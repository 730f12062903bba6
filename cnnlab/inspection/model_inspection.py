"""Everything the inspect stage says about a recipe's model, from one trace of its graph: the
layer table, the receptive field, and the [spec] rules that the graph and recipe decide."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from cnnlab.config import Recipe
from cnnlab.inspection.graph import ModelGraph, trace
from cnnlab.inspection.receptive_field import ReceptiveField, receptive_field_of
from cnnlab.inspection.spec import CheckReport, check_graph
from cnnlab.inspection.summary import Summary, summary_of


@dataclass
class Inspection:
    graph: ModelGraph
    summary: Summary  # counts trainable parameters of the model as it trains
    field: ReceptiveField
    check: CheckReport  # a run adds the accuracy verdicts once it has a history


def inspect_model(recipe: Recipe, model: nn.Module, input_shape: tuple[int, int, int]
                  ) -> Inspection:
    """Trace `model` once on an input of `input_shape` (C, H, W) and derive the rest."""
    graph = trace(model, input_shape)
    field = receptive_field_of(graph)
    return Inspection(graph, summary_of(graph, model), field,
                      check_graph(recipe, model, graph, field))
