"""Design stage: search the `compact_cnn` family for the smallest network that meets a budget
and a target, then confirm the pick on fresh seeds (design.py)."""

from cnnlab.design.design import DesignResult, design

__all__ = ["DesignResult", "design"]
