import pytest

from cnnlab.config import builtin_recipes, load_recipe
from cnnlab.errors import ConfigError


def test_builtin_recipes_load_and_validate():
    names = builtin_recipes()
    assert {"mnist-s4", "mnist-s5", "mnist-26k", "mnist-99.4"} <= set(names)
    for name in names:
        assert load_recipe(name).name == name


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


def test_unknown_key_in_file_is_an_error(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text("[train]\nepochs = 3\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError, match=r"train\.learning_rate"):
        load_recipe(path)


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ConfigError, match="mnist-99.4"):
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
    recipe = load_recipe("mnist-99.4", ["train.seed=7"])
    path = tmp_path / "config.toml"
    path.write_text(recipe.to_toml())
    assert load_recipe(path) == recipe
