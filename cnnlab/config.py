"""Recipes: TOML files turned into frozen dataclasses.

A recipe states everything a run needs. Unknown keys, wrong types, values outside a field's
choices (`Literal`) or range (`Annotated[..., Range(...)]`) are errors that name the key, so a
typo never silently falls back to a default. `--set a.b=value` overrides any key.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w

from cnnlab.errors import ConfigError
from cnnlab.inert_settings import (
    idle_settings,
    refuse_idle_settings,
    refuse_tails_as_long_as_the_run,
    tails_as_long_as_the_run,
)


@dataclass(frozen=True)
class Range:
    """The values a numeric field accepts: low <= value (or < when `open_low`) <= high (or <)."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def admits(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'above' if self.open_low else 'at least'} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'below' if self.open_high else 'at most'} {self.high:g}")
        return " and ".join(parts)


Count = Annotated[int, Range(low=1)]  # sizes, epochs, limits
# No recipe trains this long; a bound keeps a stranger's config.toml from making the report
# replay a schedule without end.
MAX_EPOCHS = 10_000
NonNegativeInt = Annotated[int, Range(low=0)]
NonNegative = Annotated[float, Range(low=0)]
Positive = Annotated[float, Range(low=0, open_low=True)]  # rates, factors
Probability = Annotated[float, Range(0, 1)]
Fraction = Annotated[float, Range(0, 1, open_high=True)]  # a share that must leave something
Percent = Annotated[float, Range(0, 100, open_low=True)]  # an accuracy to reach

# the named datasets (data/catalog.py), then a user's own: arrays in an .npz, folders of images
DatasetName = Literal["mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "svhn", "npz",
                      "folder"]
USER_DATASETS = ("npz", "folder")
TTAMode = Literal["none", "flip", "flip_shift", "shift"]  # train/tta.py
LRPick = Literal["minimum", "valley", "steepest"]  # training/range_test.py
AmpMode = Literal["auto", "bf16", "fp16", "off"]  # train/precision.py
Precision = Literal["fp32", "bf16", "fp16"]  # what train.amp resolves to on a device


@dataclass(frozen=True)
class DataConfig:
    dataset: DatasetName = "mnist"
    path: str | None = None  # npz: the .npz file; folder: the folder holding train/ and test/
    image_size: Count | None = None  # folder: resize every image to this square size
    channels: Literal[1, 3] | None = None  # folder: grey or RGB (default: what the images are)
    # What a run on npz or folder data trained on, recorded in its config.toml by the run
    # (mean and std per channel in [0, 1] units, from the training split; fingerprint: md5 of
    # the images and labels). A run folder whose data changed since is refused.
    classes: list[str] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None
    fingerprint: str | None = None
    batch_size: Count = 128
    # Test batches: small enough for the activations to stay in a CPU's cache (BENCHMARKS.md,
    # CPU tunings); a GPU recipe may want more.
    eval_batch_size: Count = 128
    train_limit: Count | None = None  # use only the first N training images; for smoke runs
    test_limit: Count | None = None  # use only the first N test images
    # Hold N training images out as a validation split (a fixed random draw, made after
    # train_limit): each epoch reports val_acc beside test_acc. Sweeps steer by it.
    val_split: Count | None = None


@dataclass(frozen=True)
class AugmentConfig:
    # fast: batched tensor ops on the device | albumentations: per sample, in worker processes
    engine: Literal["fast", "albumentations"] = "fast"
    rotate: Annotated[float, Range(0, 180)] = 0.0  # max rotation in degrees, U(-rotate, rotate)
    translate: NonNegative = 0.0  # max shift in pixels along each axis (sub-pixel), per image
    scale: Fraction = 0.0  # max zoom change: scale uniform in [1 - scale, 1 + scale] per image
    pad_crop: NonNegativeInt = 0  # pad by N pixels, then crop a random window back to size
    pad_mode: Literal["zeros", "reflect"] = "zeros"  # how pad_crop fills the border
    hflip: Probability = 0.0  # probability of a horizontal flip per image
    # random: each image flipped with probability hflip | alternate: every other epoch
    hflip_mode: Literal["random", "alternate"] = "random"
    cutout: NonNegativeInt = 0  # side in pixels of a square hole (filled with 0) in each image
    cutout_p: Probability = 1.0  # probability that an image gets the hole
    gray: Probability = 0.0  # probability of turning an image to grey (3-channel images)
    # albumentations engine: [[augment.transforms]] tables, name = "HorizontalFlip", p = 0.5
    transforms: list[dict] = field(default_factory=list)
    workers: NonNegativeInt = 2  # DataLoader worker processes for the albumentations engine
    # The last N epochs train on the images as they are: a net too small to fit the augmented
    # images fits the test split's kind while the rate is low.
    off_last_epochs: NonNegativeInt = 0


@dataclass(frozen=True)
class ModelConfig:
    name: str = "mnist_s5"  # registry name, `path/to/file.py:function` or `package.module:function`
    args: dict = field(default_factory=dict)  # keyword arguments for the model builder
    # Recorded by a run in its config.toml, never written by hand: for a model from a file, the
    # sha256 of the source copied into the run folder (model_source.py), which every later
    # verb builds from; for one from an installed module, "distribution==version".
    source_sha256: str | None = None
    package: str | None = None


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: Positive = 0.01
    momentum: Fraction = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: NonNegative = 0.0
    # BatchNorm shifts train at lr x this, with weight decay / this (the same decay per step):
    # a handful of parameters that set each channel's operating point, cheap to move fast
    bn_bias_lr_scale: Positive = 1.0


@dataclass(frozen=True)
class ScheduleConfig:
    # every schedule steps once per batch
    name: Literal["constant", "onecycle", "step", "cosine"] = "constant"
    # onecycle peak; unset: optim.lr; "find": an LR range test picks it (find_pick) first
    max_lr: Positive | Literal["find"] | None = None
    # which range-test suggestion "find" takes: minimum (a tenth of the lr at the lowest
    # loss), valley (the middle of the longest descent) or steepest (fastest descent)
    find_pick: LRPick = "minimum"
    # onecycle: share of the steps spent warming up
    pct_start: Annotated[float, Range(0, 1, open_low=True, open_high=True)] = 0.25
    div_factor: Positive = 25.0  # onecycle: start lr = max_lr / div_factor
    final_div_factor: Positive = 1e4  # onecycle: final lr = start lr / final_div_factor
    anneal: Literal["cos", "linear"] = "cos"  # onecycle: the curve between those three points
    # onecycle: the cycle ends this many epochs before the run, which trains on at its final
    # rate: the epochs a rule judges (the last few) then evaluate one settled model rather
    # than one still annealing
    hold_epochs: NonNegativeInt = 0
    # onecycle: momentum falls to 0.85 as the lr rises, and back to 0.95 (torch's default);
    # false keeps optim.momentum throughout
    cycle_momentum: bool = True
    step_epochs: Count = 10  # step: multiply lr by gamma every step_epochs epochs
    gamma: Positive = 0.1
    min_lr: NonNegative = 0.0  # cosine: lr at the last step


@dataclass(frozen=True)
class TrainConfig:
    epochs: Annotated[int, Range(low=1, high=MAX_EPOCHS)] = 20
    seed: NonNegativeInt = 0
    label_smoothing: Fraction = 0.0
    ema_decay: Fraction = 0.0  # 0 = off; else evaluate an exponential moving average of the weights
    # Lookahead (train/lookahead.py): every N steps, pull the weights to their slow average by
    # decay^N x progress^3; 0 = off
    lookahead_every: NonNegativeInt = 0
    lookahead_decay: Fraction = 0.95
    # A patch-whitening first layer (models/cifar_speed.py) trains its bias only in the first N
    # epochs, then holds it: the rest of the net adapts to a fixed input; unset = throughout
    whitening_bias_epochs: Count | None = None
    # The last N epochs simulate the int8 model `cnnlab export --int8` writes (training/qat.py):
    # quantization-aware training, for nets whose int8 export loses accuracy; unset = off
    qat_epochs: Count | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    channels_last: bool = True  # NHWC activations: faster convolutions for most models
    # auto: bf16 autocast where the device has bf16 units (Ampere+ GPUs; CPUs with AVX512-BF16
    # or AMX where bf16 was timed faster, training/precision.py), fp16 with a gradient scaler on
    # older GPUs, fp32 on other CPUs
    amp: AmpMode = "auto"
    compile: bool = False  # torch.compile the model for training (pays a compile up front)
    tta: TTAMode = "none"  # test-time augmentation (train/tta.py)
    tensorboard: bool = False  # also log to runs/<run>/tb/ (pip install 'cnnlab[tensorboard]')


@dataclass(frozen=True)
class SpecConfig:
    """The assignment's budget. Checked by the inspect stage; empty means no rule."""

    max_params: Count | None = None
    max_epochs: Count | None = None
    max_mult_adds: Count | None = None  # per image: convolutions and linear layers
    max_activation_bytes: Count | None = None  # peak for one image, fp32 (inspect/cost.py)
    # the model quantized to int8 (cnnlab export --int8), as a microcontroller holds it:
    max_flash_bytes: Count | None = None  # int8 weights, int32 biases, scales (cost.py)
    max_ram_bytes: Count | None = None  # int8 activation arena, one image (cost.py)
    min_int8_acc: Annotated[float, Range(0, 100)] | None = None  # test %, of the int8 model
    min_rf: Count | None = None
    min_test_acc: Annotated[float, Range(0, 100)] | None = None  # percent
    last_epochs: Count = 1  # min_test_acc must hold in each of the last N epochs
    require: list[str] = field(default_factory=list)  # layer features: cnnlab/inspection/spec.py
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
    # Settings whose best value depends on the precision the run trains in (train.amp on its
    # device): `[by_precision.fp32]` then `train.channels_last = true`. A run applies its
    # precision's table as it starts and records the settings it trained with.
    by_precision: dict = field(default_factory=dict)

    def for_precision(self, precision: Precision, source: str | None = None) -> Recipe:
        """This recipe as a run in `precision` trains it: that precision's settings applied,
        the table dropped."""
        table = self.by_precision.get(precision, {})
        return self.with_values({"by_precision": None, **dict(leaves(table))},
                                f"{source or self.name}, by_precision.{precision}")

    def with_values(self, values: dict[str, Any], source: str | None = None) -> Recipe:
        """This recipe with `values` set, checked as a recipe file is: the one way to derive a
        recipe. Keys are dotted (`schedule.max_lr`); a number indexes a list the recipe holds
        (`model.args.widths.1`); a table replaces the whole table; None removes the key (its
        default applies)."""
        raw = self.to_dict()
        for key, value in values.items():
            set_dotted(raw, key, value)
        return parse_recipe(raw, source or self.name)

    def to_dict(self) -> dict[str, Any]:
        raw = _drop_none(dataclasses.asdict(self))
        if not raw["by_precision"]:
            del raw["by_precision"]  # a resolved recipe, as a run folder records it
        return raw

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


def choices(hint: Any) -> tuple[Any, ...]:
    """The values a `Literal` type (such as `TTAMode`) admits."""
    return typing.get_args(hint)


def builtin_recipes() -> list[str]:
    """Names of the recipes that ship with cnnlab."""
    folder = resources.files("cnnlab.recipes")
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.suffix == ".toml")


def load_recipe(name_or_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """Read a built-in recipe by name, or a TOML file by path, and apply `key=value` overrides."""
    text, source = _recipe_text(str(name_or_path))
    raw = read_toml(text, source)
    # A file's name stands in for a missing `name`, made fit to name a folder.
    raw.setdefault("name", re.sub(r"[^A-Za-z0-9._-]+", "-", Path(source).stem).lstrip(".-")
                   or "recipe")
    return recipe_from_table(raw, overrides, source)


def recipe_beside(reference: str, file: Path) -> str:
    """A recipe named in `file` (a sweep or design file): a built-in name as it is, a file
    found beside `file` by its full path (so a copy elsewhere still finds it), anything else
    as written (from the working folder)."""
    beside = file.parent / reference
    if reference not in builtin_recipes() and beside.is_file():
        return str(beside.resolve())
    return reference


MAX_TOML_NESTING = 32  # a recipe nests 3 tables deep; deeper only exhausts the parser's recursion


def nesting(text: str) -> int:
    """How deep `text`'s brackets ([ and {) nest, strings included: a bound checked before a
    recursive parser (TOML's, JSON's) meets them."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest


def read_toml(text: str, source: str | Path, error: type[Exception] = ConfigError
              ) -> dict[str, Any]:
    """The one TOML reader of recipes, sweep and design files and run folders: a file that is
    not TOML, or nests brackets deeper than MAX_TOML_NESTING (counted before parsing, strings
    included), is `error` naming `source`."""
    if nesting(text) > MAX_TOML_NESTING:
        raise error(f"{source} nests more than {MAX_TOML_NESTING} levels deep: it is not a "
                    "recipe")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source} is not valid TOML: {exc}") from None


def recipe_from_table(raw: dict[str, Any], overrides: list[str] | tuple[str, ...] = (),
                      source: str = "recipe") -> Recipe:
    """A recipe from parsed TOML, after `key=value` overrides (as `--set` takes them).

    An override that names another model drops the recipe's `model.args`: they were written
    for the model it replaces (new ones can follow as `model.args.KEY=VALUE`). Likewise an
    override that idles the file's settings (another optimiser, schedule or augmentation
    engine) drops them, and an override of `train.epochs` drops the file's tails it makes as
    long as the run; a setting that does nothing as written, or as overridden, is an error
    (inert_settings.py)."""
    pairs = [_parsed_override(override) for override in overrides]
    try:
        written = parse_recipe(copy.deepcopy(raw), source)
    except ConfigError:  # a value an override replaces; the result is checked below
        pass
    else:
        refuse_idle_settings(written, source)
        refuse_tails_as_long_as_the_run(written, source)
    model = raw.get("model")
    new_names = [value for key, value in pairs if key == "model.name"]
    if isinstance(model, dict) and new_names and new_names[-1] != model.get("name"):
        model.pop("args", None)
    for key, value in pairs:
        set_dotted(raw, key, value)
        for precision in list(raw.get("by_precision") or {}):  # what the user set wins
            _drop_key(raw["by_precision"], f"{precision}.{key}")
            if key == "model.name":  # the args were written for the model it replaces
                _drop_key(raw["by_precision"], f"{precision}.model.args")
    overridden = {key for key, _ in pairs}
    recipe = _without_tails_overrides_outgrew(
        _without_settings_overrides_idled(raw, overridden, source), raw, overridden, source)
    refuse_tails_as_long_as_the_run(recipe, source)
    return recipe


def _without_tails_overrides_outgrew(recipe: Recipe, raw: dict[str, Any], overridden: set[str],
                                     source: str) -> Recipe:
    """`recipe` less the file's tails (plain last epochs, a held last rate) that an override
    of `train.epochs` made as long as the run: they were written for the longer one, as
    `--set train.epochs=2` for a quick look means. A tail the overrides name is judged."""
    if not any(key.endswith("train.epochs") for key in overridden):
        return recipe
    outgrown = {key for key, *_ in tails_as_long_as_the_run(recipe) if key not in overridden}
    for key in outgrown:
        _drop_from_every_table(raw, key)
    return parse_recipe(raw, source) if outgrown else recipe


def _without_settings_overrides_idled(raw: dict[str, Any], overridden: set[str], source: str
                                      ) -> Recipe:
    """The recipe of `raw` (overrides applied) less the file's settings that the overrides
    made idle (One Cycle's after `schedule.name=cosine`, say); an idle setting that an
    override itself names is an error."""
    recipe = parse_recipe(raw, source)
    idle = idle_settings(recipe)
    named = [setting for setting in idle if setting.key in overridden]
    if named:
        raise ConfigError(named[0].line(source))
    if not idle:
        return recipe
    for setting in idle:
        _drop_from_every_table(raw, setting.key)
    return parse_recipe(raw, source)


def _drop_from_every_table(raw: dict[str, Any], key: str) -> None:
    """`key` out of the recipe's own tables and out of each `by_precision` table."""
    _drop_key(raw, key)
    for precision in list(raw.get("by_precision") or {}):
        _drop_key(raw["by_precision"], f"{precision}.{key}")


def parse_recipe(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    recipe = parse_table(Recipe, raw, "", source)
    if not _SAFE_NAME.fullmatch(recipe.name):
        raise ConfigError(f"{source}: name = {recipe.name!r} must be a plain folder name (letters, "
                          "digits, '.', '-', '_'; not starting with '.'): it names the run "
                          "folder")
    train = recipe.train
    if train.qat_epochs is not None and train.qat_epochs > train.epochs:
        raise ConfigError(f"{source}: train.qat_epochs = {train.qat_epochs} is more than the "
                          f"run's {train.epochs} epochs")
    if train.qat_epochs is not None and train.compile:
        raise ConfigError(f"{source}: train.qat_epochs and train.compile: the int8 simulation "
                          "changes the layers a compiled model was traced with; drop one")
    data = recipe.data
    if data.dataset in USER_DATASETS and not data.path:
        what = ("the .npz file" if data.dataset == "npz"
                else "the folder holding train/<class>/ and test/<class>/")
        raise ConfigError(f"{source}: data.dataset = {data.dataset!r} needs data.path, {what}")
    if data.dataset not in USER_DATASETS and data.path:
        raise ConfigError(f"{source}: data.path is for dataset = \"npz\" or \"folder\"; "
                          f"{data.dataset} is read from the data root (--data-dir)")
    for precision, table in recipe.by_precision.items():
        if precision not in choices(Precision) or not isinstance(table, dict):
            raise ConfigError(f"{source}: by_precision.{precision} must be a table named for a "
                              f"precision: {_describe((Precision,))}")
        if "by_precision" in table or "name" in table:
            raise ConfigError(f"{source}: by_precision.{precision} may not set "
                              f"{'by_precision' if 'by_precision' in table else 'name'}")
        recipe.for_precision(precision, source)  # its keys and values, checked now
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


def _parsed_override(override: str) -> tuple[str, Any]:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {override!r}: write it as section.key=value, e.g. train.epochs=3")
    try:
        return key, tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return key, text  # bare words are strings: --set model.name=mnist_s4


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted `key` in the nested table `raw` (tables made on the way; a number indexes a
    list there); None removes it."""
    *parents, leaf = key.split(".")
    node: Any = raw
    for part in parents:
        node = node[_position(node, part, key)] if isinstance(node, list) \
            else node.setdefault(part, {})
        if not isinstance(node, dict | list):
            raise ConfigError(f"{key}: {part} is a single value, not a section or a list")
    if isinstance(node, list):
        node[_position(node, leaf, key)] = value
    elif value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value


def get_dotted(raw: dict[str, Any], key: str) -> Any:
    """The value at dotted `key` of the nested table `raw` (a number indexes a list); None
    where there is none."""
    node: Any = raw
    for part in key.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def _position(node: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"{key}: {part} is not a position in the recipe's list of "
                          f"{len(node)} (0 to {len(node) - 1})")
    return int(part)


def leaves(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """The dotted keys and values of a nested table, as `--set` would name them."""
    pairs = []
    for key, value in table.items():
        if isinstance(value, dict):
            pairs += leaves(value, f"{prefix}{key}.")
        else:
            pairs.append((f"{prefix}{key}", value))
    return pairs


def _drop_key(table: Any, key: str) -> None:
    """Remove dotted `key` (a value or a whole sub-table) from a nested table, if there, and
    the tables that leaves empty."""
    head, _, rest = key.partition(".")
    if not isinstance(table, dict) or head not in table:
        return
    if rest:
        _drop_key(table[head], rest)
    if not rest or table[head] == {}:
        del table[head]


# The schema is checked here against the dataclasses' own type hints (about 90 lines), not by
# pydantic: pydantic would become a dependency of every install (today only the Albumentations
# extra brings it), and its messages would need a formatter of about this size to say what
# these say; `cnnlab schema` derives the JSON Schema from the same hints (recipe_schema.py).
def parse_table(cls: type, raw: Any, prefix: str, source: str) -> Any:
    """The dataclass `cls` from the TOML table `raw`, every value checked against the field's
    type hint; `prefix` ("sweep.") and `source` (the file) name the key in any error."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix.rstrip('.')} must be a table")
    hints = typing.get_type_hints(cls, include_extras=True)
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
            values[key] = parse_table(hint, value, f"{prefix}{key}.", source)
        else:
            values[key] = _checked(value, hint, f"{prefix}{key}", source)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{source}: missing key {prefix}{missing[0]}")
    return cls(**values)


def _checked(value: Any, hint: Any, key: str, source: str) -> Any:
    """`value` converted to the field's type (an int where a float is wanted), or a
    ConfigError that says what the field accepts."""
    options = typing.get_args(hint) if _is_union(hint) else (hint,)
    out_of_range = None
    for option in options:
        if option is type(None):
            continue
        ranges: tuple[Range, ...] = ()
        if typing.get_origin(option) is Annotated:
            option, *extras = typing.get_args(option)
            ranges = tuple(r for r in extras if isinstance(r, Range))
        converted = _as_type(value, option)
        if converted is _NO_MATCH:
            continue
        broken = [r for r in ranges if not r.admits(converted)]
        if not broken:
            return converted
        out_of_range = broken[0]
    if out_of_range is not None:
        raise ConfigError(f"{source}: {key} = {value!r} is out of range: it must be "
                          f"{out_of_range.describe()}")
    raise ConfigError(f"{source}: {key} must be {_describe(options)}, got {value!r}")


_NO_MATCH = object()


def _as_type(value: Any, option: Any) -> Any:
    origin = typing.get_origin(option) or option
    if origin is Literal:  # by type too: TOML's true must not pass for 1
        allowed = typing.get_args(option)
        return value if any(type(value) is type(a) and value == a for a in allowed) else _NO_MATCH
    if isinstance(value, bool) and origin is not bool:
        return _NO_MATCH  # TOML's true is not a number
    if origin is float and isinstance(value, int | float):
        return float(value)
    if origin is list and isinstance(value, list):
        (item,) = typing.get_args(option)
        items = [_as_type(v, item) for v in value]
        return _NO_MATCH if any(v is _NO_MATCH for v in items) else items
    if origin in (int, str, bool, dict) and isinstance(value, origin):
        return value
    return _NO_MATCH


def _is_union(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union


def _describe(options: tuple[Any, ...]) -> str:
    words = []
    for option in options:
        if option is type(None):
            continue
        if typing.get_origin(option) is Annotated:
            option = typing.get_args(option)[0]
        if typing.get_origin(option) is Literal:
            words.append("one of " + ", ".join(repr(v) for v in typing.get_args(option)))
        else:
            words.append(_TYPE_WORDS.get(option, getattr(option, "__name__", str(option))))
    return " or ".join(words)


_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
_TYPE_WORDS = {float: "a number", int: "an integer", str: "a string", bool: "true or false",
               dict: "a table"}


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value
