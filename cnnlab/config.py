"""Recipes: TOML files turned into frozen dataclasses.

A recipe states everything a run needs. Unknown keys and wrong types are errors that name the
key, so a typo never silently falls back to a default. `--set a.b=value` overrides any key.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from cnnlab.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mnist"  # mnist | cifar10
    batch_size: int = 128
    # Small enough for the activations to stay in a CPU's cache: 256 evaluated 2.5-2.9x
    # faster than 2000 here, 128 a further 1.14x (benchmarks/cpu_tunings.py); a GPU recipe
    # may want more.
    eval_batch_size: int = 128
    train_limit: int = 0  # use only the first N training images (0 = all); for smoke runs
    test_limit: int = 0  # use only the first N test images (0 = all)


@dataclass(frozen=True)
class AugmentConfig:
    engine: str = "fast"  # fast: batched tensor ops on the device | albumentations: per sample
    rotate: float = 0.0  # max rotation in degrees, uniform in [-rotate, rotate] per image
    translate: float = 0.0  # max shift in pixels along each axis (sub-pixel), per image
    scale: float = 0.0  # max zoom change: scale uniform in [1 - scale, 1 + scale] per image
    pad_crop: int = 0  # pad by N pixels, then crop a random window back to size
    pad_mode: str = "zeros"  # zeros | reflect, for pad_crop
    hflip: float = 0.0  # probability of a horizontal flip per image
    hflip_mode: str = "random"  # random | alternate: each image flipped every other epoch
    cutout: int = 0  # side of a square hole (filled with 0) placed inside each image
    cutout_p: float = 1.0  # probability that an image gets the hole
    gray: float = 0.0  # probability of turning an image to grey (3-channel images)
    # albumentations engine: [[augment.transforms]] tables, name = "HorizontalFlip", p = 0.5
    transforms: list[dict] = field(default_factory=list)
    workers: int = 2  # DataLoader worker processes for the albumentations engine


@dataclass(frozen=True)
class ModelConfig:
    name: str = "mnist_s5"  # registry name, `path/to/file.py:function` or `package.module:function`
    args: dict = field(default_factory=dict)  # keyword arguments for the model builder


@dataclass(frozen=True)
class OptimConfig:
    name: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.01
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: float = 0.0


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "constant"  # constant | onecycle | step | cosine; all stepped once per batch
    max_lr: float | str = 0.0  # onecycle peak; 0 means optim.lr; "find": LR range test first
    # Which range-test suggestion "find" takes. valley (a tenth of the lowest loss's lr) by
    # default: on S10 the steepest descent said 5.6e-5, valley 2.2e-3 (BENCHMARKS.md).
    find_pick: str = "valley"  # valley | steepest
    pct_start: float = 0.25  # onecycle: share of the steps spent warming up
    div_factor: float = 25.0  # onecycle: start lr = max_lr / div_factor
    final_div_factor: float = 1e4  # onecycle: final lr = start lr / final_div_factor
    step_epochs: int = 10  # step: multiply lr by gamma every step_epochs epochs
    gamma: float = 0.1
    min_lr: float = 0.0  # cosine: lr at the last step


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    seed: int = 0
    label_smoothing: float = 0.0
    ema_decay: float = 0.0  # 0 = off; else evaluate an exponential moving average of the weights
    device: str = "auto"  # auto | cpu | cuda
    channels_last: bool = True  # CPU: 1.3x mnist_s5, 1.1x cifar_s9, 1.0x mnist_fast (BENCHMARKS.md)
    amp: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU | bf16 | off
    compile: bool = False  # torch.compile the model for training (pays a compile up front)
    tta: str = "none"  # test-time augmentation: none | flip | flip_shift (train/tta.py)


@dataclass(frozen=True)
class SpecConfig:
    """The assignment's budget. Checked by the inspect stage; empty means no rule."""

    max_params: int | None = None
    max_epochs: int | None = None
    min_rf: int | None = None
    min_test_acc: float | None = None  # percent
    last_epochs: int = 1  # min_test_acc must hold in each of the last N epochs
    require: list[str] = field(default_factory=list)
    forbid: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str = ""
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    spec: SpecConfig = field(default_factory=SpecConfig)

    def to_dict(self) -> dict[str, Any]:
        return _drop_none(dataclasses.asdict(self))

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


CHOICES = {
    "data.dataset": ("mnist", "cifar10"),
    "augment.engine": ("fast", "albumentations"),
    "augment.pad_mode": ("zeros", "reflect"),
    "augment.hflip_mode": ("random", "alternate"),
    "optim.name": ("sgd", "adam", "adamw"),
    "schedule.name": ("constant", "onecycle", "step", "cosine"),
    "schedule.find_pick": ("valley", "steepest"),
    "train.device": ("auto", "cpu", "cuda"),
    "train.amp": ("auto", "bf16", "off"),
    "train.tta": ("none", "flip", "flip_shift"),
}


def builtin_recipes() -> list[str]:
    """Names of the recipes that ship with cnnlab."""
    folder = resources.files("cnnlab.recipes")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.suffix == ".toml")


def load_recipe(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a built-in recipe by name, or a TOML file by path, and apply `key=value` overrides."""
    text, source = _recipe_text(str(name_or_path))
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from None
    raw.setdefault("name", Path(source).stem)
    for override in overrides:
        _apply_override(raw, override)
    return parse_recipe(raw, source)


def parse_recipe(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    recipe = _build(Recipe, raw, "", source)
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(recipe, section), name)
        if value not in allowed:
            raise ConfigError(f"{source}: {key} = {value!r} is not one of {', '.join(allowed)}")
    if isinstance(recipe.schedule.max_lr, str) and recipe.schedule.max_lr != "find":
        raise ConfigError(f"{source}: schedule.max_lr must be a number or \"find\"")
    return recipe


def _recipe_text(name_or_path: str) -> tuple[str, str]:
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"recipe file {path} not found")
        return path.read_text(encoding="utf-8"), str(path)
    names = builtin_recipes()
    if name_or_path not in names:
        raise ConfigError(
            f"unknown recipe {name_or_path!r}: use one of {', '.join(names)} "
            "or a path to a .toml file"
        )
    resource = resources.files("cnnlab.recipes") / f"{name_or_path}.toml"
    return resource.read_text(encoding="utf-8"), name_or_path


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {override!r}: write it as section.key=value, e.g. train.epochs=3")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text  # bare words are strings: --set model.name=mnist_s4
    *parents, leaf = key.split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part} is not a section")
    node[leaf] = value


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.')} must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            raise ConfigError(
                f"{source}: unknown key {prefix}{key} (known: {', '.join(sorted(names))})"
            )
    values = {}
    for key, value in raw.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = _build(hint, value, f"{prefix}{key}.", source)
        else:
            values[key] = _check_type(value, hint, f"{prefix}{key}", source)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{source}: missing key {prefix}{missing[0]}")
    return cls(**values)


def _check_type(value: Any, hint: Any, key: str, source: str) -> Any:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is type(None):
            continue
        origin = typing.get_origin(option) or option
        if origin is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin is list and isinstance(value, list):
            (item,) = typing.get_args(option)
            if all(isinstance(v, item) for v in value):
                return list(value)
        if origin in (str, bool, dict) and isinstance(value, origin):
            return value
    wanted = " or ".join(getattr(o, "__name__", str(o)) for o in options if o is not type(None))
    raise ConfigError(f"{source}: {key} must be {wanted}, got {value!r}")


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value
