import re

import pytest

from cnnlab.config import builtin_recipes, load_recipe, parse_recipe
from cnnlab.errors import ConfigError


def test_builtin_recipes_load_and_validate():
    names = builtin_recipes()
    assert {"mnist-s4", "mnist-s5", "mnist-baseline", "mnist-s5-10ep"} <= set(names)
    for name in names:
        assert load_recipe(name).name == name


@pytest.mark.parametrize("name", builtin_recipes())
def test_every_builtin_recipe_meets_its_own_budget_before_training(name):
    from cnnlab import check

    report = check(load_recipe(name))
    assert report.passed, f"{name}: " + "; ".join(v.line() for v in report.failures)


def test_recipe_from_path_and_defaults(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[model]\nname = "mnist_s4"\n[train]\nepochs = 3\n')
    recipe = load_recipe(path)
    assert recipe.name == "mine"  # defaults to the file name
    assert recipe.model.name == "mnist_s4"
    assert recipe.train.epochs == 3
    assert recipe.data.batch_size == 128  # untouched keys keep their defaults


def test_overrides_are_typed_and_nested():
    recipe = load_recipe("mnist-s4", ["train.epochs=2", "optim.lr=0.5", "model.name=mnist_s5",
                                      "optim.nesterov=true", "model.args.dropout=0.2"])
    assert recipe.train.epochs == 2
    assert recipe.optim.lr == 0.5
    assert recipe.model.name == "mnist_s5"
    assert recipe.optim.nesterov is True
    assert recipe.model.args == {"dropout": 0.2}


def test_another_model_drops_the_recipes_model_args_but_takes_new_ones():
    assert load_recipe("mnist-s5-10ep").model.args == {"width": 16}
    assert load_recipe("mnist-s5-10ep", ["model.name=mnist_s4"]).model.args == {}
    # args given with the new name are kept, in either order
    for overrides in (["model.name=mnist_pool", "model.args.width=10"],
                      ["model.args.width=10", "model.name=mnist_pool"]):
        assert load_recipe("mnist-s5-10ep", overrides).model.args == {"width": 10}
    # naming the recipe's own model again changes nothing
    assert load_recipe("mnist-s5-10ep", ["model.name=mnist_strided"]).model.args == {"width": 16}
    assert load_recipe("mnist-s5-10ep", ["model.args.dropout=0.1"]).model.args == {
        "width": 16, "dropout": 0.1}


def test_int_is_accepted_where_float_is_expected():
    assert load_recipe("mnist-s4", ["optim.lr=1"]).optim.lr == 1.0


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["train.epoch=3"], "train.epoch"),
        (["optimizer.lr=3"], "optimizer"),
        (["train.epochs=3.5"], "train.epochs"),
        (["train.epochs=true"], "train.epochs"),
        (["optim.nesterov=1"], "optim.nesterov"),
        (["optim.name=rmsprop"], "optim.name"),
        (["spec.require=[1, 2]"], "spec.require"),
        (["train=3"], "train"),
    ],
)
def test_bad_keys_and_types_name_the_key(overrides, named):
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_recipe("mnist-s4", overrides)


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("data.batch_size=0", "data.batch_size = 0 is out of range: it must be at least 1"),
        ("data.eval_batch_size=-1", "at least 1"),
        ("data.train_limit=0", "data.train_limit = 0 is out of range"),
        ("train.epochs=0", "train.epochs"),
        ("augment.hflip=1.5", "at least 0 and at most 1"),
        ("augment.cutout_p=-0.1", "augment.cutout_p"),
        ("augment.scale=1.0", "below 1"),
        ("optim.lr=0", "optim.lr = 0 is out of range: it must be above 0"),
        ("optim.momentum=1.0", "optim.momentum"),
        ("schedule.max_lr=-0.1", "schedule.max_lr"),
        ("schedule.pct_start=1.0", "schedule.pct_start"),
        ("train.label_smoothing=1.0", "train.label_smoothing"),
        ("train.ema_decay=1.0", "train.ema_decay"),
        ("spec.min_test_acc=101", "at most 100"),
        ("spec.last_epochs=0", "spec.last_epochs"),
    ],
)
def test_numbers_outside_their_range_are_refused_with_the_range(override, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_recipe("mnist-s5-10ep", [override])


@pytest.mark.parametrize(
    ("override", "choices"),
    [
        ("train.tta=flips", "'none', 'flip', 'flip_shift', 'shift'"),
        ("data.dataset=imagenet", "'mnist', 'fashion_mnist', 'kmnist', 'cifar10'"),
        ("schedule.find_pick=valey", "'minimum', 'valley', 'steepest'"),
        ('schedule.max_lr="auto"', "a number or one of 'find'"),
    ],
)
def test_a_value_outside_the_choices_lists_them(override, choices):
    with pytest.raises(ConfigError, match=re.escape(choices)):
        load_recipe("mnist-s5-10ep", [override])


def test_ranges_admit_their_edges():
    recipe = load_recipe("mnist-s5-10ep", ["augment.hflip=1", "data.train_limit=1", "optim.lr=1e-9",
                                        "train.label_smoothing=0", "spec.min_test_acc=100"])
    assert recipe.augment.hflip == 1.0 and recipe.data.train_limit == 1


def test_unknown_key_in_file_is_an_error(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("[train]\nepochs = 3\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError, match=r"train\.learning_rate"):
        load_recipe(path)


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ConfigError, match="mnist-s5-10ep"):
        load_recipe("mnist-99")


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_recipe(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_recipe(bad)


def test_malformed_override():
    with pytest.raises(ConfigError, match="section.key=value"):
        load_recipe("mnist-s4", ["train.epochs"])


def test_resolved_config_round_trips(tmp_path):
    recipe = load_recipe("mnist-s5-10ep", ["train.seed=7"])
    path = tmp_path / "config.toml"
    path.write_text(recipe.to_toml())
    assert load_recipe(path) == recipe


PRECISION_RECIPE = """
[data]
batch_size = 128
[train]
channels_last = false
[by_precision.fp32]
train.channels_last = true
data.batch_size = 256
[by_precision.bf16]
model.args = { dropout = 0.1 }
"""


def test_a_precisions_settings_apply_only_in_that_precision(tmp_path):
    path = tmp_path / "both.toml"
    path.write_text(PRECISION_RECIPE)
    recipe = load_recipe(path)
    fp32, bf16 = recipe.for_precision("fp32"), recipe.for_precision("bf16")
    assert (fp32.train.channels_last, fp32.data.batch_size) == (True, 256)
    assert (bf16.train.channels_last, bf16.data.batch_size) == (False, 128)
    assert bf16.model.args == {"dropout": 0.1} and fp32.model.args == {}
    assert fp32.by_precision == {} == bf16.by_precision  # what ran, nothing left to resolve
    assert recipe.for_precision("fp16").train == recipe.train  # no table: the file's own


def test_what_the_user_sets_wins_over_a_precisions_settings(tmp_path):
    path = tmp_path / "both.toml"
    path.write_text(PRECISION_RECIPE)
    recipe = load_recipe(path, ["train.channels_last=false", "model.name=mnist_s4"])
    fp32, bf16 = recipe.for_precision("fp32"), recipe.for_precision("bf16")
    assert fp32.train.channels_last is False and fp32.data.batch_size == 256
    assert bf16.model.args == {}  # written for the model the user replaced
    # the tables the user's settings emptied go too: a written recipe holds no empty table
    assert recipe.by_precision == {"fp32": {"data": {"batch_size": 256}}}
    assert "[by_precision.bf16" not in recipe.to_toml()


@pytest.mark.parametrize("table, says", [
    ("[by_precision.fp64]\ntrain.epochs = 2\n", r"by_precision\.fp64 must be a table named "
                                                 r"for a precision: one of 'fp32'"),
    ("[by_precision.fp32]\ntrain.epoch = 2\n", r"by_precision\.fp32: unknown key train\.epoch"),
    ("[by_precision.bf16]\ndata.batch_size = 0\n", r"by_precision\.bf16: data\.batch_size = 0 "
                                                    "is out of range"),
    ("[by_precision.fp32]\nname = 'other'\n", r"by_precision\.fp32 may not set name"),
])
def test_a_bad_precision_table_is_named_when_the_recipe_loads(tmp_path, table, says):
    path = tmp_path / "bad.toml"
    path.write_text(table)
    with pytest.raises(ConfigError, match=says):
        load_recipe(path)


@pytest.mark.parametrize("overrides, says", [
    (["optim.name=adam", "optim.nesterov=true"], 'optim.nesterov = true does nothing unless '
                                                 'optim.name = "sgd"'),
    (["schedule.name=cosine", "schedule.pct_start=0.3"], "schedule.pct_start = 0.3 does nothing"
                                                         ' unless schedule.name = "onecycle"'),
    (["schedule.min_lr=0.001"], 'unless schedule.name = "cosine"'),
    (["schedule.find_pick=valley"], 'unless schedule.max_lr = "find"'),
    (["schedule.gamma=0.5"], 'unless schedule.name = "step"'),
    (["train.lookahead_decay=0.9"], "unless train.lookahead_every > 0"),
    (["augment.engine=albumentations", "augment.rotate=3"], 'augment.rotate = 3.0 does nothing'
                                                            ' unless augment.engine = "fast"'),
    (["augment.pad_mode=reflect"], "unless augment.pad_crop > 0"),
    (["augment.cutout_p=0.5"], "unless augment.cutout > 0"),
    (["data.image_size=32"], 'unless data.dataset = "folder"'),
    (["augment.off_last_epochs=10"], "leaves none of the 10 epochs augmented"),
    (["schedule.hold_epochs=10"], "leaves no epoch of the 10 for the cycle"),
    (["schedule.name=cosine", "schedule.hold_epochs=1"], 'unless schedule.name = "onecycle"'),
])
def test_a_setting_that_would_do_nothing_is_refused_with_what_it_needs(overrides, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        load_recipe("mnist-s5-10ep", overrides)


def test_a_shorter_run_drops_the_files_tails_it_outgrows_and_judges_those_it_names(tmp_path):
    shipped = load_recipe("mnist-s5-10ep")
    assert (shipped.augment.off_last_epochs, shipped.schedule.hold_epochs) == (3, 2)
    quick = load_recipe("mnist-s5-10ep", ["train.epochs=2"])
    assert (quick.augment.off_last_epochs, quick.schedule.hold_epochs) == (0, 0)
    three = load_recipe("mnist-s5-10ep", ["train.epochs=3"])  # the hold still leaves a cycle
    assert (three.augment.off_last_epochs, three.schedule.hold_epochs) == (0, 2)
    assert load_recipe("mnist-s5-10ep", ["train.epochs=5"]).augment.off_last_epochs == 3
    with pytest.raises(ConfigError, match="off_last_epochs = 2 leaves none of the 2 epochs"):
        load_recipe("mnist-s5-10ep", ["train.epochs=2", "augment.off_last_epochs=2"])
    path = tmp_path / "r.toml"  # the file's own slip is refused whatever overrides follow
    path.write_text('name = "r"\n[train]\nepochs = 2\n[schedule]\nname = "onecycle"\n'
                    'hold_epochs = 2\n')
    with pytest.raises(ConfigError, match="hold_epochs = 2 leaves no epoch of the 2"):
        load_recipe(str(path), ["train.epochs=4"])


def test_a_setting_idle_only_under_one_precision_is_refused_too(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('name = "r"\n[optim]\nname = "sgd"\n'
                    '[by_precision.fp32]\noptim.name = "adam"\noptim.nesterov = true\n')
    with pytest.raises(ConfigError, match=r"by_precision\.fp32.*optim\.nesterov"):
        load_recipe(str(path))


def test_settings_that_act_are_accepted_and_a_run_folder_is_not_judged(tmp_path):
    recipe = load_recipe("mnist-s5-10ep", ["augment.off_last_epochs=9", "optim.nesterov=false",
                                           "train.lookahead_every=5",
                                           "train.lookahead_decay=0.9"])
    assert recipe.augment.off_last_epochs == 9 and recipe.train.lookahead_decay == 0.9
    raw = recipe.to_dict()
    raw["optim"] |= {"name": "adam", "nesterov": True}  # as an older cnnlab may have recorded
    assert parse_recipe(raw).optim.nesterov is True


def test_an_override_that_idles_the_files_settings_drops_them():
    shipped = load_recipe("mnist-s5-10ep")
    assert shipped.schedule.max_lr == 0.1 and shipped.augment.rotate == 5.0
    recipe = load_recipe("mnist-s5-10ep", ["schedule.name=cosine", "optim.name=adam",
                                           "augment.engine=albumentations"])
    assert recipe.schedule.max_lr is None and recipe.schedule.pct_start == 0.25
    assert recipe.optim.nesterov is False and recipe.augment.rotate == 0.0
    assert recipe.optim.weight_decay == shipped.optim.weight_decay  # what still acts stays


def test_a_file_with_an_idle_setting_is_refused(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('name = "r"\n[optim]\nname = "adam"\nmomentum = 0.8\n')
    with pytest.raises(ConfigError, match=r"r\.toml: optim\.momentum = 0\.8 does nothing"):
        load_recipe(str(path), ["optim.name=adam"])


def test_an_override_may_mend_a_value_the_file_got_wrong(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('name = "r"\n[train]\nepochs = 0\n')
    assert load_recipe(str(path), ["train.epochs=3"]).train.epochs == 3
    with pytest.raises(ConfigError, match=r"train\.epochs = 0 is out of range"):
        load_recipe(str(path))
