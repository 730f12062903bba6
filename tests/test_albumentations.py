import warnings

import pytest
import torch

from cnnlab.config import load_recipe
from cnnlab.data.albumentations_loader import AlbumentationsLoader, build_pipeline
from cnnlab.errors import ConfigError
from tests.conftest import separable_dataset, train_run


def test_a_removed_1x_argument_is_an_error_not_a_warning():
    with pytest.raises(ConfigError, match=r"transforms\[0\]: CoarseDropout has no argument "
                                          r"'max_holes'.*num_holes_range"):
        build_pipeline([{"name": "CoarseDropout", "max_holes": 1}])


def test_unknown_transform_and_bad_values():
    with pytest.raises(ConfigError, match="'HorizontalFlop' is not an Albumentations"):
        build_pipeline([{"name": "HorizontalFlop"}])
    with pytest.raises(ConfigError, match=r"transforms\[1\]: ToGray"):
        build_pipeline([{"name": "HorizontalFlip"}, {"name": "ToGray", "p": 7}])


def test_the_seed_recipe_builds_its_pipeline():
    transforms = load_recipe("cifar-s9").augment.transforms
    pipeline = build_pipeline(transforms)
    assert [type(t).__name__ for t in pipeline.transforms] == [
        "HorizontalFlip", "Affine", "CoarseDropout", "ToGray"]
    with warnings.catch_warnings():  # nothing the recipe asks for is deprecated
        warnings.simplefilter("error", DeprecationWarning)
        build_pipeline(transforms)


def test_loader_yields_normalised_augmented_batches():
    images = torch.full((40, 3, 16, 16), 128, dtype=torch.uint8)
    loader = AlbumentationsLoader(
        images, torch.arange(40), 16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
        transforms=[{"name": "CoarseDropout", "num_holes_range": [1, 1],
                     "hole_height_range": [4, 4], "hole_width_range": [4, 4], "fill": 0,
                     "p": 1.0}], workers=0)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    x = torch.cat([b[0] for b in batches])
    assert sorted(torch.cat([b[1] for b in batches]).tolist()) == list(range(40))
    hole = (x == -2.0).all(1)  # pixel 0 -> (0 - 0.5) / 0.25
    assert (hole.sum((1, 2)) == 16).all()  # one 4x4 hole in every image
    untouched = x[:, 0][~hole]
    assert torch.allclose(untouched, torch.tensor((128 / 255 - 0.5) / 0.25), atol=1e-5)


@pytest.mark.slow
def test_albumentations_engine_trains(tmp_path):
    recipe = load_recipe("mnist-s5-10ep", [
        'augment.engine="albumentations"', "augment.workers=0", "train.epochs=2",
        "data.batch_size=64", "train.device=cpu",
        'augment.transforms=[{name = "Affine", rotate = [-8, 8], p = 1.0}]'])
    result = train_run(recipe, dataset=separable_dataset(), out_dir=tmp_path)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.history[-1]["test_acc"] > 20  # chance is 10%
@pytest.mark.slow


def test_the_albumentations_engines_last_epochs_see_the_images_as_they_are():
    from cnnlab.data.loader import DeviceLoader, normaliser
    from cnnlab.models import build_model
    from cnnlab.training.trainer import Trainer

    data = separable_dataset(n_train=128)
    recipe = load_recipe("mnist-s5-10ep", [
        'augment.engine="albumentations"', "augment.workers=0", "train.epochs=2",
        "augment.off_last_epochs=1", "data.batch_size=64", "train.device=cpu",
        "train.channels_last=false",
        'augment.transforms=[{name = "Affine", rotate = [-8, 8], p = 1.0}]'])
    run = Trainer(recipe, data, build_model("mnist_pool"))
    scale, shift = normaliser(data.mean, data.std, torch.device("cpu"))
    as_they_are = torch.addcmul(shift, data.train_images.float(), scale).flatten(1)

    def off_by(loader):  # how far each image lies from the nearest training image
        return torch.cat([torch.cdist(x.flatten(1), as_they_are).amin(1) for x, _ in loader])

    rotated, plain = off_by(run.train_loader), off_by(run.plain_loader)
    assert isinstance(run.plain_loader, DeviceLoader) and len(plain) == 128
    assert (rotated > 1.0).float().mean() > 0.5 and plain.max() < 0.1
