"""What an LR range test found, as a run folder keeps it in lr_find.json: the learning rates
tried, the smoothed losses, and the three suggestions (training/range_test.py says how each is
found)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from cnnlab.config import LRPick


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]  # smoothed, bias-corrected
    minimum: float  # a tenth of the lr with the lowest smoothed loss
    valley: float  # halfway along the longest descent of the smoothed loss
    steepest: float  # lr where the smoothed loss falls fastest (per log-lr)
    diverged: bool  # the sweep stopped early because the loss blew up

    @property
    def open_ended(self) -> bool:
        """The loss was still falling fastest at the end of a sweep that never diverged: the
        test found no upper limit, and the suggestions are only the sweep's end."""
        return not self.diverged and self.steepest >= self.lrs[-len(self.lrs) // 10]

    def pick(self, which: LRPick) -> float:
        """The suggestion named `which` (`schedule.find_pick`, which the recipe checked)."""
        return getattr(self, which)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    def summary_line(self) -> str:
        line = (f"suggested max lr: {self.minimum:.3g} (minimum), {self.valley:.3g} (valley), "
                f"{self.steepest:.3g} (steepest descent); {len(self.lrs)} steps"
                + (", stopped when the loss diverged" if self.diverged else ""))
        if self.open_ended:
            line += ("; warning: the loss was still falling at the end of the sweep, so these "
                     "are not limits: raise --end or --steps")
        return line

