"""Inspect stage: the model's graph, its layer table, receptive field and budget checks."""

from cnnlab.inspect.graph import ModelGraph, trace
from cnnlab.inspect.inspection import Inspection, inspect_model
from cnnlab.inspect.receptive_field import ReceptiveField, receptive_field
from cnnlab.inspect.spec import CheckReport, Verdict, check_model
from cnnlab.inspect.summary import Summary, summary

__all__ = ["CheckReport", "Inspection", "ModelGraph", "ReceptiveField", "Summary", "Verdict",
           "check_model", "inspect_model", "receptive_field", "summary", "trace"]
