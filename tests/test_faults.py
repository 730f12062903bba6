"""Faults a run must survive, by mechanism: signals, a crash between two writes, a second
process on the same run folder, unsafe names, a divergence before the first checkpoint."""

import os
import pickle
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from cnnlab.cli import main
from cnnlab.config import load_recipe
from cnnlab.errors import TrainingError
from cnnlab.run_folder import RunFolder, checkpoint
from cnnlab.run_folder.checkpoint import load_checkpoint, save_atomic
from cnnlab.training import trainer
from tests.conftest import killed_in_epoch, saved_as_npz, separable_dataset, small_recipe, train_run


def _recipe(*overrides, epochs=3):
    return small_recipe(*overrides, epochs=epochs)


@pytest.mark.slow
def test_a_no_check_run_resumes_as_one(tmp_path, monkeypatch):
    recipe = _recipe("spec.max_params=100")  # mnist_pool breaks it
    real = killed_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train_run(recipe, dataset=separable_dataset(), out_dir=tmp_path, enforce_spec=False)
    monkeypatch.setattr(trainer.Trainer, "train_epoch", real)
    (run_dir,) = tmp_path.iterdir()
    result = train_run(resume=run_dir, dataset=separable_dataset())  # no enforce_spec=False given
    assert len(result.history) == 3


@pytest.mark.slow
def test_a_stale_best_checkpoint_is_repaired_on_resume(tmp_path, monkeypatch):
    # Crash after last.pt of epoch 2 (the best so far) and before its best.pt: simulated by
    # putting epoch 1's best.pt back, then a kill in epoch 3.
    real = killed_in_epoch(monkeypatch, 3)
    recorded = {}
    real_save = save_atomic

    def keep_epoch_1(state, path):
        if path.name == "best.pt" and state["epoch"] == 1:
            recorded["best_1"] = state
        real_save(state, path)

    monkeypatch.setattr(checkpoint, "save_atomic", keep_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        train_run(_recipe(), dataset=separable_dataset(), out_dir=tmp_path)
    monkeypatch.setattr(trainer.Trainer, "train_epoch", real)
    (run_dir,) = tmp_path.iterdir()
    folder = RunFolder(run_dir)
    best_epoch = max(folder.history(), key=lambda r: r["test_acc"])["epoch"]
    assert best_epoch == 2, "the separable data improves from epoch 1 to 2"
    save_atomic(recorded["best_1"], folder.best_checkpoint)  # the stale state
    train_run(resume=run_dir, dataset=separable_dataset())
    best = max(folder.history(), key=lambda r: r["test_acc"])
    assert load_checkpoint(folder.best_checkpoint)["epoch"] == best["epoch"]
    assert "best.pt repaired" in (run_dir / "log.txt").read_text()


@pytest.mark.slow
def test_an_epoch_whose_log_line_a_crash_cut_is_logged_on_resume(tmp_path, monkeypatch):
    real_log = RunFolder.log

    def crash_at_epoch_2(self, line):
        if line.startswith("epoch 2:"):  # its checkpoint and history are already written
            raise KeyboardInterrupt
        real_log(self, line)

    monkeypatch.setattr(RunFolder, "log", crash_at_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_run(_recipe(), dataset=separable_dataset(), out_dir=tmp_path)
    monkeypatch.setattr(RunFolder, "log", real_log)
    (run_dir,) = tmp_path.iterdir()
    train_run(resume=run_dir, dataset=separable_dataset())
    log = (run_dir / "log.txt").read_text()
    assert [log.count(f"epoch {n}:") for n in (1, 2, 3)] == [1, 1, 1]
    (line_2,) = [line for line in log.splitlines() if line.startswith("epoch 2:")]
    assert line_2.endswith("(logged on resume)")


@pytest.mark.slow
def test_a_second_process_cannot_train_the_same_folder(tmp_path, monkeypatch):
    real = killed_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train_run(_recipe(), dataset=separable_dataset(), out_dir=tmp_path)
    monkeypatch.setattr(trainer.Trainer, "train_epoch", real)
    (run_dir,) = tmp_path.iterdir()
    (run_dir / "checkpoints" / ".last.pt.x1y2z3w4.tmp").write_bytes(b"half a checkpoint")
    folder = RunFolder(run_dir)
    busy = pytest.raises(TrainingError, match="being trained by another process")
    with folder.training_lock(), busy:  # another process is training it
        train_run(resume=run_dir, dataset=separable_dataset())
    train_run(resume=run_dir, dataset=separable_dataset())
    assert not list(run_dir.rglob("*.tmp"))  # the SIGKILL leftover is gone


def test_runs_started_at_once_get_their_own_folders(tmp_path):
    recipe = _recipe()
    made = []

    def create():
        made.append(RunFolder.create(tmp_path, recipe).path)

    threads = [threading.Thread(target=create) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(made)) == 16 and all(p.parent == tmp_path for p in made)


@pytest.mark.parametrize("name", ["../outside", "/tmp/abs", "a/b", ".hidden", "two words"])
def test_a_recipe_name_cannot_leave_the_output_folder(tmp_path, capsys, name):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "{name}"\n[train]\nepochs = 1\n')
    assert main(["train", str(recipe), "--out", str(tmp_path / "runs")]) == 2
    assert "must be a plain folder name" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "outside").exists()


def test_a_file_name_that_is_no_folder_name_still_loads(tmp_path):
    path = tmp_path / "my recipe (v2).toml"
    path.write_text("[train]\nepochs = 1\n")
    assert load_recipe(path).name == "my-recipe-v2-"


DIVERGES_AT_ONCE = """
from torch import nn

def build():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
"""


@pytest.mark.slow
def test_a_divergence_before_any_checkpoint_says_so(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(DIVERGES_AT_ONCE)
    recipe = _recipe(f'model.name="{path}:build"', "schedule.max_lr=1e30", epochs=2)
    with pytest.raises(TrainingError, match="before any checkpoint: nothing in .* to resume"):
        train_run(recipe, dataset=separable_dataset(), out_dir=tmp_path / "runs",
                  enforce_spec=False)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert "diverged" in (run_dir / "log.txt").read_text()


def _npz_recipe(tmp_path, epochs):
    """A recipe on arrays on disk, so a separate process trains on them."""
    data = separable_dataset(n_train=2048, n_test=256)
    arrays = saved_as_npz(data, tmp_path)
    recipe = tmp_path / "arrays.toml"
    recipe.write_text(f'[data]\ndataset = "npz"\npath = "{arrays}"\n'
                      'batch_size = 64\n[model]\nname = "mnist_pool"\n'
                      f'[train]\nepochs = {epochs}\ndevice = "cpu"\n')
    return recipe


@pytest.mark.slow
def test_sigterm_stops_like_ctrl_c_and_the_run_resumes(tmp_path):
    recipe = _npz_recipe(tmp_path, epochs=40)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "cnnlab.cli", "train", str(recipe), "--out", str(tmp_path / "runs"),
         "--no-progress"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "runs").glob("*/history.jsonl")):
        assert time.monotonic() < deadline and process.poll() is None, process.stderr.read()
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    err = process.stderr.read()
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert f"stopped by SIGTERM; continue with: cnnlab train --resume {run_dir}" in err
    assert "Traceback" not in err
    assert "stopped by SIGTERM in epoch" in (run_dir / "log.txt").read_text()
    assert not list(run_dir.rglob("*.tmp"))
    done = len(RunFolder(run_dir).history())
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == done


def test_an_interrupt_before_the_first_epoch_offers_nothing_to_resume(tmp_path, monkeypatch,
                                                                      capsys):
    recipe = _npz_recipe(tmp_path, epochs=2)
    monkeypatch.setattr(trainer.Trainer, "train_epoch",
                        lambda self, epoch, *args: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(["train", str(recipe), "--out", str(tmp_path / "runs"), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "stopped by SIGINT" in err and "--resume" not in err


def test_a_checkpoint_with_code_in_it_is_refused_without_torchs_advice(tmp_path):
    bad = tmp_path / "last.pt"
    torch.save({"epoch": 1, "model": object()}, bad)
    with pytest.raises(TrainingError) as info:
        load_checkpoint(bad)
    assert "weights_only=False" not in str(info.value)
    assert "not a cnnlab checkpoint" in str(info.value)


class _HugeArray:
    """Pickles as numpy's own array reconstruction, asking for 10^11 bytes of data."""

    def __reduce__(self):
        reconstruct = np._core.multiarray._reconstruct
        return (reconstruct, (np.ndarray, (0,), b"b"),
                (1, (10**11,), np.dtype(np.uint8), False, b"x"))


def test_a_tiny_pickle_cannot_make_the_loader_allocate_gigabytes(tmp_path):
    from cnnlab.data import cifar_files
    from cnnlab.errors import DataError

    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _HugeArray(), b"labels": []}, protocol=2))
    assert path.stat().st_size < 1000
    with pytest.raises(DataError, match="more than a CIFAR file holds"):
        cifar_files.safe_unpickle(path, "CIFAR-10")


def test_an_edited_data_file_is_caught_even_with_its_mtime_put_back(fake_mnist):
    from cnnlab.data import load_dataset
    from cnnlab.errors import DataError

    root, _ = fake_mnist(gz=False)
    load_dataset("mnist", root)  # verified and cached
    path = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] = (data[-1] + 1) % 10  # one label changed
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns and path.stat().st_size == before.st_size
    with pytest.raises(DataError, match="train-labels-idx1-ubyte is corrupt"):
        load_dataset("mnist", root)


class _MisbehavingMirrors:
    """A local HTTP server whose paths misbehave on purpose: /cut/ sends half the bytes it
    promises, /stall/ sends headers and then nothing, /corrupt/ sends other bytes, /good/
    serves the files."""

    def __init__(self, files: dict[str, bytes]):
        import http.server

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                mode, _, name = self.path.strip("/").partition("/")
                body = files.get(name)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "cut":
                    self.wfile.write(body[: len(body) // 2])
                elif mode == "stall":
                    outer.release.wait(10)  # silent until the test ends
                elif mode == "corrupt":
                    self.wfile.write(bytes(len(body)))
                else:
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.release = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
@pytest.mark.slow


def test_downloads_survive_cut_stalled_and_corrupt_mirrors(fake_mnist, tmp_path, monkeypatch):
    import dataclasses
    import gzip

    from cnnlab.data import download, idx_files, load_dataset
    from cnnlab.errors import DataError

    source_root, contents = fake_mnist()
    files = {f"{name}.gz": gzip.compress(data) for name, data in contents.items()}
    mirrors = _MisbehavingMirrors(files)
    monkeypatch.setattr(download, "READ_TIMEOUT", 1.0)
    try:
        source = idx_files.SOURCES["mnist"]
        bad = tuple(f"{mirrors.url}/{mode}/" for mode in ("cut", "stall", "corrupt"))
        monkeypatch.setitem(idx_files.SOURCES, "mnist", dataclasses.replace(source, mirrors=bad))
        root = tmp_path / "fresh"
        with pytest.raises(DataError) as info:
            load_dataset("mnist", root)
        message = str(info.value)
        assert "/corrupt/" in message and "the server sent a file that is" in message
        assert ".part" not in message and "Traceback" not in message
        assert "delete it" not in message  # advice about a local file, of which there is none
        assert not root.exists()  # nothing half-written, no empty folders
        good = (*bad, f"{mirrors.url}/good/")
        monkeypatch.setitem(idx_files.SOURCES, "mnist", dataclasses.replace(source, mirrors=good))
        data = load_dataset("mnist", root, progress=False)  # no bar: the bytes still counted
        assert len(data.train_labels) == 64
        assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(files)
    finally:
        mirrors.close()


BROKEN_BUILDERS = """
from torch import nn

def raises():
    raise RuntimeError("my builder is broken")

def wrong_classes(num_classes=10):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 7))
"""


@pytest.mark.parametrize(("builder", "message"), [
    ("raises", "building model .* failed: RuntimeError: my builder is broken"),
    ("wrong_classes", r"gives \(7,\) per image but the data has 10 classes"),
])
def test_a_broken_user_model_is_one_line_before_anything_is_written(tmp_path, capsys, builder,
                                                                    message):
    import re

    path = tmp_path / "nets.py"
    path.write_text(BROKEN_BUILDERS)
    recipe = _npz_recipe(tmp_path, epochs=1)
    code = main(["train", str(recipe), "--set", f'model.name="{path}:{builder}"', "--out",
                 str(tmp_path / "runs"), "--no-check"])
    err = capsys.readouterr().err
    assert code == 2 and re.search(message, err) and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_a_one_cycle_too_short_for_its_phases_says_so(tmp_path, capsys):
    recipe = _npz_recipe(tmp_path, epochs=1)
    # 256 images in batches of 64, one epoch: 4 steps, a quarter of them warm-up: 1 step,
    # which leaves torch's warm-up phase empty (it would divide by zero).
    code = main(["train", str(recipe), "--set", "data.train_limit=256", "--set",
                 'schedule.name="onecycle"', "--set", "schedule.max_lr=0.1", "--set",
                 "schedule.pct_start=0.25", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "One Cycle needs a few steps in each phase" in err
    assert not (tmp_path / "runs").exists()


def test_an_output_folder_that_is_a_file_is_one_line(tmp_path, capsys):
    recipe = _npz_recipe(tmp_path, epochs=1)
    (tmp_path / "runs").write_text("not a folder")
    code = main(["train", str(recipe), "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and "is a file, not a folder" in err and len(err.strip().splitlines()) == 1
    assert (tmp_path / "runs").read_text() == "not a folder"


def test_a_full_disk_is_named_as_such(tmp_path, capsys, monkeypatch):
    import errno

    from cnnlab import run_folder

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs"))

    monkeypatch.setattr(run_folder.RunFolder, "create", full)
    recipe = _npz_recipe(tmp_path, epochs=1)
    assert main(["train", str(recipe), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "the disk is full" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_checkpoint_on_a_full_disk_raises_the_disk_error_naming_the_checkpoint(
        tmp_path, monkeypatch):
    import errno

    from cnnlab import atomic_file

    def full_file(folder, name):
        # /dev/full takes the bytes and answers every write with ENOSPC, as a full disk does;
        # the temporary file is made too, so the cleanup has one to remove.
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT, dir_fd=folder))
        return os.open("/dev/full", os.O_WRONLY)

    monkeypatch.setattr(atomic_file, "_open_temp", full_file)
    path = tmp_path / "last.pt"
    with pytest.raises(OSError) as info:  # not torch's RuntimeError("unexpected pos ...")
        save_atomic({"epoch": 1, "model": {"w": torch.zeros(4096)}}, path)
    assert info.value.errno == errno.ENOSPC and info.value.filename == str(path)
    assert not path.exists()
