"""Settings that do nothing where a recipe puts them: Nesterov for Adam, a One Cycle warm-up on
a cosine schedule, a rotation for the Albumentations engine, the last epochs "un-augmented"
when that leaves none augmented. A user who sets one believes it acts; the recipe is refused
with the line that says why, instead of training without it.

Only what a user writes is judged (a recipe file, a sweep's base recipe, --set): a run folder's
config.toml records every setting, and a sweep trial may sample a value its other choices make
idle."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cnnlab.errors import ConfigError

if TYPE_CHECKING:  # config.py calls in here as it reads a recipe
    from cnnlab.config import Recipe


@dataclass(frozen=True)
class Rule:
    keys: tuple[str, ...]  # "section.key": idle unless the setting `on` passes `acts`
    on: str
    acts: Callable[[Any], bool]
    condition: str  # what `acts` asks, for the message


_FAST_ENGINE_KEYS = ("augment.rotate", "augment.translate", "augment.scale", "augment.pad_crop",
                     "augment.hflip", "augment.cutout", "augment.gray")

RULES = (
    Rule(("optim.momentum", "optim.nesterov"), "optim.name", lambda name: name == "sgd",
         'optim.name = "sgd"'),
    Rule(("schedule.max_lr", "schedule.pct_start", "schedule.div_factor",
          "schedule.final_div_factor", "schedule.anneal", "schedule.cycle_momentum",
          "schedule.hold_epochs"),
         "schedule.name", lambda name: name == "onecycle", 'schedule.name = "onecycle"'),
    Rule(("schedule.find_pick",), "schedule.max_lr", lambda peak: peak == "find",
         'schedule.max_lr = "find"'),
    Rule(("schedule.step_epochs", "schedule.gamma"), "schedule.name",
         lambda name: name == "step", 'schedule.name = "step"'),
    Rule(("schedule.min_lr",), "schedule.name", lambda name: name == "cosine",
         'schedule.name = "cosine"'),
    Rule(("train.lookahead_decay",), "train.lookahead_every", lambda every: every > 0,
         "train.lookahead_every > 0"),
    Rule(_FAST_ENGINE_KEYS, "augment.engine", lambda engine: engine == "fast",
         'augment.engine = "fast"'),
    Rule(("augment.transforms", "augment.workers"), "augment.engine",
         lambda engine: engine == "albumentations", 'augment.engine = "albumentations"'),
    Rule(("augment.pad_mode",), "augment.pad_crop", lambda pixels: pixels > 0,
         "augment.pad_crop > 0"),
    Rule(("augment.hflip_mode",), "augment.hflip", lambda p: p > 0, "augment.hflip > 0"),
    Rule(("augment.cutout_p",), "augment.cutout", lambda side: side > 0, "augment.cutout > 0"),
    Rule(("data.image_size", "data.channels"), "data.dataset", lambda name: name == "folder",
         'data.dataset = "folder"'),
)


@dataclass(frozen=True)
class Idle:
    key: str
    value: Any
    rule: Rule
    where: str = ""  # ", by_precision.fp32" when only that precision's table idles it

    def line(self, source: str) -> str:
        return (f"{source}{self.where}: {self.key} = {_shown(self.value)} does nothing unless "
                f"{self.rule.condition}: remove it, or change what it needs")


def idle_settings(recipe: Recipe) -> list[Idle]:
    """The settings, away from their defaults, that do nothing in `recipe`, with or without
    one of its `by_precision` tables applied."""
    found: dict[str, Idle] = {}
    for where, resolved in _resolutions(recipe):
        for rule in RULES:
            if not rule.acts(_value(resolved, rule.on)):
                for key in rule.keys:
                    value = _value(resolved, key)
                    if value != _default(resolved, key):
                        found.setdefault(key, Idle(key, value, rule, where))
    return list(found.values())


def refuse_idle_settings(recipe: Recipe, source: str) -> None:
    idle = idle_settings(recipe)
    if idle:
        raise ConfigError(idle[0].line(source))


TAILS = ("augment.off_last_epochs", "schedule.hold_epochs")


def tails_as_long_as_the_run(recipe: Recipe) -> list[tuple[str, Any, int, str]]:
    """augment.off_last_epochs counts the last epochs on plain images, schedule.hold_epochs
    those after the cycle: either as long as the run leaves it nothing to do. Each such tail
    as (key, value, epochs, where)."""
    found = []
    for where, resolved in _resolutions(recipe):
        epochs = resolved.train.epochs
        found += [(key, _value(resolved, key), epochs, where) for key in TAILS
                  if _value(resolved, key) >= epochs]
    return found


def refuse_tails_as_long_as_the_run(recipe: Recipe, source: str) -> None:
    """All of the run in a tail is a slip: refused with the first such tail."""
    found = tails_as_long_as_the_run(recipe)
    if not found:
        return
    key, value, epochs, where = found[0]
    what = (f"leaves none of the {epochs} epochs augmented" if key == "augment.off_last_epochs"
            else f"leaves no epoch of the {epochs} for the cycle")
    raise ConfigError(f"{source}{where}: {key} = {value} {what}: keep it below train.epochs")


def _resolutions(recipe: Recipe) -> list[tuple[str, Recipe]]:
    return [("", recipe), *((f", by_precision.{p}", recipe.for_precision(p))
                            for p in recipe.by_precision)]


def _value(recipe: Recipe, key: str) -> Any:
    section, name = key.split(".")
    return getattr(getattr(recipe, section), name)


def _default(recipe: Recipe, key: str) -> Any:
    section, name = key.split(".")
    table = type(getattr(recipe, section))()
    return getattr(table, name)


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else repr(value)
