"""The campaign's recipe and command-line cases: refused before anything is written."""


import torch
from fault_case import (
    Finished,
    fault,
    train,
    write,
)


@fault("recipe", "recipe file that does not exist", 2)
def test_recipe_file_that_does_not_exist(s):
    return s.cnnlab("train", "mine.toml", "--out", str(s.runs))


@fault("recipe", "TOML syntax error", 2)
def test_toml_syntax_error(s):
    return s.cnnlab("train", str(write(s.root / "r.toml", "name = \n[train\n")), "--out",
                    str(s.runs))


@fault("recipe", "unknown section in a recipe file", 2)
def test_unknown_section_in_a_recipe_file(s):
    recipe = write(s.root / "r.toml", "[trian]\nepochs = 1\n")
    return s.cnnlab("train", str(recipe), "--out", str(s.runs))


@fault("recipe", "value of the wrong type", 2)
def test_value_of_the_wrong_type(s):
    return train(s, "--set", "train.epochs=three")


@fault("recipe", "negative train_limit", 2)
def test_negative_train_limit(s):
    return train(s, "--set", "data.train_limit=-5")


@fault("recipe", "a choice that does not exist (optimizer)", 2)
def test_a_choice_that_does_not_exist_optimizer(s):
    return train(s, "--set", "optim.name=adamw2")


@fault("recipe", "--set without '='", 2)
def test_set_without(s):
    return train(s, "--set", "train.epochs")


@fault("recipe", "val_split of 1.5", 2)
def test_val_split_of_1_5(s):
    return train(s, "--set", "data.val_split=1.5")


@fault("cli", "unknown flag", 2)
def test_unknown_flag(s):
    return s.cnnlab("train", "mnist-s5-10ep", "--epochs", "3")


@fault("cli", "--device cuda on a machine without one", 2)
def test_device_cuda_on_a_machine_without_one(s):
    if torch.cuda.is_available():
        return Finished(2, "", "not tried: this machine has a GPU")
    return train(s, "--device", "cuda")
