import gzip
import io
import urllib.error

import pytest
import torch

from cnnlab.data import download, load_dataset, verify
from cnnlab.errors import DataError


def test_real_mnist_matches_the_published_counts(real_data_root):
    data = load_dataset("mnist", real_data_root)
    assert data.train_images.shape == (60000, 1, 28, 28)
    assert data.test_images.shape == (10000, 1, 28, 28)
    assert data.train_images.dtype == torch.uint8
    assert torch.bincount(data.train_labels).tolist() == [
        5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert torch.bincount(data.test_labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    pixels = data.train_images.float() / 255
    assert pixels.mean().item() == pytest.approx(data.mean[0], abs=1e-4)
    assert pixels.std().item() == pytest.approx(data.std[0], abs=1e-4)


@pytest.mark.parametrize("gz", [True, False])
def test_reads_gz_and_raw_files(fake_mnist, gz):
    root, contents = fake_mnist(gz=gz)
    data = load_dataset("mnist", root)
    assert data.train_images.shape == (64, 1, 28, 28)
    assert data.test_labels.tolist() == [i % 10 for i in range(32)]
    raw = contents["train-images-idx3-ubyte"]
    assert data.train_images.flatten().tolist() == list(raw[16:])


def test_data_dir_beats_environment(fake_mnist, tmp_path, monkeypatch):
    root, _ = fake_mnist()
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "elsewhere"))
    assert len(load_dataset("mnist", root).train_labels) == 64
    monkeypatch.setenv("CNNLAB_DATA", str(root))
    assert len(load_dataset("mnist").train_labels) == 64


def test_checksum_is_computed_once_per_file(fake_mnist, monkeypatch):
    root, _ = fake_mnist()
    calls = []
    real_md5 = verify.md5_hex
    monkeypatch.setattr(verify, "md5_hex", lambda data: calls.append(1) or real_md5(data))
    load_dataset("mnist", root)
    assert len(calls) == 4
    load_dataset("mnist", root)
    assert len(calls) == 4  # verdicts came from the cache


def test_changed_file_is_verified_again(fake_mnist):
    root, contents = fake_mnist(gz=False)
    load_dataset("mnist", root)
    path = root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    data = bytearray(contents["t10k-images-idx3-ubyte"])
    data[100] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.*checksum"):
        load_dataset("mnist", root)


def test_truncated_gzip_names_the_file(fake_mnist):
    root, _ = fake_mnist()
    path = root / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz is truncated"):
        load_dataset("mnist", root)


def test_truncated_raw_file_names_the_file(fake_mnist):
    root, contents = fake_mnist(gz=False)
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(contents["train-images-idx3-ubyte"][:1000])
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_dataset("mnist", root)


def test_wrong_file_names_the_file(fake_mnist):
    root, _ = fake_mnist()
    path = root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"not mnist at all"))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz.*checksum"):
        load_dataset("mnist", root)


def _offline(url, timeout=30.0):
    raise urllib.error.URLError("no network in tests")


def test_missing_files_offline_name_files_and_folder(fake_mnist, tmp_path, monkeypatch):
    root, _ = fake_mnist()
    (root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").unlink()
    monkeypatch.setattr(download, "open_url", _offline)
    with pytest.raises(DataError) as info:
        load_dataset("mnist", root)
    message = str(info.value)
    assert "t10k-images-idx3-ubyte" in message and str(root / "MNIST" / "raw") in message
    assert "train-images" not in message  # only what is missing is named
    assert "\n" not in message
    assert not [p for p in (root / "MNIST" / "raw").iterdir() if p.name.startswith(".")]


def test_offline_leaves_no_folders_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "open_url", _offline)
    with pytest.raises(DataError, match="missing"):
        load_dataset("mnist", tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


class _FakeResponse(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def test_missing_files_are_downloaded_verified_and_renamed(fake_mnist, monkeypatch):
    root, contents = fake_mnist()
    folder = root / "MNIST" / "raw"
    for name in ("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (folder / f"{name}.gz").unlink()
    fetched = []

    def serve(url, timeout=30.0):
        name = url.rsplit("/", 1)[1].removesuffix(".gz")
        fetched.append(url)
        return _FakeResponse(gzip.compress(contents[name]))

    monkeypatch.setattr(download, "open_url", serve)
    data = load_dataset("mnist", root)
    assert len(data.train_images) == 64
    assert sorted(u.rsplit("/", 1)[1] for u in fetched) == [
        "t10k-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz"]
    assert fetched[0].startswith("https://")
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{n}.gz" for n in contents)


def test_bad_download_is_not_kept(fake_mnist, monkeypatch):
    root, _ = fake_mnist()
    folder = root / "MNIST" / "raw"
    (folder / "train-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setattr(download, "open_url", lambda url, timeout=30.0: _FakeResponse(b"<html>"))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte"):
        load_dataset("mnist", root)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"])


def test_download_cut_off_midway_leaves_nothing(tmp_path, monkeypatch):
    class Broken(_FakeResponse):
        def read(self, size=-1):
            if self.tell() > 10:
                raise ConnectionResetError("connection reset")
            return super().read(10)

    monkeypatch.setattr(download, "open_url", lambda url, timeout=30.0: Broken(b"x" * 100))
    dest = tmp_path / "file.gz"
    with pytest.raises(DataError, match="ConnectionResetError: connection reset"):
        download.download("https://example.invalid/file.gz", dest, verify=lambda p: None)
    assert list(tmp_path.iterdir()) == []
