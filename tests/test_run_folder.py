"""Run folders as data: a stranger's folder never runs its code without trust, a user's own
folder works from anywhere it is copied to, and every damaged file is one line, exit 2, with
nothing written. One small run is trained once (by its "owner") and copied into each test."""

import hashlib
import json
import os
import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w
import torch

from cnnlab.cli import main
from cnnlab.errors import CnnlabError, RunFolderError, UntrustedCodeError
from cnnlab.ship import load_run
from tests.conftest import saved_as_npz, separable_dataset

pytestmark = pytest.mark.slow  # the module trains its run once (seconds)

NET = """
from torch import nn

def build(num_classes=10):
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(owner's config folder, a finished run of a model from net.py with an LR range test)."""
    root = tmp_path_factory.mktemp("made")
    data = separable_dataset(n_train=256, n_test=64)
    saved_as_npz(data, root)
    (root / "net.py").write_text(NET)
    recipe = root / "shared.toml"
    recipe.write_text(f'[data]\ndataset = "npz"\npath = "{root / "data.npz"}"\nbatch_size = 64\n'
                      '[model]\nname = "net.py:build"\n[optim]\nlr = 0.05\n'
                      '[schedule]\nname = "onecycle"\nmax_lr = "find"\n'
                      '[train]\nepochs = 2\ndevice = "cpu"\n')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CNNLAB_CONFIG_DIR", str(root / "owner-config"))
        patch.setenv("CNNLAB_CACHE", str(root / "cache"))
        patch.chdir(root)
        assert main(["train", str(recipe), "--out", "runs", "--no-progress"]) == 0
    (run_dir,) = (root / "runs").iterdir()
    return root / "owner-config", run_dir


def _copy(made, tmp_path, monkeypatch, as_owner: bool) -> Path:
    owner, run_dir = made
    monkeypatch.setenv("CNNLAB_CONFIG_DIR", str(owner if as_owner else tmp_path / "stranger"))
    return Path(shutil.copytree(run_dir, tmp_path / "shared-run"))


def _edit_config(run: Path, change) -> None:
    config = tomllib.loads((run / "config.toml").read_text())
    change(config)
    (run / "config.toml").write_text(tomli_w.dumps(config))


def _snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*"))
            if p.is_file()}


def _verb(verb: str, run: Path, trust: bool = False, recipe: Path | None = None) -> int:
    """One verb that reads the run, through the CLI, or the API for `load_run` and the app
    (a CnnlabError there printed as the CLI prints it)."""
    if verb in ("load_run", "app"):
        from cnnlab.ship.web_app import build_app

        try:
            (load_run if verb == "load_run" else build_app)(run, trust_code=trust)
        except CnnlabError as exc:
            print(f"cnnlab: error: {exc}", file=sys.stderr)
            return 2
        return 0
    argv = {"report": ["report", str(run)], "export": ["export", str(run), "--onnx"],
            "resume": ["train", "--resume", str(run), "--no-progress"],
            "compare": ["compare", str(run), "--out", str(run.parent / "compare.png")],
            "check": ["check", str(recipe), "--run", str(run)]}[verb]
    return main(argv + (["--trust-code"] if trust else []) if verb in TRUSTING else argv)


TRUSTING = ("report", "export", "resume")


REBUILDING_VERBS = ["load_run", "report", "export", "resume", "app"]


def _strangers_code(kind: str, run: Path, marker: Path) -> None:
    """Make the copied folder name code that would create `marker`."""
    def named(name, args):
        def change(config):
            config["model"] = {"name": name, "args": args}
        return change

    if kind == "os.system":
        _edit_config(run, named("os:system", {"command": f"touch {marker}"}))
    elif kind == "installed module":
        _edit_config(run, named("numpy:save", {"file": str(marker), "arr": [1, 2]}))
    else:  # the kept source, edited to do something on import
        source = run / "model_source.py"
        text = f"open({str(marker)!r}, 'w').close()\n" + source.read_text()
        source.write_text(text)
        digest = hashlib.sha256(text.encode()).hexdigest()
        _edit_config(run, lambda config: config["model"].update(source_sha256=digest))


@pytest.mark.parametrize("kind", ["os.system", "installed module", "model_source.py"])
@pytest.mark.parametrize("verb", REBUILDING_VERBS)
def test_a_strangers_folder_runs_no_code_until_trusted(made, tmp_path, monkeypatch, capsys,
                                                       kind, verb):
    run = _copy(made, tmp_path, monkeypatch, as_owner=kind != "model_source.py")
    marker = tmp_path / "pwned.npy"  # numpy.save adds the suffix where it is missing
    _strangers_code(kind, run, marker)
    before = _snapshot(run)
    assert _verb(verb, run) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--trust-code" in err[0] and "was not written by this user" in err[0]
    assert not marker.exists()
    assert _snapshot(run) == before
    # trusted: the code runs (a shell command is no model, so that verb then fails, in one line)
    code = _verb(verb, run, trust=True)
    assert marker.exists()
    if kind == "model_source.py":
        assert code == 0
    else:
        assert code == 2 and "not an nn.Module" in capsys.readouterr().err


def test_trust_given_once_is_kept_and_an_edit_after_it_needs_trust_again(made, tmp_path,
                                                                        monkeypatch):
    run = _copy(made, tmp_path, monkeypatch, as_owner=False)
    with pytest.raises(UntrustedCodeError, match="net.py:build"):
        load_run(run)
    load_run(run, trust_code=True)
    load_run(run)  # signed with this user's key now
    _edit_config(run, lambda config: config["model"].update(args={"num_classes": 10}))
    with pytest.raises(UntrustedCodeError):
        load_run(run)


def test_a_registered_model_needs_no_trust(made, tmp_path, monkeypatch):
    run = _copy(made, tmp_path, monkeypatch, as_owner=False)
    _edit_config(run, lambda config: config["model"].update(name="mnist_pool"))
    with pytest.raises(RunFolderError, match="holds weights for another model"):
        load_run(run)  # the decision passed: this folder's weights are simply not mnist_pool's


@pytest.mark.parametrize("verb", ["load_run", "report", "export", "resume", "app"])
def test_the_owners_run_works_anywhere_after_its_model_file_changed_and_went(
        made, tmp_path, monkeypatch, verb):
    run = _copy(made, tmp_path, monkeypatch, as_owner=True)
    original = made[1].parents[1] / "net.py"
    kept = original.read_text()
    try:
        original.write_text(NET.replace("8", "16"))  # another model: its weights would not fit
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        assert _verb(verb, run) == 0
        original.unlink()
        assert _verb(verb, run) == 0
    finally:
        original.write_text(kept)
    assert (run / "model_source.py").read_text() == NET


def test_a_kept_source_that_no_longer_matches_its_hash_is_refused(made, tmp_path, monkeypatch,
                                                                 capsys):
    run = _copy(made, tmp_path, monkeypatch, as_owner=True)
    (run / "model_source.py").write_text(NET + "\n# edited\n")
    assert main(["report", str(run)]) == 2
    assert "model_source.py is not the source this run trained" in capsys.readouterr().err


# --- every file x every corruption x every verb that reads it ---

def _truncated(path: Path) -> None:
    data = path.read_bytes()
    cut = max(1, len(data) // 2)
    if path.suffix == ".jsonl":  # inside the last record: cut at a line's end, it would leave a
        last = data.rstrip(b"\n").rfind(b"\n") + 1  # whole, shorter history, not damage
        cut = last + (len(data) - last) // 2
    path.write_bytes(data[:cut])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _json_edit(change):
    def corrupt(path: Path) -> None:
        value = json.loads(path.read_text())
        change(value)
        path.write_text(json.dumps(value))
    return corrupt


def _history_edit(change):
    def corrupt(path: Path) -> None:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        change(rows[0])
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return corrupt


def _toml_edit(change):
    def corrupt(path: Path) -> None:
        config = tomllib.loads(path.read_text())
        change(config)
        path.write_text(tomli_w.dumps(config))
    return corrupt


def _torch_edit(change):
    def corrupt(path: Path) -> None:
        state = torch.load(path, weights_only=True)
        path.unlink()
        torch.save(change(state), path)
    return corrupt


def _reshaped(state):
    name = next(iter(state["model"]))
    state["model"][name] = torch.zeros(3, 3)
    return state


def _safetensors_edit(change_tensors=None, change_meta=None):
    def corrupt(path: Path) -> None:
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata()
        tensors = load_file(str(path))
        (change_tensors or (lambda t: None))(tensors)
        (change_meta or (lambda m: None))(meta)
        save_file(tensors, str(path), metadata=meta)
    return corrupt


def _first_tensor_reshaped(tensors):
    tensors[next(iter(tensors))] = torch.zeros(3, 3)


def _bare_weights(path: Path) -> None:
    shutil.copyfile(path.parent / "best.pt", path)


def _partial(then):
    """A partial checkpoint made from last.pt (partway through the epoch after its last),
    then damaged by `then`."""
    def corrupt(path: Path) -> None:
        state = torch.load(path.parent / "last.pt", weights_only=True)
        state["partway"] = {"step": 2, "order": None, "seen": 128, "loss_sum": torch.tensor(1.0),
                            "correct": torch.tensor(100), "seconds": 1.0}
        torch.save(state, path)
        then(path)
    return corrupt


def _not_text(path: Path) -> None:
    path.write_bytes(b"\xff\xfe\x00garbage\x80\x81")


CORRUPTIONS = {
    "config.toml": {"truncated": _truncated, "empty": _empty,
                    "wrong type": _toml_edit(lambda c: c["train"].update(epochs="two")),
                    "missing key": _toml_edit(lambda c: c.pop("model"))},
    "run.json": {"truncated": _truncated, "empty": _empty,
                 "wrong type": _json_edit(lambda v: v.update(check="no"))},
    "history.jsonl": {"truncated": _truncated, "not text": _not_text,
                      "wrong type": _history_edit(lambda r: r.update(test_acc="high")),
                      "missing key": _history_edit(lambda r: r.pop("test_acc"))},
    "log.txt": {"not text": _not_text},
    "checkpoints/last.pt": {"truncated": _truncated, "empty": _empty,
                            "wrong type": lambda p: torch.save([1, 2], p),
                            "missing key": _torch_edit(lambda s: {k: v for k, v in s.items()
                                                                  if k != "schedule"}),
                            "bare weights": _bare_weights,
                            "wrong shape": _torch_edit(_reshaped)},
    "checkpoints/partial.pt": {
        "truncated": _partial(_truncated), "empty": _empty,
        "missing key": _partial(_torch_edit(lambda s: {k: v for k, v in s.items()
                                                       if k != "partway"})),
        "wrong type": _partial(_torch_edit(lambda s: {**s, "partway": {**s["partway"],
                                                                       "step": "two"}})),
        "wrong shape": _partial(_torch_edit(_reshaped)),
        "out of place": _partial(_torch_edit(lambda s: {**s, "partway": {**s["partway"],
                                                                         "step": 10**6}}))},
    "checkpoints/best.pt": {"truncated": _truncated, "empty": _empty,
                            "missing key": _torch_edit(lambda s: {"epoch": s["epoch"]}),
                            "wrong shape": _torch_edit(_reshaped)},
    "best.safetensors": {"truncated": _truncated, "empty": _empty,
                         "wrong type": _safetensors_edit(
                             change_meta=lambda m: m.update(classes='"ten"', mean="[0.1, 2]")),
                         "missing key": _safetensors_edit(change_meta=lambda m: m.pop("std")),
                         "wrong shape": _safetensors_edit(_first_tensor_reshaped)},
    "lr_find.json": {"truncated": _truncated, "empty": _empty,
                     "wrong type": _json_edit(lambda v: v.update(lrs="many")),
                     "missing key": _json_edit(lambda v: v.pop("minimum"))},
}
READERS = {"config.toml": ["load_run", "report", "export", "resume"],
           "run.json": ["resume"],
           "history.jsonl": ["report", "compare", "check"],
           "log.txt": ["resume"],
           "checkpoints/last.pt": ["resume", "report"],
           "checkpoints/best.pt": ["resume", "export"],
           "checkpoints/partial.pt": ["resume"],
           "best.safetensors": ["load_run", "export"],
           "lr_find.json": ["report"]}
CASES = [(name, corruption, verb) for name, corruptions in CORRUPTIONS.items()
         for corruption in corruptions for verb in READERS[name]]


@pytest.mark.parametrize(("name", "corruption", "verb"), CASES)
def test_a_damaged_file_is_one_line_naming_it_and_nothing_is_written(
        made, tmp_path, monkeypatch, capsys, name, corruption, verb):
    run = _copy(made, tmp_path, monkeypatch, as_owner=True)
    if name == "checkpoints/best.pt" and verb == "export":
        (run / "best.safetensors").unlink()  # export reads best.pt only to write it
    CORRUPTIONS[name][corruption](run / name)
    before = _snapshot(run)
    recipe = made[1].parents[1] / "shared.toml"  # check takes the recipe, as its user would
    monkeypatch.chdir(recipe.parent)
    assert _verb(verb, run, recipe=recipe) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert Path(name).name in err[0] and "Traceback" not in err[0]
    assert _snapshot(run) == before
    assert not (run.parent / "compare.png").exists()


def test_an_unanticipated_exception_is_one_line_a_kept_traceback_and_exit_70(
        monkeypatch, capsys, tmp_path):
    import cnnlab.cli

    def bug():
        raise ZeroDivisionError("injected")

    monkeypatch.setattr(cnnlab.cli, "builtin_recipes", bug)  # deep inside the verb's handler
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    assert main(["recipes"]) == 70
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("cnnlab: internal error: ZeroDivisionError: injected; traceback "
                           "written to ")
    kept = Path(line.split("written to ")[1].split(";")[0])
    assert kept.parent == tmp_path and 'raise ZeroDivisionError("injected")' in kept.read_text()
    monkeypatch.setenv("CNNLAB_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["recipes"])


def test_a_run_from_before_folders_kept_their_source_rebuilds_from_its_file_when_trusted(
        made, tmp_path, monkeypatch):
    run = _copy(made, tmp_path, monkeypatch, as_owner=True)
    (run / "model_source.py").unlink()  # as an older cnnlab left it
    _edit_config(run, lambda config: config["model"].pop("source_sha256"))
    with pytest.raises(UntrustedCodeError, match="keeps no copy"):
        load_run(run)
    monkeypatch.chdir(made[1].parents[1])  # where its net.py is
    assert load_run(run, trust_code=True).predict(np.zeros((28, 28), np.uint8)).classes


def test_check_on_a_run_short_of_its_epochs_says_whether_it_is_still_training(
        made, tmp_path, monkeypatch):
    from cnnlab import check, load_recipe
    from cnnlab.run_folder import RunFolder

    run = RunFolder(_copy(made, tmp_path, monkeypatch, as_owner=True))
    history = (run.path / "history.jsonl").read_text().splitlines(keepends=True)
    (run.path / "history.jsonl").write_text(history[0])  # 1 of its 2 epochs
    monkeypatch.chdir(made[1].parents[1])  # where its net.py is
    recipe = load_recipe("shared.toml", ["spec.min_test_acc=10"])

    def accuracy_line() -> str:
        return check(recipe, run_dir=run.path).verdicts[-1].measured

    assert not run.is_training()
    assert accuracy_line().endswith("1 of the run's 2 epochs so far (stopped: cnnlab train "
                                    "--resume goes on)")
    with run.training_lock():
        assert run.is_training()
        assert accuracy_line().endswith("so far (still training)")
    assert not run.is_training()


def test_a_runs_start_waits_out_the_brief_lock_of_a_probe(made, tmp_path, monkeypatch):
    import fcntl
    import threading

    from cnnlab.run_folder import RunFolder

    run = RunFolder(_copy(made, tmp_path, monkeypatch, as_owner=True))
    with open(run.config_path.path, "rb") as probe:
        fcntl.flock(probe, fcntl.LOCK_SH)  # as is_training holds it, for longer
        threading.Timer(0.2, fcntl.flock, (probe, fcntl.LOCK_UN)).start()
        with run.training_lock():
            assert run.is_training()


def test_the_config_checked_is_the_config_parsed_whatever_is_written_meanwhile(
        made, tmp_path, monkeypatch):
    # A race: config.toml swapped for a code-naming one while it is read, then the signed one
    # put back before its signature is checked. One read: the bytes verified are the bytes
    # parsed, so the swapped config is the one checked, and refused.
    from cnnlab.run_folder import RunFolder

    run_dir = _copy(made, tmp_path, monkeypatch, as_owner=True)
    signed = (run_dir / "config.toml").read_bytes()
    marker = tmp_path / "pwned"
    _strangers_code("os.system", run_dir, marker)
    folder = RunFolder(run_dir)
    recipe = folder.recipe()  # the attacker's
    (run_dir / "config.toml").write_bytes(signed)  # what a second read would have found
    with pytest.raises(UntrustedCodeError, match="os:system"):
        folder.model_source(recipe)
    assert not marker.exists()


def test_an_empty_or_cut_signing_key_is_refused_never_used(made, tmp_path, monkeypatch, capsys):
    import hmac

    run_dir = _copy(made, tmp_path, monkeypatch, as_owner=False)
    monkeypatch.setenv("CNNLAB_CONFIG_DIR", str(tmp_path / "victim"))
    (tmp_path / "victim").mkdir()
    marker = tmp_path / "pwned"
    _strangers_code("os.system", run_dir, marker)
    for key in (b"", b"0123abcd\n"):  # a stop before the write; one cut short
        (tmp_path / "victim" / "signing.key").write_bytes(key)
        mac = hmac.new(key.strip(), digestmod=hashlib.sha256)
        for name in ("config.toml", "model_source.py", "run.json"):
            part = (run_dir / name).read_bytes() if (run_dir / name).exists() else b""
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        (run_dir / "signature").write_text(mac.hexdigest() + "\n")
        assert main(["report", str(run_dir)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "signing key" in err[0] and "delete it" in err[0]
        assert not marker.exists()
@pytest.mark.slow


def test_processes_making_the_key_at_once_all_read_the_one_key(tmp_path):
    import subprocess

    env = {**os.environ, "CNNLAB_CONFIG_DIR": str(tmp_path / "config")}
    code = ("from cnnlab.run_folder.trust import signing_key; import sys; "
            "sys.stdout.write(signing_key().decode())")
    starts = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                               text=True) for _ in range(8)]
    keys = {process.communicate(timeout=120)[0] for process in starts}
    assert len(keys) == 1 and len(keys.pop()) == 64
    assert [p.name for p in (tmp_path / "config").iterdir()] == ["signing.key"]


def test_a_folders_own_config_named_as_a_recipe_is_the_folders_data(made, tmp_path, monkeypatch,
                                                                      capsys):
    # `cnnlab check RUN/config.toml --run RUN`: the recipe file is the stranger's folder's, so
    # the code it names runs only as that folder's would: trusted.
    run = _copy(made, tmp_path, monkeypatch, as_owner=False)
    marker = tmp_path / "pwned"
    _strangers_code("os.system", run, marker)
    for verb in (["check", str(run / "config.toml"), "--run", str(run)],
                 ["train", str(run / "config.toml"), "--out", str(tmp_path / "runs")],
                 ["lr-find", str(run / "config.toml")]):
        assert main(verb) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--trust-code" in err[0] and not marker.exists()
    assert main(["check", str(run / "config.toml"), "--run", str(run), "--trust-code"]) == 2
    assert marker.exists()  # trusted, it ran (and a shell command is no model)
