import dataclasses
import gzip
import hashlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from cnnlab import pipeline
from cnnlab.cli import main
from cnnlab.config import Recipe, load_recipe
from cnnlab.data import Dataset, idx_files
from cnnlab.run_result import RunResult

# `make test` runs the test files in parallel workers (pytest-xdist, one per core): each worker
# and the processes its tests start take their share of the cores, since two workers with
# every core each run several times slower than one alone.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ["OMP_NUM_THREADS"] = str(_threads)
    torch.set_num_threads(_threads)

# Absolute, so a test that runs a command from another folder finds the data (.ci/run sets
# a path relative to the checkout).
REAL_DATA = (Path(os.environ["CNNLAB_DATA"]).resolve() if os.environ.get("CNNLAB_DATA")
             else None)
# What this test run must have rather than skip without: .ci/run sets "data,browser".
REQUIRED = {w.strip() for w in os.environ.get("CNNLAB_TEST_REQUIRE", "").split(",") if w.strip()}


def skip_unless_required(what: str, reason: str) -> None:
    """Skip for `reason`, unless `what` ("data", "browser") is in $CNNLAB_TEST_REQUIRE: then
    the missing piece fails the test, so CI never passes by skipping."""
    if what in REQUIRED:
        pytest.fail(f"{reason} (required here: CNNLAB_TEST_REQUIRE={','.join(sorted(REQUIRED))})")
    pytest.skip(reason)


def chromium_path() -> str:
    """The Chromium to drive (report pages, the web app), or a skip that says how to get it."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    skip_unless_required("browser", "Chromium is not installed (apt-get install chromium; "
                                    ".ci/run installs it)")


def killed_in_epoch(monkeypatch, doomed: int):
    """Make training raise KeyboardInterrupt (Ctrl-C) as epoch `doomed` starts; returns the real
    `train_epoch`, for the test to put back."""
    from cnnlab.training import trainer

    real = trainer.Trainer.train_epoch

    def train_epoch(self, epoch, *args):
        if epoch == doomed:
            raise KeyboardInterrupt
        return real(self, epoch, *args)

    monkeypatch.setattr(trainer.Trainer, "train_epoch", train_epoch)
    return real


def run_killed_in_epoch(epoch: int, recipe, tmp_path, monkeypatch) -> Path:
    """Train `recipe` on the separable data under tmp_path/runs until Ctrl-C arrives at the
    start of `epoch`; returns its run folder."""
    from cnnlab.training import trainer

    real_epoch = killed_in_epoch(monkeypatch, epoch)
    with pytest.raises(KeyboardInterrupt):
        train_run(recipe, dataset=separable_dataset(), out_dir=tmp_path / "runs")
    monkeypatch.setattr(trainer.Trainer, "train_epoch", real_epoch)
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir


@pytest.fixture(autouse=True)
def private_cache(tmp_path, tmp_path_factory, monkeypatch):
    """Each test gets its own verification cache, so no test sees another's verdicts, and its
    own config folder (the signing key), so no test signs with the user's key."""
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CNNLAB_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))


def _shared_data(folder: str) -> Path:
    if REAL_DATA is None or not (REAL_DATA / folder).is_dir():
        skip_unless_required("data", f"set CNNLAB_DATA to the folder holding {folder} "
                                     "(.ci/run does)")
    return REAL_DATA


@pytest.fixture
def real_data_root() -> Path:
    """The shared data root, with real MNIST."""
    return _shared_data("MNIST/raw")


@pytest.fixture
def cifar_data_root() -> Path:
    """The shared data root, with real CIFAR-10."""
    return _shared_data("cifar-10-batches-py")


def idx_bytes(array: torch.Tensor) -> bytes:
    header = bytes((0, 0, 0x08, array.dim())) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    return header + array.to(torch.uint8).numpy().tobytes()


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """A small MNIST-format data root whose checksums cnnlab is told to expect."""

    def make(n_train=64, n_test=32, gz=True, root=None):
        root = root or tmp_path / "data"
        folder = root / "MNIST" / "raw"
        folder.mkdir(parents=True, exist_ok=True)
        gen = torch.Generator().manual_seed(0)
        arrays = {
            "train-images-idx3-ubyte": torch.randint(0, 256, (n_train, 28, 28), generator=gen),
            "train-labels-idx1-ubyte": torch.arange(n_train) % 10,
            "t10k-images-idx3-ubyte": torch.randint(0, 256, (n_test, 28, 28), generator=gen),
            "t10k-labels-idx1-ubyte": torch.arange(n_test) % 10,
        }
        contents = {name: idx_bytes(a) for name, a in arrays.items()}
        for name, data in contents.items():
            if gz:
                (folder / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (folder / name).write_bytes(data)
        sums = {n: hashlib.md5(d).hexdigest() for n, d in contents.items()}
        monkeypatch.setitem(idx_files.SOURCES, "mnist",
                            dataclasses.replace(idx_files.SOURCES["mnist"], content_md5=sums))
        return root, contents

    return make


def separable_dataset(n_train=512, n_test=256, seed=0) -> Dataset:
    """28x28 images whose class is written as a bright block at a class-specific place, plus
    noise: learnable in a few steps, so tests can assert that training works."""
    gen = torch.Generator().manual_seed(seed)

    def split(n):
        labels = torch.randint(0, 10, (n,), generator=gen)
        images = torch.randint(0, 60, (n, 1, 28, 28), generator=gen)
        for cls in range(10):
            r, c = divmod(cls, 4)
            images[labels == cls, :, 2 + 8 * r: 8 + 8 * r, 2 + 6 * c: 7 + 6 * c] = 255
        return images.to(torch.uint8), labels

    return Dataset("mnist", *split(n_train), *split(n_test), (0.1307,), (0.3081,),
                   tuple(str(i) for i in range(10)))


def saved_as_npz(data: Dataset, folder: Path) -> Path:
    """`data` written as a user's arrays (`dataset = "npz"`): what a process of its own loads."""
    path = folder / "data.npz"
    np.savez(path, x_train=data.train_images[:, 0].numpy(), y_train=data.train_labels.numpy(),
             x_test=data.test_images[:, 0].numpy(), y_test=data.test_labels.numpy())
    return path


def trained_array_run(root: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A 2-epoch mnist_s5 run trained through the CLI on 640 digits-like images saved as arrays
    under `root` (an export reads a run's data as the run did); its folder, then the 260 test
    images and labels."""
    rng = np.random.default_rng(0)
    labels = np.arange(900) % 10
    images = (rng.random((900, 28, 28)) * 60).astype(np.uint8)
    images[np.arange(900), labels * 2 + 4, 4:24] = 255  # a bright row per class
    np.savez(root / "data.npz", x_train=images[:640], y_train=labels[:640],
             x_test=images[640:], y_test=labels[640:])
    recipe = root / "arrays.toml"
    recipe.write_text(f'name = "arrays"\n[data]\ndataset = "npz"\npath = "{root / "data.npz"}"\n'
                      'batch_size = 64\n[model]\nname = "mnist_s5"\n'
                      '[train]\nepochs = 2\ndevice = "cpu"\n')
    assert main(["train", str(recipe), "--out", str(root / "runs"), "--no-progress",
                 "--no-check"]) == 0
    (run,) = (root / "runs").iterdir()
    return run, images[640:], labels[640:]


# mnist-s5-10ep made small and plain for tests: batch 64, test batches of 100, the CPU, no EMA
SMALL = ("data.batch_size=64", "data.eval_batch_size=100", "train.device=cpu",
         "train.ema_decay=0.0")


def small_recipe(*overrides: str, epochs: int = 2) -> Recipe:
    """The default recipe, small (SMALL), for `epochs` epochs, then `overrides` (--set's)."""
    return load_recipe("mnist-s5-10ep", [*SMALL, f"train.epochs={epochs}", *overrides])


def train_run(recipe=None, resume=None, **kwargs) -> RunResult:
    """`cnnlab.train(recipe)`, or `cnnlab.resume(resume)`, without progress bars, log lines or
    the report, unless a test asks."""
    for key, quiet in (("progress", False), ("echo", None), ("report", False)):
        kwargs.setdefault(key, quiet)
    return pipeline.resume(resume, **kwargs) if resume is not None \
        else pipeline.train(recipe, **kwargs)


def seeded(seed: int = 0) -> torch.Generator:
    """A CPU generator at `seed`: the random source the augmentation functions take."""
    return torch.Generator().manual_seed(seed)


def without_timings(history: list[dict]) -> list[dict]:
    """A history minus its wall-clock fields: what two identical runs must agree on."""
    return [{k: v for k, v in row.items() if "seconds" not in k} for row in history]


def run_reproduce_line(readme: Path, data_root: Path, cwd: Path) -> int:
    """Run the command under a README's "Reproduce" heading as a user pastes it, from `cwd`
    (elsewhere than where it was written, when the README's paths are absolute), with the
    data at `data_root`; its exit status."""
    text = readme.read_text(encoding="utf-8").split("## Reproduce", 1)[1]
    line = text.split("```", 2)[1].strip().splitlines()[-1]
    assert line.startswith("cnnlab "), line
    cwd.mkdir(parents=True, exist_ok=True)
    here = os.getcwd()
    os.chdir(cwd)
    try:
        return main([*shlex.split(line)[1:], "--data-dir", str(data_root), "--no-progress"])
    finally:
        os.chdir(here)


def kill_cnnlab_when(args: list[str], data_root: Path, ready: Callable[[], bool],
                     timeout: float, sig: int = signal.SIGKILL) -> str:
    """Run `cnnlab ARGS` in its own process (one thread, the data at `data_root`) and SIGKILL
    it (or send `sig`) once `ready()` holds: a crash at the moment the test chooses. Returns
    what it wrote to stderr."""
    env = {**os.environ, "CNNLAB_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "cnnlab.cli", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
        time.sleep(0.2)
    process.send_signal(sig)
    process.wait()
    return process.stderr.read().decode()
