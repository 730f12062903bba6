import dataclasses
import hashlib
import os
import pickle

import numpy as np
import pytest
import torch

from cnnlab.config import AugmentConfig, load_recipe
from cnnlab.data import BatchAugment, cifar_files, load_dataset
from cnnlab.data.augment import random_affine, random_crop, random_cutout, random_gray
from cnnlab.errors import DataError
from cnnlab.inspection import receptive_field, summary
from cnnlab.models import build_model, count_parameters
from tests.conftest import seeded, train_run


def test_real_cifar10_matches_the_published_counts(cifar_data_root):
    data = load_dataset("cifar10", cifar_data_root)
    assert data.train_images.shape == (50000, 3, 32, 32)
    assert data.test_images.shape == (10000, 3, 32, 32)
    assert torch.bincount(data.train_labels).tolist() == [5000] * 10
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10
    mean = (data.train_images.float() / 255).mean((0, 2, 3))
    assert torch.allclose(mean, torch.tensor(data.mean), atol=1e-4)
    assert data.classes[0] == "plane" and data.classes[9] == "truck"


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    sums = {}
    for name in cifar_files.SOURCES["cifar10"].files:
        data = rng.integers(0, 256, (20, 3072), dtype=np.uint8)
        labels = [int(i % 10) for i in range(20)]
        with open(folder / name, "wb") as handle:
            pickle.dump({b"data": data, b"labels": labels, b"filenames": [b"x"] * 20}, handle,
                        protocol=2)
        sums[name] = (hashlib.md5(data.tobytes()).hexdigest(),
                      hashlib.md5(np.array(labels, dtype=np.uint8).tobytes()).hexdigest())
    monkeypatch.setitem(cifar_files.SOURCES, "cifar10",
                        dataclasses.replace(cifar_files.SOURCES["cifar10"], content_md5=sums))
    return tmp_path


def test_reads_pickled_batches(fake_cifar):
    data = load_dataset("cifar10", fake_cifar)
    assert data.train_images.shape == (100, 3, 32, 32)
    assert data.test_labels.tolist() == [i % 10 for i in range(20)]


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_a_pickle_that_would_run_code_is_refused(fake_cifar):
    path = fake_cifar / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": []}, protocol=2))
    with pytest.raises(DataError, match=r"data_batch_3 is not a CIFAR-10 batch.*posix.system"):
        load_dataset("cifar10", fake_cifar)


def test_truncated_batch_names_the_file(fake_cifar):
    path = fake_cifar / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(DataError, match="test_batch .*truncated"):
        load_dataset("cifar10", fake_cifar)


def test_altered_pixels_fail_the_content_checksum(fake_cifar):
    path = fake_cifar / "cifar-10-batches-py" / "data_batch_2"
    batch = pickle.loads(path.read_bytes())
    batch[b"data"][0, 0] ^= 1
    path.write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DataError, match="data_batch_2 is corrupt or not the genuine"):
        load_dataset("cifar10", fake_cifar)


def test_missing_batches_offline(fake_cifar, monkeypatch):
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    (fake_cifar / "cifar-10-batches-py" / "data_batch_5").unlink()
    with pytest.raises(DataError, match="CIFAR-10 files missing.*data_batch_5.*CNNLAB_OFFLINE"):
        load_dataset("cifar10", fake_cifar)


# The S9 seed's RF table, column rout, in its order (branch A, branch B, trunk, GAP).
S9_ROUT = [5, 9, 11, 15, 3, 5, 7, 11, 19, 19, 23, 31, 51]


def test_cifar_s9_matches_its_seed():
    model = build_model("cifar_s9")
    assert count_parameters(model) == 94292
    field = receptive_field(model, (3, 32, 32))
    assert [row.rout for row in field.rows] == S9_ROUT
    assert [row.dilation for row in field.rows][:2] == [2, 2]
    assert field.final == 51 > 44
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())


S10_TABLE = (
    "Conv2d BatchNorm2d ReLU Dropout Conv2d MaxPool2d BatchNorm2d ReLU Dropout Conv2d BatchNorm2d"
    " ReLU Dropout Conv2d BatchNorm2d ReLU Dropout Conv2d MaxPool2d BatchNorm2d ReLU Dropout"
    " Conv2d MaxPool2d BatchNorm2d ReLU Dropout Conv2d BatchNorm2d ReLU Dropout Conv2d"
    " BatchNorm2d ReLU Dropout MaxPool2d Linear"
)



def test_cifar_s10_resnet_matches_its_seed_table():
    table = summary(build_model("cifar_s10_resnet"), (3, 32, 32))
    modules = [r for r in table.rows if r.is_module]
    assert [r.name.rsplit("-", 1)[0] for r in modules] == S10_TABLE.split()
    assert [r.shape for r in modules][4:6] == [(128, 32, 32), (128, 16, 16)]
    assert [r.params for r in modules if r.params][:3] == [1728, 128, 73728]
    assert table.total_params == 6573130
    assert sum(r.name.startswith("add-") for r in table.rows) == 2  # the two residual adds
    text = table.to_text()
    assert "Forward/backward pass size (MB): 8.00" in text
    assert "Estimated Total Size (MB): 33.09" in text


def test_cutout_area_is_exact_and_rate_matches_p():
    x = torch.full((2000, 3, 32, 32), 100.0)
    out = random_cutout(x, 8, 0.5, seeded())
    zeros = (out[:, 0] == 0).sum((1, 2))
    assert set(zeros.tolist()) == {0, 64}
    assert abs((zeros > 0).float().mean().item() - 0.5) < 0.04
    assert ((out == 0).all(1) == (out[:, :1] == 0)[:, 0]).all()  # same hole in every channel


def test_gray_makes_channels_equal_at_rate_p():
    x = torch.rand(2000, 3, 8, 8) * 255
    out = random_gray(x, 0.25, seeded())
    gray = (out[:, 0] == out[:, 1]).all((1, 2)) & (out[:, 1] == out[:, 2]).all((1, 2))
    assert abs(gray.float().mean().item() - 0.25) < 0.03
    expected = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert torch.allclose(out[gray, 0], expected[gray], atol=1e-3)


def test_reflect_crop_has_no_black_border():
    x = torch.full((64, 3, 16, 16), 200.0)
    assert (random_crop(x, 4, seeded(), mode="reflect") == 200).all()
    assert (random_crop(x, 4, seeded(), mode="zeros") == 0).any()


def test_shift_scale_rotate_keeps_shape_and_mean():
    x = torch.zeros(256, 3, 32, 32)
    x[:, :, 8:24, 8:24] = 255.0
    out = random_affine(x, 15.0, 2.0, seeded(), scale=0.1)
    assert out.shape == x.shape
    # zoom changes the square's area by at most (1.1)^2; rotation and shift keep it
    ratio = out.mean((1, 2, 3)) / x.mean((1, 2, 3))
    assert ratio.min() > 0.8 and ratio.max() < 1.25
    assert abs(ratio.mean().item() - 1.0) < 0.05


def test_cifar_augment_pipeline_runs_on_a_batch():
    config = load_recipe("cifar-s9-batched").augment
    assert isinstance(config, AugmentConfig)
    out = BatchAugment(config)(torch.rand(32, 3, 32, 32) * 255, seeded())
    assert out.shape == (32, 3, 32, 32) and torch.isfinite(out).all()


@pytest.mark.slow
def test_cifar_s9_fast_recipe_learns_on_a_slice(cifar_data_root, tmp_path):
    recipe = load_recipe("cifar-s9-batched", ["train.epochs=3", "data.train_limit=512",
                                           "data.test_limit=256", "data.batch_size=64",
                                           "train.device=cpu", "train.label_smoothing=0.0"])
    data = load_dataset("cifar10", cifar_data_root)
    result = train_run(recipe, dataset=data, out_dir=tmp_path)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
