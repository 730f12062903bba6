import math

import pytest
import torch

from cnnlab.config import AugmentConfig
from cnnlab.data import BatchAugment, DeviceLoader
from cnnlab.data.augment import random_affine, random_crop, random_hflip
from tests.conftest import seeded


def test_shuffled_epoch_visits_every_sample_once():
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 2, 2).clone()
    loader = DeviceLoader(images, torch.arange(100), 32, mean=(0.0,), std=(1 / 255,),
                          shuffle=True, generator=seeded())
    assert len(loader) == 4
    seen = torch.cat([y for _, y in loader])
    assert sorted(seen.tolist()) == list(range(100))
    assert seen.tolist() != list(range(100))  # actually shuffled
    second = torch.cat([y for _, y in loader])
    assert second.tolist() != seen.tolist()  # a new order each epoch


def test_images_stay_with_their_labels_and_are_normalised():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 3, 3).clone()
    loader = DeviceLoader(images * 20, torch.arange(10), 4, mean=(0.5,), std=(0.25,),
                          shuffle=True, generator=seeded())
    for x, y in loader:
        expected = ((y.float() * 20 / 255) - 0.5) / 0.25
        assert torch.allclose(x[:, 0, 1, 1], expected, atol=1e-6)


def test_same_seed_same_batches_different_seed_different():
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    aug = BatchAugment(AugmentConfig(rotate=10, translate=2, pad_crop=2, hflip=0.5))

    def epoch(seed):
        loader = DeviceLoader(images, torch.arange(64), 16, mean=(0.1,), std=(0.3,),
                              shuffle=True, augment=aug, generator=seeded(seed))
        return torch.cat([x for x, _ in loader])

    assert torch.equal(epoch(1), epoch(1))
    assert not torch.equal(epoch(1), epoch(2))


def test_zero_affine_is_identity():
    x = torch.rand(8, 1, 28, 28) * 255
    assert torch.allclose(random_affine(x, 0.0, 0.0, seeded()), x, atol=1e-3)


def test_affine_draws_a_different_transform_per_image():
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 12:16] = 255  # the same off-centre bar in every image
    out = random_affine(x, 30.0, 3.0, seeded())
    flat = out.flatten(1)
    distinct = {tuple(row.round().tolist()) for row in flat}
    assert len(distinct) == 64
    # a rotation of at most 30 degrees keeps most of the bar's mass (it stays in the frame)
    assert torch.allclose(out.sum((1, 2, 3)), x.sum((1, 2, 3)), rtol=0.1)


def test_affine_rotation_stays_within_the_bound():
    x = torch.zeros(256, 1, 29, 29)
    x[:, :, 14, 14:] = 255  # a ray from the centre pointing right
    out = random_affine(x, 20.0, 0.0, seeded())
    ys, xs = torch.meshgrid(torch.arange(29.0), torch.arange(29.0), indexing="ij")
    weight = out[:, 0]
    cy = (weight * ys).sum((1, 2)) / weight.sum((1, 2)) - 14
    cx = (weight * xs).sum((1, 2)) / weight.sum((1, 2)) - 14
    angles = torch.rad2deg(torch.atan2(cy, cx)).abs()
    assert angles.max() <= 20.5
    assert angles.max() > 15  # the range is used, not just small angles


def test_crop_shifts_each_image_by_at_most_pad():
    x = torch.zeros(128, 1, 12, 12)
    x[:, :, 6, 6] = 1.0
    out = random_crop(x, 3, seeded())
    assert out.shape == x.shape
    positions = out.view(128, -1).argmax(1)
    rows, cols = positions // 12, positions % 12
    assert (out.view(128, -1).sum(1) == 1).all()  # the dot is never cropped out at pad 3
    assert rows.min() == 3 and rows.max() == 9 and cols.min() == 3 and cols.max() == 9
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 30


def test_flip_rate_matches_p():
    x = torch.arange(4.0).view(1, 1, 1, 4).expand(4000, 1, 1, 4)
    out = random_hflip(x, 0.3, seeded())
    flipped = (out[:, 0, 0, 0] == 3).float().mean().item()
    assert math.isclose(flipped, 0.3, abs_tol=0.03)


@pytest.mark.parametrize(("config", "active"), [
    (AugmentConfig(), False),
    (AugmentConfig(rotate=0.0, hflip=0.0, cutout_p=0.5), False),  # a rate with nothing to do
    (AugmentConfig(rotate=5.0), True),
    (AugmentConfig(hflip=0.5), True),
    (AugmentConfig(cutout=8, cutout_p=0.5), True),
])
def test_augment_is_active_exactly_when_a_transform_is_on(config, active):
    augment = BatchAugment(config)
    assert augment.active is active
    x = torch.rand(64, 1, 12, 12) * 255
    out = augment(x.clone(), seeded(), index=torch.arange(64), epoch=0)
    assert torch.equal(out, x) is not active
