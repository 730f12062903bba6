"""The campaign's run-folder cases: strangers' folders, trust, damaged files."""

import hashlib
import re
import shutil
import tomllib
from pathlib import Path

import tomli_w
from fault_case import (
    Scratch,
    expect_in,
    fault,
    train,
    write,
)

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


@fault("run folder", "a stranger's folder naming numpy:save, then --resume", 2, folder=True)
def test_a_stranger_s_folder_naming_numpy_save_then_resume(s):
    run = finished_run(s)
    name_model(run, "numpy:save", {"file": str(s.root / "pwned.npy"), "arr": [1, 2]})
    done = s.cnnlab("train", "--resume", str(run), "--no-progress", env=as_stranger(s))
    return done, no_marker(s) + expect_in(done.err, "--trust-code", "numpy:save")


@fault("run folder", "a stranger's model_source.py that writes a file, then export --onnx", 2,
      folder=True)
def test_a_stranger_s_model_source_py_that_writes_a_file_then_export_onnx(s):
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


@fault("run folder", "a stranger's file model, trusted with --trust-code, then report", 0,
      folder=True)
def test_a_stranger_s_file_model_trusted_with_trust_code_then_report(s):
    run = finished_run(s, model_file=True)
    return s.cnnlab("report", str(run), "--trust-code", env=as_stranger(s))


@fault("run folder", "best.pt copied over last.pt, then --resume", 2, folder=True)
def test_best_pt_copied_over_last_pt_then_resume(s):
    run = finished_run(s)
    shutil.copyfile(run / "checkpoints/best.pt", run / "checkpoints/last.pt")
    done = s.cnnlab("train", "--resume", str(run), "--no-progress")
    return done, expect_in(done.err, "last.pt", "bare weights")
