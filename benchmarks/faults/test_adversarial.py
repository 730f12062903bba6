"""The adversarial cases: a run folder from a stranger, built to make cnnlab write outside it,
run code, hang or fail with a traceback, opened by every verb that opens a folder. Each case
plants its attack in a copy of one small finished run, beside an `outside/` folder that
stands for the rest of the user's disk (a canary file, a `.pth` target, temporary-looking
files), then asserts for every verb: no marker of code having run, nothing outside created,
changed or deleted, the exit code it should give (2 with one line for an attack it refuses),
and an end within its time bound.

    .venv/bin/pytest benchmarks/faults -m adversarial    (make test runs it)

The verbs run in this process, through `cnnlab.cli.main` and the Python API, as a user's
shell or notebook would call them: a process each would cost ~3 s of imports per call.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import tomli_w
import torch
from hostile import CLASSES, as_user, outside_folder, small_arrays, snapshot

from cnnlab.cli import main
from cnnlab.errors import CnnlabError

pytestmark = pytest.mark.adversarial

ROWS: list[tuple[str, str, str, str]] = []  # (attack, verb, exit, outcome): conftest prints them
BOUND_SECONDS = 60  # a verb on a folder this small ends in seconds; more means unbounded work


# --- the folder every case attacks ----------------------------------------------------------

@pytest.fixture(scope="session")
def base_run(tmp_path_factory) -> Path:
    """One finished 1-epoch run of a registered model on small arrays, signed by the user."""
    root = tmp_path_factory.mktemp("adversarial-base")
    recipe = root / "arrays.toml"
    recipe.write_text(f'name = "arrays"\n[data]\ndataset = "npz"\npath = "{small_arrays(root)}"\n'
                      'batch_size = 64\n[model]\nname = "mnist_pool"\n'
                      '[train]\nepochs = 1\ndevice = "cpu"\n')
    with as_user(root / "config"):
        code = main(["train", str(recipe), "--out", str(root / "runs"), "--no-progress",
                     "--no-check"])
    assert code == 0, "the base run did not train"
    (run,) = (root / "runs").iterdir()
    return run


class Scene:
    """One case's world: the stranger's folder `run`, the rest of the disk `outside`."""

    def __init__(self, root: Path, base: Path):
        self.root = root
        self.run = root / "inbox" / "run"
        shutil.copytree(base, self.run, symlinks=True)
        self.outside = outside_folder(root)
        self.config = root / "config"  # the victim's signing key

    def snapshot(self) -> dict[str, str]:
        """Every entry under the root except the run folder and the user's key."""
        return snapshot(self.root, {self.run, self.config})

    def config_toml(self) -> dict:
        import tomllib

        return tomllib.loads((self.run / "config.toml").read_text())

    def write_config(self, config: dict) -> None:
        (self.run / "config.toml").write_text(tomli_w.dumps(config))

    def markers(self) -> list[Path]:
        return [p for p in self.root.rglob("pwned*")]


# --- the attacks ----------------------------------------------------------------------------
# Each plants its attack and returns the exit code a refusing verb gives (2), or 0 where the
# verb should succeed with the attack made harmless (escaped text, an ignored stray file).

def link_log_to_pth(s: Scene) -> int:
    """log.txt a dangling link to a .pth file outside: an append there runs at Python's start."""
    (s.run / "log.txt").unlink()
    (s.run / "log.txt").symlink_to(s.outside / "pwned.pth")
    return 2


def link_plots_out(s: Scene) -> int:
    (s.run / "plots").rename(s.root / "moved-plots")
    (s.run / "plots").symlink_to(s.outside)
    return 2


def link_checkpoints_out(s: Scene) -> int:
    """checkpoints/ a link to a folder outside holding the same checkpoints and a `.*.tmp`."""
    shutil.copytree(s.run / "checkpoints", s.outside / "ckpt")
    (s.outside / "ckpt" / ".last.pt.abcd1234.tmp").write_text("not cnnlab's to delete")
    shutil.rmtree(s.run / "checkpoints")
    (s.run / "checkpoints").symlink_to(s.outside / "ckpt")
    return 2


def link_tb_out(s: Scene) -> int:
    (s.run / "tb").symlink_to(s.outside)
    return 2


def link_readme_out(s: Scene) -> int:
    (s.run / "README.md").unlink()
    (s.run / "README.md").symlink_to(s.outside / "canary.txt")
    return 2


def link_weights_out(s: Scene) -> int:
    shutil.move(s.run / "best.safetensors", s.outside / "weights.safetensors")
    (s.run / "best.safetensors").symlink_to(s.outside / "weights.safetensors")
    return 2


def link_config_out(s: Scene) -> int:
    shutil.move(s.run / "config.toml", s.outside / "config.toml")
    (s.run / "config.toml").symlink_to(s.outside / "config.toml")
    return 2


def fifo_history(s: Scene) -> int:
    """history.jsonl a FIFO: a plain open would wait for a writer for ever."""
    (s.run / "history.jsonl").unlink()
    os.mkfifo(s.run / "history.jsonl")
    return 2


def readme_a_folder(s: Scene) -> int:
    (s.run / "README.md").unlink()
    (s.run / "README.md").mkdir()
    return 2


def nested_toml(s: Scene) -> int:
    text = (s.run / "config.toml").read_text()
    (s.run / "config.toml").write_text(text + "\n[deep]\nx = " + "[" * 5000 + "]" * 5000 + "\n")
    return 2


def nested_history(s: Scene) -> int:
    with open(s.run / "history.jsonl", "a") as handle:
        handle.write("[" * 100_000 + "]" * 100_000 + "\n")
    return 2


def nested_run_json(s: Scene) -> int:
    (s.run / "run.json").write_text('{"check": false, "x": ' + "[" * 100_000 + "]" * 100_000
                                    + "}\n")
    return 2


def nested_lr_find(s: Scene) -> int:
    (s.run / "run.json").write_text('{"check": false, "lr_find": true}\n')
    (s.run / "lr_find.json").write_text('{"lrs": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    return 2


def stray_lr_find(s: Scene) -> int:
    """An lr_find.json in a run that ran no range test: ignored, not plotted."""
    (s.run / "lr_find.json").write_text(json.dumps({
        "lrs": [-1.0, 0.0], "losses": [float("inf"), 1.0], "minimum": "x", "valley": 0,
        "steepest": None, "diverged": 3}))
    return 0


def huge_input_shape(s: Scene) -> int:
    _edit_metadata(s, input_shape=json.dumps([1, 2 ** 62, 2 ** 62]))
    return 2


def classes_as_text(s: Scene) -> int:
    _edit_metadata(s, classes=json.dumps("0123456789"))
    return 2


def nan_std(s: Scene) -> int:
    _edit_metadata(s, std="[NaN]")
    return 2


def int64_weights(s: Scene) -> int:
    from safetensors.torch import load, save

    data = (s.run / "best.safetensors").read_bytes()
    weights = {k: v.to(torch.int64) if v.is_floating_point() else v
               for k, v in load(data).items()}
    (s.run / "best.safetensors").write_bytes(save(weights, metadata=_metadata(data)))
    (s.run / "checkpoints" / "best.pt").unlink()  # so no verb can fall back on it
    return 2


def ansi_class_names(s: Scene) -> int:
    config = s.config_toml()
    config["data"]["classes"] = ["\x1b]0;owned\x07\x1b[2J" + c for c in CLASSES]
    s.write_config(config)
    _edit_metadata(s, classes=json.dumps(config["data"]["classes"]))
    return 2


def device_with_newlines(s: Scene) -> int:
    """A history whose device field holds a line break and Python: what --resume logged."""
    rows = [json.loads(line) for line in (s.run / "history.jsonl").read_text().splitlines()]
    rows[0]["device"] = f"cpu\nimport os; os.system('touch {s.root}/pwned')"
    (s.run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    state = torch.load(s.run / "checkpoints" / "last.pt", weights_only=True)
    state["history"] = rows
    torch.save(state, s.run / "checkpoints" / "last.pt")
    return 2


def bad_accuracies(s: Scene) -> int:
    rows = [json.loads(line) for line in (s.run / "history.jsonl").read_text().splitlines()]
    rows[0]["test_acc"] = float("nan")
    (s.run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 2


def negative_accuracy(s: Scene) -> int:
    rows = [json.loads(line) for line in (s.run / "history.jsonl").read_text().splitlines()]
    rows[0]["test_acc"] = -50.0
    (s.run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 2


def billion_steps(s: Scene) -> int:
    rows = [json.loads(line) for line in (s.run / "history.jsonl").read_text().splitlines()]
    rows[0]["steps"] = 10 ** 9
    (s.run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 2


def endless_epochs(s: Scene) -> int:
    config = s.config_toml()
    config["train"]["epochs"] = 10 ** 18
    s.write_config(config)
    return 2


def million_rows(s: Scene) -> int:
    row = (s.run / "history.jsonl").read_text().splitlines()[0]
    with open(s.run / "history.jsonl", "w") as handle:
        for epoch in range(1, 1_000_001):
            handle.write(row.replace('"epoch": 1,', f'"epoch": {epoch},', 1) + "\n")
    return 2


def markup_in_text(s: Scene) -> int:
    """HTML and Markdown in the description and class names: shown as text, not markup."""
    config = s.config_toml()
    config["description"] = "<img src=x onerror=alert(1)> **bold** [link](http://x)"
    config["data"]["classes"] = [f"<b>{c}</b>|`x`" for c in CLASSES]
    s.write_config(config)
    _edit_metadata(s, classes=json.dumps(config["data"]["classes"]))
    return 0


def math_in_class_names(s: Scene) -> int:
    """Class names matplotlib would read as mathtext it cannot parse."""
    config = s.config_toml()
    config["data"]["classes"] = [f"$x^2^3$ {c}" for c in CLASSES]
    s.write_config(config)
    _edit_metadata(s, classes=json.dumps(config["data"]["classes"]))
    return 0


def constructing_transforms(s: Scene) -> int:
    """Albumentations transforms that build but fail on an image, in a resumed folder."""
    pytest.importorskip("albumentations")
    config = s.config_toml()
    config["augment"] = {**config["augment"], "engine": "albumentations", "workers": 0,
                         "transforms": [{"name": "TextImage", "font_path": "x.ttf"}]}
    s.write_config(config)
    return 2


def empty_key_signature(s: Scene) -> int:
    """The victim's signing key left empty by a process stopped while making it, and the folder
    signed with HMAC(b"") over a config that names code."""
    import hmac

    config = s.config_toml()
    config["model"] = {"name": "os:system", "args": {"command": f"touch {s.root}/pwned"}}
    s.write_config(config)
    s.config.mkdir(exist_ok=True)
    (s.config / "signing.key").write_text("")
    mac = hmac.new(b"", digestmod=hashlib.sha256)
    for name in ("config.toml", "model_source.py", "run.json"):
        part = (s.run / name).read_bytes() if (s.run / name).exists() else b""
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    (s.run / "signature").write_text(mac.hexdigest() + "\n")
    return 2


def nan_int8_record(s: Scene) -> int:
    """An int8.json whose accuracy is NaN: what the report and check --run show."""
    (s.run / "int8.json").write_text('{"test_acc_int8": NaN, "test_acc_fp32": 99.0, '
                                     '"flash_bytes": 1, "calibration_images": 1, '
                                     '"test_images": 1}')
    return 2


def link_int8_model_out(s: Scene) -> int:
    """model.int8.onnx a link to a file outside: the export would write through it."""
    (s.run / "model.int8.onnx").symlink_to(s.outside / "canary.txt")
    return 2


def huge_tflite_arena(s: Scene) -> int:
    """A tflite.json whose arena is not a number: what the report shows."""
    (s.run / "tflite.json").write_text('{"test_acc_tflm": 99.0, "arena_bytes": 1e999, '
                                       '"arena_total_bytes": 1, "ram_estimate_bytes": 1, '
                                       '"tflite_bytes": 1, "calibration_images": 1, '
                                       '"test_images": 1}')
    return 2


def link_tflite_model_out(s: Scene) -> int:
    """model.int8.tflite a link to a file outside: an export would write through it."""
    (s.run / "model.int8.tflite").symlink_to(s.outside / "canary.txt")
    return 2


def code_naming_config(s: Scene) -> int:
    config = s.config_toml()
    config["model"] = {"name": "os:system", "args": {"command": f"touch {s.root}/pwned"}}
    s.write_config(config)
    return 2


ATTACKS: list[Callable[[Scene], int]] = [
    link_log_to_pth, link_plots_out, link_checkpoints_out, link_tb_out, link_readme_out,
    link_weights_out, link_config_out, fifo_history, readme_a_folder, nested_toml,
    nested_history, nested_run_json, nested_lr_find, stray_lr_find, huge_input_shape,
    classes_as_text, nan_std, int64_weights, ansi_class_names, device_with_newlines,
    bad_accuracies, negative_accuracy, billion_steps, endless_epochs, million_rows,
    markup_in_text, math_in_class_names, constructing_transforms, empty_key_signature,
    nan_int8_record, link_int8_model_out, huge_tflite_arena, link_tflite_model_out,
    code_naming_config,
]


def _metadata(data: bytes) -> dict[str, str]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8:8 + length]).get("__metadata__", {})


def _edit_metadata(s: Scene, **changes: str) -> None:
    from safetensors.torch import load, save

    path = s.run / "best.safetensors"
    data = path.read_bytes()
    path.write_bytes(save(load(data), metadata={**_metadata(data), **changes}))


# --- the verbs ------------------------------------------------------------------------------
# Each returns (exit code, what the user read on stderr); the Python API's refusal is exit 2.

def _cli(*argv: str) -> Callable[[Scene], tuple[int, str]]:
    def verb(s: Scene) -> tuple[int, str]:
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main([arg.format(run=s.run, root=s.root) for arg in argv])
        return code, err.getvalue()
    return verb


def _api(call: Callable[[Path], object]) -> Callable[[Scene], tuple[int, str]]:
    def verb(s: Scene) -> tuple[int, str]:
        try:
            call(s.run)
        except CnnlabError as exc:
            return 2, f"{type(exc).__name__}: {exc}\n"
        return 0, ""
    return verb


def _predict(run: Path) -> None:
    from cnnlab import load_run

    loaded = load_run(run)
    print(loaded.predict(torch.zeros(2, *loaded.input_shape)))


def _app_loader(run: Path) -> None:
    pytest.importorskip("gradio")
    from cnnlab.ship.web_app import build_app

    build_app(run)


VERBS = {
    "report": _cli("report", "{run}", "--html"),
    "export": _cli("export", "{run}", "--onnx"),
    "check --run": _cli("check", "{run}/config.toml", "--run", "{run}"),
    "train --resume": _cli("train", "--resume", "{run}", "--no-progress"),
    "load_run": _api(lambda run: __import__("cnnlab").load_run(run)),
    "predict": _api(_predict),
    "app": _api(_app_loader),
}
# The verbs that write into the folder refuse it whole when any place they write holds a link,
# a folder or a special file; the verbs that only read it succeed unless what they read is
# attacked. These are the pairs where the attack leaves the verb nothing to refuse.
WRITERS = ("report", "export", "train --resume")
READERS = ("check --run", "load_run", "predict", "app")
UNTOUCHED = {
    (a, v) for a in ("link_log_to_pth", "link_plots_out", "link_tb_out", "link_readme_out",
                     "readme_a_folder", "link_int8_model_out", "link_tflite_model_out")
    for v in READERS} | {
    ("nan_int8_record", v) for v in ("export", "load_run", "predict", "app")} | {
    ("huge_tflite_arena", v) for v in ("export", "check --run", "load_run", "predict", "app")
    } | {
    ("link_checkpoints_out", v) for v in READERS} | {("link_weights_out", "check --run")} | {
    ("fifo_history", v) for v in ("load_run", "predict", "app")} | {
    ("nested_history", v) for v in ("export", "train --resume", "load_run", "predict", "app")
    } | {
    ("nested_run_json", "export")} | {
    (a, v) for a in ("nested_lr_find", "stray_lr_find")
    for v in ("export", "check --run", "load_run", "predict", "app")} | {
    ("stray_lr_find", "train --resume")} | {
    (a, v) for a in ("huge_input_shape", "classes_as_text", "nan_std", "int64_weights")
    for v in ("check --run", "train --resume", "report")} | {
    (a, v) for a in ("device_with_newlines", "bad_accuracies", "negative_accuracy",
                     "billion_steps", "million_rows")
    for v in ("export", "load_run", "predict", "app")} | {
    # --resume takes the history from last.pt, and rewrites history.jsonl from it
    (a, "train --resume") for a in ("bad_accuracies", "negative_accuracy", "billion_steps",
                                    "million_rows")} | {
    ("constructing_transforms", v) for v in ("report", "export", "check --run", "load_run",
                                             "predict", "app")} | {
    ("nested_run_json", v) for v in ("load_run", "predict", "app", "check --run")} | {
    (a, v) for a in ("markup_in_text", "math_in_class_names") for v in (*READERS, *WRITERS)}


@pytest.mark.parametrize("verb", list(VERBS))
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
def test_a_hostile_folder(attack, verb, base_run, tmp_path):
    s = Scene(tmp_path, base_run)
    expect = attack(s)
    if (attack.__name__, verb) in UNTOUCHED:
        expect = 0
    before = s.snapshot()
    started = time.monotonic()
    with as_user(s.config):
        code, said = VERBS[verb](s)
    seconds = time.monotonic() - started
    after = s.snapshot()
    lines = [line for line in said.splitlines() if line.strip()]
    problems = [f"code ran: {p}" for p in s.markers()]
    problems += [f"outside changed: {path}" for path in sorted(set(before) | set(after))
                 if before.get(path) != after.get(path)]
    if code != expect:
        problems.append(f"exit {code}, expected {expect}: {said.strip()[-300:]}")
    if expect == 2 and len(lines) != 1:
        problems.append(f"the error is {len(lines)} lines")
    if code == 70 or "internal error" in said:
        problems.append("internal error (exit 70)")
    if seconds > BOUND_SECONDS:
        problems.append(f"took {seconds:.0f} s")
    if attack.__name__ == "markup_in_text" and verb == "report":
        readme = (s.run / "README.md").read_text()
        html = (s.run / "report.html").read_text()
        planted = r"(?<!\\)<(img src=x|b>zero)"  # the attack's tags, not escaped
        if re.search(planted, readme) or re.search(planted, html):
            problems.append("markup landed raw in README.md or report.html")
    ROWS.append((attack.__name__, verb, str(code),
                 "ok" if not problems else "; ".join(problems)[:160]))
    assert not problems, "; ".join(problems)
