"""Every dataset format cnnlab reads, on small files written here in the real format (and
Fashion-MNIST from the shared data): what loads, what is refused, and what a run records."""

import dataclasses
import gzip
import hashlib
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.config import load_recipe
from cnnlab.data import cifar_files, idx_files, load_dataset, load_recipe_data, svhn_files
from cnnlab.data.catalog import DATASETS
from cnnlab.errors import DataError
from cnnlab.run_folder import RunFolder
from tests.conftest import idx_bytes


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# --- named datasets ---------------------------------------------------------------------------

def test_fashion_mnist_from_the_shared_data(real_data_root):
    if not (real_data_root / "FashionMNIST" / "raw").is_dir():
        pytest.skip("the data root has no FashionMNIST/raw")
    data = load_dataset("fashion_mnist", real_data_root)
    assert data.train_images.shape == (60000, 1, 28, 28)
    assert torch.bincount(data.train_labels).tolist() == [6000] * 10
    assert torch.bincount(data.test_labels).tolist() == [1000] * 10
    assert (data.train_images.double() / 255).mean().item() == pytest.approx(0.2860, abs=1e-4)
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"


def test_the_mnist_files_are_not_fashion_mnist(real_data_root, tmp_path):
    # Fashion-MNIST's files placed where MNIST belongs are refused by content.
    folder = tmp_path / "MNIST" / "raw"
    folder.mkdir(parents=True)
    for path in (real_data_root / "FashionMNIST" / "raw").iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    with pytest.raises(DataError, match="not the genuine MNIST file"):
        load_dataset("mnist", tmp_path)


@pytest.fixture
def fake_kmnist(tmp_path, monkeypatch):
    """KMNIST-format .gz files; as for the real KMNIST, only the .gz checksums are known."""
    folder = tmp_path / "KMNIST" / "raw"
    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    arrays = {"train-images-idx3-ubyte": torch.randint(0, 256, (30, 28, 28), generator=gen),
              "train-labels-idx1-ubyte": torch.arange(30) % 10,
              "t10k-images-idx3-ubyte": torch.randint(0, 256, (10, 28, 28), generator=gen),
              "t10k-labels-idx1-ubyte": torch.arange(10)}
    sums = {}
    for name, array in arrays.items():
        packed = gzip.compress(idx_bytes(array))
        (folder / f"{name}.gz").write_bytes(packed)
        sums[name] = _md5(packed)
    monkeypatch.setitem(idx_files.SOURCES, "kmnist",
                        dataclasses.replace(idx_files.SOURCES["kmnist"], gz_md5=sums))
    return tmp_path, folder


def test_kmnist_is_verified_by_its_official_gz_files(fake_kmnist):
    root, folder = fake_kmnist
    data = load_dataset("kmnist", root)
    assert data.train_images.shape == (30, 1, 28, 28) and data.classes[1] == "ki"
    # The same content unpacked cannot be checked against the .gz checksums: refused, named.
    name = "t10k-images-idx3-ubyte"
    (folder / name).write_bytes(gzip.decompress((folder / f"{name}.gz").read_bytes()))
    (folder / f"{name}.gz").unlink()
    with pytest.raises(DataError, match=f"{name} cannot be verified"):
        load_dataset("kmnist", root)


@pytest.fixture
def fake_cifar100(tmp_path, monkeypatch):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    sums = {}
    for name, n in (("train", 40), ("test", 20)):
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"fine_labels": [int(i * 7 % 100) for i in range(n)],
                 b"coarse_labels": [0] * n, b"filenames": [b"x"] * n}
        payload = pickle.dumps(batch, protocol=2)
        (folder / name).write_bytes(payload)
        sums[name] = _md5(payload)
    monkeypatch.setitem(cifar_files.SOURCES, "cifar100",
                        dataclasses.replace(cifar_files.SOURCES["cifar100"], file_md5=sums))
    return tmp_path


def test_cifar100_reads_the_fine_labels_and_checks_the_files(fake_cifar100):
    data = load_dataset("cifar100", fake_cifar100)
    assert data.train_images.shape == (40, 3, 32, 32) and len(data.classes) == 100
    assert data.train_labels[:3].tolist() == [0, 7, 14]
    assert data.classes[7] == "beetle"
    path = fake_cifar100 / "cifar-100-python" / "test"
    payload = bytearray(path.read_bytes())
    payload[len(payload) // 2] ^= 1  # one pixel off
    path.write_bytes(bytes(payload))
    with pytest.raises(DataError, match="test is corrupt or not the genuine CIFAR-100"):
        load_dataset("cifar100", fake_cifar100)


def test_svhn_reads_matlab_files_and_maps_label_10_to_digit_0(tmp_path, monkeypatch):
    from scipy.io import savemat

    folder = tmp_path / "svhn"
    folder.mkdir()
    rng = np.random.default_rng(0)
    sums, stored = {}, {}
    for name, n in (("train_32x32.mat", 12), ("test_32x32.mat", 6)):
        images = stored[name] = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        labels = (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)  # 1..10, as SVHN
        savemat(folder / name, {"X": images, "y": labels})
        sums[name] = _md5((folder / name).read_bytes())
    monkeypatch.setattr(svhn_files, "FILES", sums)
    data = load_dataset("svhn", tmp_path)
    assert data.train_images.shape == (12, 3, 32, 32)
    assert data.train_labels.tolist()[:10] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    x = stored["train_32x32.mat"]  # X[h, w, c, n] -> images[n, c, h, w]
    assert data.train_images[4, 2, 7, 9].item() == x[7, 9, 2, 4]
    # torchvision keeps the two files straight in its root: found there too.
    flat = tmp_path / "flat"
    folder.rename(flat)
    assert len(load_dataset("svhn", flat).test_labels) == 6


def test_every_named_dataset_says_what_it_is():
    for name, info in DATASETS.items():
        assert len(info.mean) == len(info.std) == info.input_shape[0], name
        assert len(set(info.classes)) == len(info.classes) >= 10, name


# --- a user's arrays --------------------------------------------------------------------------

def _write_npz(path, **overrides):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8),
              "y_train": np.arange(40) % 4, "x_test": rng.integers(0, 256, (8, 12, 12, 3),
                                                                   dtype=np.uint8),
              "y_test": np.arange(8) % 4, "classes": np.array(["ant", "bee", "cat", "dog"])}
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def test_npz_arrays_load_as_nchw_with_their_classes_and_statistics(tmp_path):
    arrays = _write_npz(tmp_path / "mine.npz")
    data = load_dataset("npz", path=tmp_path / "mine.npz")
    assert data.train_images.shape == (40, 3, 12, 12)
    assert torch.equal(data.train_images[5, 2], torch.from_numpy(arrays["x_train"][5, :, :, 2]))
    assert data.classes == ("ant", "bee", "cat", "dog")
    mean = arrays["x_train"].reshape(-1, 3).mean(0) / 255
    assert data.mean == pytest.approx(tuple(mean), abs=1e-6)
    grey = _write_npz(tmp_path / "grey.npz", x_train=np.zeros((40, 9, 9), np.uint8),
                      x_test=np.zeros((8, 9, 9), np.uint8), classes=None)
    assert grey is not None
    data = load_dataset("npz", path=tmp_path / "grey.npz")
    assert data.input_shape == (1, 9, 9) and data.classes == ("0", "1", "2", "3")


@pytest.mark.parametrize(("overrides", "message"), [
    ({"y_test": None}, "has no y_test"),
    ({"y_train": np.arange(40) % 5}, "a label is 4 but classes names only 4"),
    ({"y_train": np.arange(40) - 1}, "negative label"),
    ({"x_train": np.zeros((40, 12, 12, 3), np.float32)}, "x_train is float32"),
    ({"x_test": np.zeros((8, 10, 10, 3), np.uint8)}, "make them match"),
    ({"y_test": np.arange(7)}, "7 labels for 8 images"),
])
def test_bad_arrays_get_one_clear_error(tmp_path, overrides, message):
    _write_npz(tmp_path / "bad.npz", **overrides)
    with pytest.raises(DataError, match=message):
        load_dataset("npz", path=tmp_path / "bad.npz")


# --- a user's image folders -------------------------------------------------------------------

CLASSES = ("circle", "square", "stripes")


def _draw(kind: str, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    image = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
    ys, xs = np.mgrid[:size, :size]
    if kind == "circle":
        image[(ys - size / 2) ** 2 + (xs - size / 2) ** 2 < (size / 3) ** 2] = 230
    elif kind == "square":
        image[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 230
    else:
        image[:, ::4] = 230
    return image


def make_image_folders(root, train=24, test=8, size=28, seed=0):
    """root/train/<class>/*.png and root/test/<class>/*.png: 96 small learnable images."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        for kind in CLASSES:
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                suffix = ".jpg" if i % 5 == 4 else ".png"
                Image.fromarray(_draw(kind, rng, size)).save(folder / f"{i:03d}{suffix}")
    return root


def test_image_folders_load_once_then_from_the_cache(tmp_path, monkeypatch):
    root = make_image_folders(tmp_path / "shapes")
    data = load_dataset("folder", path=root, progress=False)
    assert data.train_images.shape == (72, 3, 28, 28) and data.test_images.shape == (24, 3, 28, 28)
    assert data.classes == CLASSES
    assert torch.bincount(data.train_labels).tolist() == [24, 24, 24]
    assert len(list(root.glob(".cnnlab-images-*.pt"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(Image, "open", no_decoding)
    again = load_dataset("folder", path=root, progress=False)
    assert torch.equal(again.train_images, data.train_images)
    monkeypatch.undo()
    # Any change to the files is read afresh.
    Image.fromarray(_draw("circle", np.random.default_rng(9))).save(root / "train/circle/new.png")
    assert len(load_dataset("folder", path=root, progress=False).train_labels) == 73


def test_image_folders_resize_and_convert(tmp_path):
    root = make_image_folders(tmp_path / "shapes", train=3, test=2)
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(root / "train/square/odd.png")
    with pytest.raises(DataError, match="set data.image_size"):
        load_dataset("folder", path=root, progress=False)
    data = load_dataset("folder", path=root, image_size=8, channels=1, progress=False)
    assert data.input_shape == (1, 8, 8)


def test_a_val_folder_stands_for_test(tmp_path):
    root = make_image_folders(tmp_path / "shapes", train=2, test=2)
    (root / "test").rename(root / "val")
    assert len(load_dataset("folder", path=root, progress=False).test_labels) == 6


@pytest.mark.parametrize(("damage", "message"), [
    (lambda root: (root / "train/circle/000.png").write_bytes(b"not a png"),
     r"train/circle/000.png cannot be read as an image"),
    (lambda root: [p.unlink() for p in (root / "test/stripes").iterdir()],
     r"test/stripes holds no PNG or JPEG images"),
    (lambda root: (root / "test/square").rename(root / "test/squares"),
     r"different classes \(only in train: \['square'\]; only in test: \['squares'\]\)"),
    (lambda root: (root / "test").rename(root / "elsewhere"), "no test/ or val/ folder"),
])
def test_bad_image_folders_get_one_clear_error(tmp_path, damage, message):
    root = make_image_folders(tmp_path / "shapes", train=2, test=2)
    damage(root)
    with pytest.raises(DataError, match=message):
        load_dataset("folder", path=root, progress=False)


@pytest.mark.slow
def test_a_folder_dataset_trains_end_to_end_and_reports_its_classes(tmp_path, capsys):
    root = make_image_folders(tmp_path / "shapes")
    recipe = tmp_path / "shapes.toml"
    recipe.write_text(f'[data]\ndataset = "folder"\npath = "{root}"\nbatch_size = 16\n'
                      '[model]\nname = "mnist_pool"\n[train]\nepochs = 1\ndevice = "cpu"\n')
    assert main(["train", str(recipe), "--out", str(tmp_path / "runs"), "--no-progress"]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    readme = (run_dir / "README.md").read_text()
    assert "3 classes: circle, square, stripes" in readme
    assert "| circle | 8 |" in readme  # the per-class table: 8 test images each
    # The run records what it trained on; the model fitted the data's channels and classes.
    config = RunFolder(run_dir).recipe().data
    assert config.classes == list(CLASSES) and len(config.mean) == 3
    assert "Conv2d-1            [-1, 8, 26, 26]" in (run_dir / "summary.txt").read_text()
    data = load_recipe_data(config)
    assert data.fingerprint() == config.fingerprint
    # Changed data is refused where the run is used again.
    Image.fromarray(_draw("square", np.random.default_rng(5))).save(root / "test/square/x.png")
    assert main(["report", str(run_dir)]) == 2
    assert "changed since this run trained on it" in capsys.readouterr().err


def test_a_user_dataset_needs_a_path_and_a_named_one_refuses_it():
    with pytest.raises(Exception, match="needs data.path"):
        load_recipe("mnist-s5-10ep", ['data.dataset="folder"'])
    with pytest.raises(Exception, match="data.path is for"):
        load_recipe("mnist-s5-10ep", ['data.path="x.npz"'])
