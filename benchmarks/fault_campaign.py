"""The reliability campaign: bad inputs and faults tried as a new, careless or hostile user
would, each in its own scratch folder through the real `cnnlab` command, with real files,
real signals, a real full disk (a small tmpfs), a real read-only filesystem and a local proxy
that refuses, cuts, stalls and corrupts downloads.

Every case is checked for the same things besides its own: the exit code it should give, no
Python traceback on any output, an error that is one line, no temporary file left behind,
and no run folder where the run should have stopped before writing one.

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/fault_campaign.py [--only WORD]

Prints a Markdown table of cases and outcomes, then `fault_campaign cases=... passed=...`.
The disk-full and read-only cases mount a tmpfs and need root; elsewhere they are listed as
skipped with that reason. Takes about five minutes on 2 cores (12 on one busy thread).
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import pickle
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tomli_w
import torch

from cnnlab.train.checkpoint import load_checkpoint
from cnnlab.train.history import best_row

DATA = Path(os.environ.get("CNNLAB_DATA", "../shared/data")).resolve()
SMALL = ["--set", "data.train_limit=1024", "--set", "data.test_limit=256",
         "--set", "train.epochs=2", "--no-progress"]
LONGER = ["--set", "data.train_limit=6144", "--set", "data.test_limit=256",
          "--set", "train.epochs=4", "--no-progress"]
LEFTOVERS = ("*.tmp", "*.part", ".*.tmp", ".*.part")


@dataclass
class Finished:
    code: int
    out: str
    err: str


@dataclass
class Scratch:
    """One case's folder: its own `runs/`, its processes' outputs, its mounts."""

    root: Path
    env: dict[str, str]
    outputs: list[str] = field(default_factory=list)
    mounts: list[Path] = field(default_factory=list)

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "cnnlab", *args]

    def cnnlab(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300
               ) -> Finished:
        done = subprocess.run(self.command(*args), cwd=self.root, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=timeout)
        self.outputs += [done.stdout, done.stderr]
        return Finished(done.returncode, done.stdout, done.stderr)

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        # A shell starts background jobs with SIGINT ignored, and children inherit that: give
        # the run the terminal's default, as a user's Ctrl-C would find it.
        return subprocess.Popen(self.command(*args), cwd=self.root,
                                env={**self.env, **(env or {})}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def finish(self, process: subprocess.Popen, timeout: float = 300) -> Finished:
        out, err = process.communicate(timeout=timeout)
        self.outputs += [out, err]
        return Finished(process.returncode, out, err)

    def run_folders(self, under: Path | None = None) -> list[Path]:
        base = under or self.runs
        return sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def mount_tmpfs(self, name: str, size: str) -> Path:
        path = self.root / name
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       check=True)
        self.mounts.append(path)
        return path

    def read_only(self, path: Path) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


@dataclass
class Case:
    group: str
    what: str
    expect: int  # the exit code of the case's last command
    run: Callable[[Scratch], tuple[Finished, list[str]]]
    folder: bool = False  # may the case leave a run folder in runs/?
    needs_root: bool = False


CASES: list[Case] = []


def case(group: str, what: str, expect: int, *, folder: bool = False,
         needs_root: bool = False) -> Callable:
    def add(fn: Callable[[Scratch], Finished | tuple[Finished, list[str]]]) -> Callable:
        def run(s: Scratch) -> tuple[Finished, list[str]]:
            result = fn(s)
            return result if isinstance(result, tuple) else (result, [])
        CASES.append(Case(group, what, expect, run, folder, needs_root))
        return fn
    return add


def train(s: Scratch, *args: str, recipe: str = "mnist-s5-10ep", **kw) -> Finished:
    return s.cnnlab("train", recipe, "--out", str(s.runs), *SMALL, *args, **kw)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def data_copy(s: Scratch, *names: str) -> Path:
    """A private copy of some of the real data folders, to damage."""
    root = s.root / "data"
    for name in names:
        shutil.copytree(DATA / name, root / name)
    return root


def expect_in(text: str, *words: str) -> list[str]:
    return [f"the message does not say {word!r}" for word in words if word not in text]


# --- recipes and the command line: refused before anything is written ---------------------

@case("recipe", "unknown recipe name", 2)
def _(s): return s.cnnlab("train", "mnist-99.9", "--out", str(s.runs))


@case("recipe", "recipe file that does not exist", 2)
def _(s): return s.cnnlab("train", "mine.toml", "--out", str(s.runs))


@case("recipe", "TOML syntax error", 2)
def _(s):
    return s.cnnlab("train", str(write(s.root / "r.toml", "name = \n[train\n")), "--out",
                    str(s.runs))


@case("recipe", "unknown section in a recipe file", 2)
def _(s):
    recipe = write(s.root / "r.toml", "[trian]\nepochs = 1\n")
    return s.cnnlab("train", str(recipe), "--out", str(s.runs))


@case("recipe", "misspelt key in --set", 2)
def _(s): return train(s, "--set", "train.epoch=3")


@case("recipe", "value of the wrong type", 2)
def _(s): return train(s, "--set", "train.epochs=three")


@case("recipe", "epochs = 0", 2)
def _(s): return train(s, "--set", "train.epochs=0")


@case("recipe", "negative train_limit", 2)
def _(s): return train(s, "--set", "data.train_limit=-5")


@case("recipe", "a choice that does not exist (optimizer)", 2)
def _(s): return train(s, "--set", "optim.name=adamw2")


@case("recipe", "--set without '='", 2)
def _(s): return train(s, "--set", "train.epochs")


@case("recipe", "val_split of 1.5", 2)
def _(s): return train(s, "--set", "data.val_split=1.5")


@case("recipe", "name '../outside' (escape --out)", 2)
def _(s):
    recipe = write(s.root / "r.toml", 'name = "../outside"\n[train]\nepochs = 1\n')
    result = s.cnnlab("train", str(recipe), "--out", str(s.runs), *SMALL)
    return result, ["a folder appeared outside --out"] if (s.root / "outside").exists() else []


@case("recipe", "name an absolute path", 2)
def _(s):
    target = s.root / "abs-target"
    recipe = write(s.root / "r.toml", f'name = "{target}"\n[train]\nepochs = 1\n')
    result = s.cnnlab("train", str(recipe), "--out", str(s.runs), *SMALL)
    return result, ["a folder appeared at the absolute path"] if target.exists() else []


@case("recipe", "One Cycle too short for its phases", 2)
def _(s): return s.cnnlab("train", "cifar-s9-batched", "--out", str(s.runs), "--no-progress",
                          "--set", "data.train_limit=512", "--set", "data.test_limit=64",
                          "--set", "train.epochs=1", "--set", "data.batch_size=128")


@case("cli", "unknown flag", 2)
def _(s): return s.cnnlab("train", "mnist-s5-10ep", "--epochs", "3")


@case("cli", "--device cuda on a machine without one", 2)
def _(s):
    if torch.cuda.is_available():
        return Finished(2, "", "not tried: this machine has a GPU")
    return train(s, "--device", "cuda")


@case("cli", "--seed not a number", 2)
def _(s): return train(s, "--seed", "x")


@case("cli", "unknown verb", 2)
def _(s): return s.cnnlab("trian", "mnist-s5-10ep")


# --- data: missing, damaged, hostile, downloaded badly -------------------------------------

class Proxy(http.server.ThreadingHTTPServer):
    """An HTTP proxy on 127.0.0.1 that misbehaves as `mode` says: refuses tunnels (https
    mirrors) and, for plain http, cuts the body short, stalls, or sends the wrong bytes."""

    daemon_threads = True

    def __init__(self, mode: str):
        self.mode = mode
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_CONNECT(self) -> None:  # noqa: N802 (http.server's name)
        self.send_error(502, "no tunnels here")

    def do_GET(self) -> None:  # noqa: N802
        mode = self.server.mode
        self.send_response(200)
        self.send_header("Content-Length", "1000000")
        self.end_headers()
        if mode == "cut":
            self.wfile.write(b"\x1f\x8b" + bytes(5000))
        elif mode == "stall":
            self.wfile.write(b"\x1f\x8b")
            self.wfile.flush()
            time.sleep(45)
        else:  # corrupt: all the bytes promised, the wrong ones
            self.wfile.write(b"\x1f\x8b" + os.urandom(999998))
        self.close_connection = True


def download_case(s: Scratch, mode: str, recipe: str = "fashion-100k"
                  ) -> tuple[Finished, list[str]]:
    proxy = Proxy(mode)
    empty = s.root / "empty-data"
    empty.mkdir()
    try:
        result = s.cnnlab("train", recipe, "--out", str(s.runs), "--data-dir", str(empty), *SMALL,
                          env={"http_proxy": proxy.url, "https_proxy": proxy.url, "no_proxy": ""},
                          timeout=600)
    finally:
        proxy.shutdown()
    files = [p for p in empty.rglob("*") if p.is_file()]
    return result, [f"left {p.name} in the data folder" for p in files]


@case("data", "no data and every mirror refuses (https tunnels)", 2)
def _(s): return download_case(s, "refuse", recipe="mnist-s5-10ep")


@case("data", "download cut off mid-stream", 2)
def _(s):
    result, problems = download_case(s, "cut")
    return result, problems + expect_in(result.err, "cut off")


@case("data", "download stalls (server silent)", 2)
def _(s): return download_case(s, "stall")


@case("data", "download sends the wrong bytes", 2)
def _(s):
    result, problems = download_case(s, "corrupt")
    return result, problems + expect_in(result.err, "the server sent a file that is")


@case("data", "MNIST file truncated", 2)
def _(s):
    root = data_copy(s, "MNIST")
    path = root / "MNIST/raw/train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    return train(s, "--data-dir", str(root))


@case("data", "one byte of MNIST changed, size and mtime put back", 2)
def _(s):
    root = data_copy(s, "MNIST")
    path = root / "MNIST/raw/t10k-labels-idx1-ubyte.gz"
    train(s, "--data-dir", str(root), "--set", "train.epochs=1")  # verified and cached once
    shutil.rmtree(s.runs)
    stat = path.stat()
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    return train(s, "--data-dir", str(root))


@case("data", "an MNIST file replaced by a folder", 2)
def _(s):
    root = data_copy(s, "MNIST")
    path = root / "MNIST/raw/train-images-idx3-ubyte.gz"
    path.unlink()
    path.mkdir()
    return train(s, "--data-dir", str(root))


@case("data", "--data-dir is a file", 2)
def _(s): return train(s, "--data-dir", str(write(s.root / "data.txt", "x")))


class RunsCode:
    """Unpickling this runs a shell command: what a hostile data file would hold."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def cifar_with(s: Scratch, batch_bytes: bytes) -> Path:
    root = data_copy(s, "cifar-10-batches-py")
    (root / "cifar-10-batches-py/data_batch_1").write_bytes(batch_bytes)
    return root


@case("data", "CIFAR batch whose pickle runs code", 2)
def _(s):
    root = cifar_with(s, pickle.dumps({"data": RunsCode(), "labels": [0]}))
    result = train(s, "--data-dir", str(root), recipe="cifar-s9-batched")
    return result, ["the pickle's code ran"] if (s.root / "PWNED").exists() else []


class HugeArray:
    """Unpickles, with names a CIFAR file may use, into a request for 10^11 bytes."""

    def __reduce__(self):
        return (np._core.multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                (1, (10**11,), np.dtype(np.uint8), False, b"x"))


@case("data", "CIFAR batch: a tiny pickle asking for 100 GB", 2)
def _(s):
    hostile = pickle.dumps({b"data": HugeArray(), b"labels": []}, protocol=2)
    return train(s, "--data-dir", str(cifar_with(s, hostile)), recipe="cifar-s9-batched")


def npz_recipe(s: Scratch, **arrays: np.ndarray) -> str:
    np.savez(s.root / "data.npz", **arrays)
    return str(write(s.root / "arrays.toml",
                     f'[data]\ndataset = "npz"\npath = "{s.root / "data.npz"}"\n'
                     '[model]\nname = "mnist_pool"\n[train]\nepochs = 1\n'))


def images(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (n, 28, 28), dtype=np.uint8)


@case("data", "npz without y_test", 2)
def _(s):
    recipe = npz_recipe(s, x_train=images(64), y_train=np.zeros(64, np.int64), x_test=images(16))
    return s.cnnlab("train", recipe, "--out", str(s.runs), "--no-progress")


@case("data", "npz that is a text file", 2)
def _(s):
    recipe = npz_recipe(s, x=np.zeros(1))
    write(s.root / "data.npz", "not an archive")
    return s.cnnlab("train", recipe, "--out", str(s.runs), "--no-progress")


@case("data", "npz: 64 images, 60 labels", 2)
def _(s):
    recipe = npz_recipe(s, x_train=images(64), y_train=np.zeros(60, np.int64),
                        x_test=images(16), y_test=np.zeros(16, np.int64))
    return s.cnnlab("train", recipe, "--out", str(s.runs), "--no-progress")


@case("data", "npz: negative labels", 2)
def _(s):
    recipe = npz_recipe(s, x_train=images(64), y_train=-np.ones(64, np.int64),
                        x_test=images(16), y_test=np.zeros(16, np.int64))
    return s.cnnlab("train", recipe, "--out", str(s.runs), "--no-progress")


@case("data", "npz holding a pickled object array", 2)
def _(s):
    objects = np.array([RunsCode()] * 4, dtype=object)
    recipe = npz_recipe(s, x_train=objects, y_train=np.zeros(4, np.int64),
                        x_test=images(16), y_test=np.zeros(16, np.int64))
    result = s.cnnlab("train", recipe, "--out", str(s.runs), "--no-progress")
    return result, ["the pickle's code ran"] if (s.root / "PWNED").exists() else []


def folder_recipe(s: Scratch) -> str:
    return str(write(s.root / "folder.toml",
                     f'[data]\ndataset = "folder"\npath = "{s.root / "imgs"}"\n'
                     'image_size = 28\n[model]\nname = "mnist_pool"\n[train]\nepochs = 1\n'))


def png(path: Path, value: int) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((28, 28), value, np.uint8)).save(path)


@case("data", "image folder without train/", 2)
def _(s):
    png(s.root / "imgs/test/a/0.png", 0)
    return s.cnnlab("train", folder_recipe(s), "--out", str(s.runs), "--no-progress")


@case("data", "image folder with a corrupt PNG", 2)
def _(s):
    for split in ("train", "test"):
        for label, value in (("a", 0), ("b", 255)):
            png(s.root / f"imgs/{split}/{label}/0.png", value)
    write(s.root / "imgs/train/a/broken.png", "not a png")
    return s.cnnlab("train", folder_recipe(s), "--out", str(s.runs), "--no-progress")


@case("data", "image folder with test classes unknown to train", 2)
def _(s):
    png(s.root / "imgs/train/a/0.png", 0)
    png(s.root / "imgs/train/b/0.png", 255)
    png(s.root / "imgs/test/c/0.png", 9)
    return s.cnnlab("train", folder_recipe(s), "--out", str(s.runs), "--no-progress")


# --- a user's model -------------------------------------------------------------------------

def model_case(s: Scratch, source: str) -> Finished:
    write(s.root / "net.py", source)
    return train(s, "--set", f"model.name={s.root / 'net.py'}:build", "--no-check")


@case("model", "builder that raises", 2)
def _(s): return model_case(s, "def build():\n    raise ValueError('widths must be even')\n")


@case("model", "model file with a syntax error", 2)
def _(s): return model_case(s, "def build(:\n")


@case("model", "builder that is missing from its file", 2)
def _(s): return model_case(s, "def other():\n    pass\n")


@case("model", "model with 7 outputs for 10 classes", 2)
def _(s): return model_case(s, "from torch import nn\ndef build():\n"
                              "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 7))\n")


@case("model", "model for 3-channel input on MNIST", 2)
def _(s):
    return model_case(s, "from torch import nn\ndef build():\n    return nn.Sequential("
                         "nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), "
                         "nn.Linear(8, 10))\n")


@case("model", "model over the recipe's parameter budget", 1)
def _(s): return train(s, "--set", "model.args.width=64")


# --- the filesystem -------------------------------------------------------------------------

@case("filesystem", "--out is a file", 2)
def _(s): return s.cnnlab("train", "mnist-s5-10ep", "--out", str(write(s.root / "f", "x")), *SMALL)


@case("filesystem", "--out on a read-only filesystem", 2, needs_root=True)
def _(s):
    target = s.mount_tmpfs("ro", "1m")
    s.read_only(target)
    return s.cnnlab("train", "mnist-s5-10ep", "--out", str(target / "runs"), *SMALL)


@case("filesystem", "the disk fills up during the run", 2, needs_root=True)
def _(s):
    small = s.mount_tmpfs("small", "400k")
    result = s.cnnlab("train", "mnist-s5-10ep", "--out", str(small / "runs"), *LONGER)
    problems = expect_in(result.err, "disk is full")
    for folder in s.run_folders(small / "runs"):
        last = folder / "checkpoints/last.pt"
        if last.exists():
            try:
                load_checkpoint(last)
            except Exception as exc:  # noqa: BLE001 (any failure is the finding)
                problems.append(f"last.pt unreadable: {exc}")
        problems += [f"left {p.name}" for pattern in LEFTOVERS for p in folder.rglob(pattern)]
    return result, problems


@case("filesystem", "--resume a folder on a read-only filesystem", 2, needs_root=True)
def _(s):
    mount = s.mount_tmpfs("ro", "20m")
    run = interrupted_run(s, under=mount / "runs")
    s.read_only(mount)
    return s.cnnlab("train", "--resume", str(run), "--no-progress")


@case("filesystem", "--resume a folder that does not exist", 2)
def _(s): return s.cnnlab("train", "--resume", str(s.runs / "nothing"))


@case("filesystem", "--resume a folder that is not a run", 2)
def _(s):
    (s.root / "notes").mkdir()
    return s.cnnlab("train", "--resume", str(s.root / "notes"))


@case("filesystem", "--resume with last.pt truncated", 2, folder=True)
def _(s):
    run = interrupted_run(s)
    last = run / "checkpoints/last.pt"
    last.write_bytes(last.read_bytes()[:500])
    return s.cnnlab("train", "--resume", str(run), "--no-progress")


@case("filesystem", "--resume with a checkpoint that runs code", 2, folder=True)
def _(s):
    run = interrupted_run(s)
    torch.save({"epoch": 1, "model": RunsCode()}, run / "checkpoints/last.pt")
    result = s.cnnlab("train", "--resume", str(run), "--no-progress")
    problems = ["the checkpoint's code ran"] if (s.root / "PWNED").exists() else []
    if "weights_only=False" in result.err:
        problems.append("passes on torch's advice to load it unsafely")
    return result, problems


@case("filesystem", "report of a folder that is not a run", 2)
def _(s):
    (s.root / "notes").mkdir()
    return s.cnnlab("report", str(s.root / "notes"))


@case("filesystem", "export --onnx of a folder that does not exist", 2)
def _(s): return s.cnnlab("export", str(s.root / "nothing"), "--onnx")


# --- run folders from someone else, moved, or damaged ----------------------------------------

SMALL_NET = ("from torch import nn\ndef build(num_classes=10):\n    return nn.Sequential("
             "nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), "
             "nn.Flatten(), nn.Linear(8, num_classes))\n")


def finished_run(s: Scratch, model_file: bool = False) -> Path:
    """A finished 2-epoch run of this user's; with `model_file`, of a model from ./net.py."""
    args = ["--set", "model.name=net.py:build"] if model_file else []
    if model_file:
        write(s.root / "net.py", SMALL_NET)
    done = train(s, *args, "--no-check")
    if done.code != 0:
        raise RuntimeError(f"the base run failed: {done.err}")
    (run,) = s.run_folders()
    return run


def as_stranger(s: Scratch) -> dict[str, str]:
    """Another user: a config folder with another signing key."""
    return {"CNNLAB_CONFIG_DIR": str(s.root / "stranger-config")}


def name_model(run: Path, name: str, args: dict) -> None:
    """Rewrite the folder's [model] table as a stranger would."""
    config = tomllib.loads((run / "config.toml").read_text())
    config["model"] = {"name": name, "args": args}
    (run / "config.toml").write_text(tomli_w.dumps(config))


def no_marker(s: Scratch) -> list[str]:
    return [f"the folder's code ran: {p.name} exists" for p in s.root.glob("pwned*")]


@case("run folder", "a stranger's folder naming os:system, then report", 2, folder=True)
def _(s):
    run = finished_run(s)
    name_model(run, "os:system", {"command": f"touch {s.root / 'pwned'}"})
    done = s.cnnlab("report", str(run), env=as_stranger(s))
    return done, no_marker(s) + expect_in(done.err, "--trust-code", "os:system")


@case("run folder", "a stranger's folder naming numpy:save, then --resume", 2, folder=True)
def _(s):
    run = finished_run(s)
    name_model(run, "numpy:save", {"file": str(s.root / "pwned.npy"), "arr": [1, 2]})
    done = s.cnnlab("train", "--resume", str(run), "--no-progress", env=as_stranger(s))
    return done, no_marker(s) + expect_in(done.err, "--trust-code", "numpy:save")


@case("run folder", "a stranger's model_source.py that writes a file, then export --onnx", 2,
      folder=True)
def _(s):
    run = finished_run(s, model_file=True)
    source = run / "model_source.py"
    text = f"open({str(s.root / 'pwned')!r}, 'w').close()\n" + source.read_text()
    source.write_text(text)
    config = (run / "config.toml").read_text()  # the stranger keeps the hash in step
    digest = re.search(r'source_sha256 = "(\w+)"', config)[1]
    (run / "config.toml").write_text(config.replace(digest, hashlib.sha256(text.encode())
                                                    .hexdigest()))
    done = s.cnnlab("export", str(run), "--onnx", env=as_stranger(s))
    return done, no_marker(s) + expect_in(done.err, "--trust-code")


@case("run folder", "a stranger's file model, trusted with --trust-code, then report", 0,
      folder=True)
def _(s):
    run = finished_run(s, model_file=True)
    return s.cnnlab("report", str(run), "--trust-code", env=as_stranger(s))


@case("run folder", "own run moved elsewhere, net.py deleted, report from another folder", 0,
      folder=True)
def _(s):
    run = finished_run(s, model_file=True)
    (s.root / "net.py").unlink()
    moved = shutil.move(str(run), str(s.root / "moved"))
    elsewhere = s.root / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(s.command("report", moved), cwd=elsewhere, env=s.env,
                          capture_output=True, text=True, timeout=300)
    s.outputs += [done.stdout, done.stderr]
    return Finished(done.returncode, done.stdout, done.stderr)


@case("run folder", "one broken line in history.jsonl, then report", 2, folder=True)
def _(s):
    run = finished_run(s)
    with open(run / "history.jsonl", "a") as handle:
        handle.write('{"epoch": 3, "train_lo\n')
    done = s.cnnlab("report", str(run))
    return done, expect_in(done.err, "history.jsonl line 3")


@case("run folder", "best.pt copied over last.pt, then --resume", 2, folder=True)
def _(s):
    run = finished_run(s)
    shutil.copyfile(run / "checkpoints/best.pt", run / "checkpoints/last.pt")
    done = s.cnnlab("train", "--resume", str(run), "--no-progress")
    return done, expect_in(done.err, "last.pt", "bare weights")


@case("run folder", "best.safetensors cut in half, then export --onnx", 2, folder=True)
def _(s):
    run = finished_run(s)
    shipped = run / "best.safetensors"
    shipped.write_bytes(shipped.read_bytes()[: shipped.stat().st_size // 2])
    done = s.cnnlab("export", str(run), "--onnx")
    return done, expect_in(done.err, "best.safetensors")


@case("run folder", "config.toml emptied, then report", 2, folder=True)
def _(s):
    run = finished_run(s)
    (run / "config.toml").write_text("")
    done = s.cnnlab("report", str(run))
    return done, expect_in(done.err, "config.toml")


@case("run folder", "a bug nobody anticipated (injected): exit 70, traceback kept", 70)
def _(s):
    script = ("import sys, cnnlab.cli as cli\n"
              "cli._recipes = lambda args: 1 / 0\n"
              "sys.exit(cli.main(['recipes']))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=s.root,
                          env={**s.env, "TMPDIR": str(s.root)}, capture_output=True, text=True)
    kept = list(s.root.glob("cnnlab-crash-*.txt"))
    problems = [] if kept and "ZeroDivisionError" in kept[0].read_text() else ["no traceback file"]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    problems += [] if len(lines) == 1 else [f"the message is {len(lines)} lines"]
    return Finished(done.returncode, done.stdout, done.stderr), problems + expect_in(
        done.stderr, "internal error: ZeroDivisionError", "please report it")


# --- signals and crashes --------------------------------------------------------------------

def wait_for_epochs(process: subprocess.Popen, runs: Path, epochs: int, timeout: float = 240
                    ) -> Path:
    """The run folder, once `epochs` epochs are in its history (0: once the folder exists)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for history in runs.glob("*/history.jsonl") if epochs else runs.glob("*/config.toml"):
            if not epochs or len(history.read_text().splitlines()) >= epochs:
                return history.parent
        if process.poll() is not None:
            raise RuntimeError(f"the run ended before epoch {epochs}: {process.stderr.read()}")
        time.sleep(0.05)
    raise RuntimeError(f"no epoch {epochs} after {timeout} s")


def interrupted_run(s: Scratch, under: Path | None = None, sig: int = signal.SIGKILL) -> Path:
    """A run folder killed by `sig` after its first epoch: what a resume starts from."""
    runs = under or s.runs
    process = s.start("train", "mnist-s5-10ep", "--out", str(runs), *LONGER)
    folder = wait_for_epochs(process, runs, 1)
    process.send_signal(sig)
    s.finish(process)
    return folder


def checkpoints_agree(run: Path, epochs: int) -> list[str]:
    """After a run ends: each epoch in history and log once, last.pt at the end, best.pt at
    the history's best epoch, no temporary file."""
    problems = []
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    if [row["epoch"] for row in rows] != list(range(1, epochs + 1)):
        problems.append(f"history epochs {[row['epoch'] for row in rows]}")
    log = (run / "log.txt").read_text()
    logged = [n for n in range(1, epochs + 1) if log.count(f"epoch {n}:") != 1]
    if logged:
        problems.append(f"epochs {logged} not logged exactly once")
    if load_checkpoint(run / "checkpoints/last.pt")["epoch"] != epochs:
        problems.append("last.pt is not the last epoch")
    best, should = load_checkpoint(run / "checkpoints/best.pt")["epoch"], best_row(rows)["epoch"]
    if best != should:
        problems.append(f"best.pt holds epoch {best}, the history's best is {should}")
    problems += [f"left {p.name}" for pattern in LEFTOVERS for p in run.rglob(pattern)]
    return problems


def stop_then_resume(s: Scratch, sig: int, code: int) -> tuple[Finished, list[str]]:
    process = s.start("train", "mnist-s5-10ep", "--out", str(s.runs), *LONGER)
    run = wait_for_epochs(process, s.runs, 1)
    time.sleep(0.5)  # inside epoch 2
    process.send_signal(sig)
    stopped = s.finish(process)
    problems = [] if stopped.code == code else [f"stopped with {stopped.code}, not {code}"]
    if sig != signal.SIGKILL:
        problems += expect_in(stopped.err, f"--resume {run}")
    resumed = s.cnnlab("train", "--resume", str(run), "--no-progress")
    return resumed, problems + checkpoints_agree(run, 4)


@case("signals", "Ctrl-C in epoch 2, then --resume", 0, folder=True)
def _(s): return stop_then_resume(s, signal.SIGINT, 130)


@case("signals", "SIGTERM (docker stop) in epoch 2, then --resume", 0, folder=True)
def _(s): return stop_then_resume(s, signal.SIGTERM, 143)


@case("signals", "SIGKILL in epoch 2, then --resume", 0, folder=True)
def _(s): return stop_then_resume(s, signal.SIGKILL, -9)


@case("signals", "Ctrl-C before the first epoch ends", 130, folder=True)
def _(s):
    process = s.start("train", "mnist-s5-10ep", "--out", str(s.runs), *LONGER)
    wait_for_epochs(process, s.runs, 0)
    process.send_signal(signal.SIGINT)
    result = s.finish(process)
    return result, ["offers a resume with nothing to resume"] if "--resume" in result.err else []


def snapshots(process: subprocess.Popen, runs: Path) -> tuple[Path, list[dict[str, bytes]]]:
    """The run folder's files as they stood after each epoch (index 0: before the first)."""
    states: list[dict[str, bytes]] = [{}]
    run = wait_for_epochs(process, runs, 0)
    while True:
        ended = process.poll() is not None
        history = run / "history.jsonl"
        count = len(history.read_text().splitlines()) if history.exists() else 0
        log = (run / "log.txt").read_text()
        if count == len(states) and f"epoch {count}:" in log:
            states.append({name: (run / name).read_bytes() for name in
                           ("checkpoints/last.pt", "checkpoints/best.pt", "history.jsonl")}
                          | {"log.txt": log.encode()})
        elif ended:
            return run, states
        time.sleep(0.02)


@case("signals", "crash between last.pt and best.pt of the best epoch, then --resume", 0,
      folder=True)
def _(s):
    process = s.start("train", "mnist-s5-10ep", "--out", str(s.runs), *LONGER)
    run, states = snapshots(process, s.runs)
    if s.finish(process).code != 0 or len(states) != 5:
        return Finished(1, "", "the run to crash did not finish"), []
    rows = [json.loads(line) for line in states[4]["history.jsonl"].decode().splitlines()]
    best = best_row(rows)["epoch"]
    # The files as a crash right after the best epoch's last.pt leaves them: best.pt, the
    # history and the log one epoch behind (they are written after last.pt).
    for name in ("checkpoints/best.pt", "history.jsonl", "log.txt"):
        (run / name).unlink()
        if name in states[best - 1]:
            (run / name).write_bytes(states[best - 1][name])
    (run / "checkpoints/last.pt").write_bytes(states[best]["checkpoints/last.pt"])
    done = s.cnnlab("train", "--resume", str(run), "--no-progress")
    return done, checkpoints_agree(run, 4)


@case("signals", "a training that diverges (lr 1e5)", 1, folder=True)
def _(s):
    result = train(s, "--set", "schedule.max_lr=1e5")
    logs = [f.read_text() for f in s.runs.glob("*/log.txt")]
    return result, [] if any("diverged" in log for log in logs) else ["no note in the run folder"]


# --- concurrency ----------------------------------------------------------------------------

@case("concurrency", "two trainings started at the same moment", 0, folder=True)
def _(s):
    processes = [s.start("train", "mnist-s5-10ep", "--out", str(s.runs), *SMALL) for _ in range(2)]
    results = [s.finish(p) for p in processes]
    folders = s.run_folders()
    problems = [] if len(folders) == 2 else [f"{len(folders)} run folders for 2 runs"]
    failed = [r for r in results if r.code != 0]
    return (failed[0] if failed else results[-1]), problems


@case("concurrency", "two --resume of one folder at once", 2, folder=True)
def _(s):
    run = interrupted_run(s)
    processes = [s.start("train", "--resume", str(run), "--no-progress") for _ in range(2)]
    results = sorted((s.finish(p) for p in processes), key=lambda r: r.code)
    problems = [] if results[0].code == 0 else [f"neither resume finished: {results[0].err}"]
    return results[1], problems + expect_in(results[1].err, "another process")


# --- sweeps ---------------------------------------------------------------------------------

@case("sweep", "sweep file with a misspelt key", 2)
def _(s):
    sweep = write(s.root / "s.toml", '[sweep]\nname = "x"\nrecipe = "mnist-s5-10ep"\ntrails = 3\n'
                  '[sweep.space]\n"schedule.max_lr" = { log = [0.01, 0.1] }\n')
    return s.cnnlab("sweep", str(sweep), "--out", str(s.root / "sweeps"))


@case("sweep", "sweep space over a key recipes do not have", 2)
def _(s):
    sweep = write(s.root / "s.toml", '[sweep]\nname = "x"\nrecipe = "mnist-s5-10ep"\ntrials = 3\n'
                  '[sweep.space]\n"schedule.max_lrr" = { log = [0.01, 0.1] }\n')
    return s.cnnlab("sweep", str(sweep), "--out", str(s.root / "sweeps"))


@case("sweep", "--storage on a database server that is not there", 2)
def _(s):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sweep = write(s.root / "s.toml", '[sweep]\nname = "x"\nrecipe = "mnist-s5-10ep"\ntrials = 3\n'
                  '[sweep.space]\n"schedule.max_lr" = { log = [0.01, 0.1] }\n')
    return s.cnnlab("sweep", str(sweep), "--out", str(s.root / "sweeps"), "--no-progress",
                    "--storage", f"postgresql://u:p@127.0.0.1:{port}/db")


# --- the runner -----------------------------------------------------------------------------

def check(case: Case, s: Scratch, result: Finished, problems: list[str]) -> list[str]:
    problems = list(problems)
    if result.code != case.expect:
        problems.insert(0, f"exit {result.code}: {result.err.strip()[-300:]}")
    if any("Traceback (most recent call last)" in text for text in s.outputs):
        problems.append("traceback")
    lines = [line for line in result.err.splitlines() if line.strip()]
    if case.expect == 2 and len(lines) != 1:
        problems.append(f"the error is {len(lines)} lines")
    problems += [f"left {p.relative_to(s.root)}" for pattern in LEFTOVERS
                 for p in s.root.rglob(pattern)]
    if not case.folder and s.run_folders():
        problems.append("left a run folder")
    return problems


def run_case(case: Case, scratch_root: Path) -> tuple[str, list[str], str]:
    root = Path(tempfile.mkdtemp(dir=scratch_root))
    env = {**os.environ, "CNNLAB_DATA": str(DATA), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "CNNLAB_CONFIG_DIR": str(root / "config")}  # this case's own signing key
    s = Scratch(root, env)
    try:
        result, problems = case.run(s)
        problems = check(case, s, result, problems)
        lines = [line for line in result.err.splitlines() if line.strip()]
        said = lines[-1] if lines else ""
        return str(result.code), problems, said
    except Exception as exc:  # noqa: BLE001 (the campaign's own failure is a finding too)
        return "-", [f"campaign error: {type(exc).__name__}: {exc}"], ""
    finally:
        for mount in reversed(s.mounts):
            subprocess.run(["umount", "-l", str(mount)], check=False)
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="run the cases whose group or text contains this")
    args = parser.parse_args()
    cases = [c for c in CASES if not args.only or args.only in f"{c.group} {c.what}"]
    root = os.geteuid() == 0 and shutil.which("mount") is not None
    scratch_root = Path(tempfile.mkdtemp(prefix="cnnlab-faults-"))
    print("| # | group | case | expected | exit | outcome | what the user read (last line) |")
    print("|---|---|---|---|---|---|---|")
    passed = skipped = tracebacks = 0
    started = time.monotonic()
    for number, case in enumerate(cases, 1):
        if case.needs_root and not root:
            skipped += 1
            print(f"| {number} | {case.group} | {case.what} | {case.expect} | - | skipped: needs "
                  "root to mount a tmpfs | |", flush=True)
            continue
        code, problems, said = run_case(case, scratch_root)
        passed += not problems
        tracebacks += "traceback" in problems
        outcome = "ok" if not problems else "**" + "; ".join(problems).replace("|", "/") + "**"
        said = said.replace("|", "/")[:160]
        print(f"| {number} | {case.group} | {case.what} | {case.expect} | {code} | {outcome} "
              f"| {said} |", flush=True)
    shutil.rmtree(scratch_root, ignore_errors=True)
    print(f"fault_campaign cases={len(cases)} passed={passed} skipped={skipped} "
          f"failed={len(cases) - passed - skipped} tracebacks={tracebacks} "
          f"seconds={time.monotonic() - started:.0f}")


if __name__ == "__main__":
    main()
