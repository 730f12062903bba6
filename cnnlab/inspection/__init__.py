"""Inspect stage: the model's graph, its layer table, receptive field and budget checks."""

from cnnlab.inspection.graph import ModelGraph, trace
from cnnlab.inspection.model_inspection import Inspection, inspect_model
from cnnlab.inspection.receptive_field import ReceptiveField, receptive_field
from cnnlab.inspection.spec import CheckReport, Verdict, check_model
from cnnlab.inspection.summary import Summary, summary

__all__ = ["CheckReport", "Inspection", "ModelGraph", "ReceptiveField", "Summary", "Verdict",
           "check_model", "inspect_model", "receptive_field", "summary", "trace"]
