"""The campaign's data cases: missing, damaged, hostile, downloaded badly."""

import http.server
import os
import pickle
import threading
import time
from pathlib import Path

import numpy as np
from fault_case import (
    SMALL,
    Finished,
    Scratch,
    data_copy,
    fault,
    train,
    write,
)


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


@fault("data", "no data and every mirror refuses (https tunnels)", 2)
def test_no_data_and_every_mirror_refuses_https_tunnels(s):
    return download_case(s, "refuse", recipe="mnist-s5-10ep")


@fault("data", "MNIST file truncated", 2)
def test_mnist_file_truncated(s):
    root = data_copy(s, "MNIST")
    path = root / "MNIST/raw/train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    return train(s, "--data-dir", str(root))


@fault("data", "an MNIST file replaced by a folder", 2)
def test_an_mnist_file_replaced_by_a_folder(s):
    root = data_copy(s, "MNIST")
    path = root / "MNIST/raw/train-images-idx3-ubyte.gz"
    path.unlink()
    path.mkdir()
    return train(s, "--data-dir", str(root))


@fault("data", "--data-dir is a file", 2)
def test_data_dir_is_a_file(s):
    return train(s, "--data-dir", str(write(s.root / "data.txt", "x")))


class RunsCode:
    """Unpickling this runs a shell command: what a hostile data file would hold."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def cifar_with(s: Scratch, batch_bytes: bytes) -> Path:
    root = data_copy(s, "cifar-10-batches-py")
    (root / "cifar-10-batches-py/data_batch_1").write_bytes(batch_bytes)
    return root


@fault("data", "CIFAR batch whose pickle runs code", 2)
def test_cifar_batch_whose_pickle_runs_code(s):
    root = cifar_with(s, pickle.dumps({"data": RunsCode(), "labels": [0]}))
    result = train(s, "--data-dir", str(root), recipe="cifar-s9-batched")
    return result, ["the pickle's code ran"] if (s.root / "PWNED").exists() else []


class HugeArray:
    """Unpickles, with names a CIFAR file may use, into a request for 10^11 bytes."""

    def __reduce__(self):
        return (np._core.multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                (1, (10**11,), np.dtype(np.uint8), False, b"x"))


def npz_recipe(s: Scratch, **arrays: np.ndarray) -> str:
    np.savez(s.root / "data.npz", **arrays)
    return str(write(s.root / "arrays.toml",
                     f'[data]\ndataset = "npz"\npath = "{s.root / "data.npz"}"\n'
                     '[model]\nname = "mnist_pool"\n[train]\nepochs = 1\n'))


def images(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (n, 28, 28), dtype=np.uint8)


@fault("data", "npz that is a text file", 2)
def test_npz_that_is_a_text_file(s):
    recipe = npz_recipe(s, x=np.zeros(1))
    write(s.root / "data.npz", "not an archive")
    return s.cnnlab("train", recipe, "--out", str(s.runs), "--no-progress")


@fault("data", "npz holding a pickled object array", 2)
def test_npz_holding_a_pickled_object_array(s):
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


@fault("data", "image folder without train/", 2)
def test_image_folder_without_train(s):
    png(s.root / "imgs/test/a/0.png", 0)
    return s.cnnlab("train", folder_recipe(s), "--out", str(s.runs), "--no-progress")
