"""The adversarial cases for a sweep's and a design's folder: folders of run folders, which
travel as run folders do, and which the line under their README's "Reproduce" heading resumes
(`cnnlab sweep FOLDER/sweep.toml --resume`, `cnnlab design FOLDER/design.toml --resume`); a
design folder is also read by `cnnlab design-library`. Each case plants its attack in a copy
of one small finished sweep or design on arrays, beside `outside/`, and asserts what
test_adversarial.py asserts of a run folder: nothing outside created, changed or deleted (a
`.pth` file there would run at Python's next start), exit 2 with one line where the verb
refuses, no internal error.

    .venv/bin/pytest benchmarks/faults -m adversarial    (make test runs it)
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hostile import as_user, outside_folder, small_arrays, snapshot

from cnnlab.cli import main

pytestmark = pytest.mark.adversarial
pytest.importorskip("optuna")

ROWS: list[tuple[str, str, str, str]] = []  # (attack, verb, exit, outcome): conftest prints them


@pytest.fixture(scope="session")
def finished(tmp_path_factory) -> dict[str, Path]:
    """One finished sweep and one finished design, each of two 1-epoch trials on arrays."""
    root = tmp_path_factory.mktemp("adversarial-studies")
    data = small_arrays(root)
    (root / "arrays.toml").write_text(
        f'name = "arrays"\n[data]\ndataset = "npz"\npath = "{data}"\nbatch_size = 64\n'
        '[model]\nname = "mnist_pool"\n[train]\nepochs = 1\ndevice = "cpu"\n')
    (root / "s.toml").write_text(
        '[sweep]\nrecipe = "arrays.toml"\ntrials = 2\nobjective = "accuracy"\nval_split = 64\n'
        '[sweep.space]\n"optim.lr" = { log = [0.01, 0.1] }\n')
    (root / "d.toml").write_text(
        '[design]\ndataset = "npz"\ntrials = 2\ncandidates = 1\nseeds = 1\nval_split = 64\n'
        f'set = [\'data.path="{data}"\', "data.batch_size=64", \'train.device="cpu"\']\n'
        '[design.space]\n"model.args.widths.0" = { int = [4, 8] }\n'
        '[spec]\nmax_params = 6000\nmax_epochs = 1\nmin_test_acc = 20.0\nlast_epochs = 1\n'
        'require = ["batchnorm", "gap", "fc"]\n')
    with as_user(root / "config"), contextlib.redirect_stdout(io.StringIO()):
        for verb in ("sweep", "design"):
            code = main([verb, str(root / f"{verb[0]}.toml"), "--out", str(root / "made"),
                         "--no-progress"])
            assert code == 0, f"the base {verb} did not finish"
    return {"sweep": root / "made" / "s", "design": root / "made" / "d"}


@dataclass
class Scene:
    """One case's world: the stranger's `folder` (a sweep's or a design's) in `inbox/`, the
    rest of the disk `outside/`, and where `cnnlab design-library` writes."""

    kind: str
    root: Path
    folder: Path
    outside: Path
    library: Path

    @property
    def search(self) -> str:
        """The folder of the study whose trials and study.db the folder holds."""
        return "" if self.kind == "sweep" else "d-search/"


def _scene(kind: str, base: Path, root: Path) -> Scene:
    folder = root / "inbox" / base.name
    shutil.copytree(base, folder, symlinks=True)
    return Scene(kind, root, folder, outside_folder(root), root / "library")


# --- the attacks ----------------------------------------------------------------------------
# Each plants its attack and returns the exit code a verb gives it: 2 where it refuses the
# folder, 0 where it succeeds with the attack made harmless.

def _moved_out(s: Scene, name: str) -> None:
    """`name` in the folder becomes a link to a copy of it outside."""
    place = s.folder / name
    shutil.move(place, s.outside / place.name)
    place.symlink_to(s.outside / place.name)


def link_readme_out(s: Scene) -> int:
    (s.folder / "README.md").unlink()
    (s.folder / "README.md").symlink_to(s.outside / "canary.txt")
    return 2


def link_own_file_out(s: Scene) -> int:
    """The folder's copy of the sweep or design file, which the README's line names."""
    _moved_out(s, f"{s.kind}.toml")
    return 2


def link_plots_out(s: Scene) -> int:
    _moved_out(s, f"{s.search}plots")
    return 2


def link_runs_out(s: Scene) -> int:
    """The folder of the trials' run folders (a design's confirmation runs too)."""
    _moved_out(s, f"{s.search}trials")
    if s.kind == "design":
        _moved_out(s, "confirm")
    return 2


def link_study_db_out(s: Scene) -> int:
    _moved_out(s, f"{s.search}study.db")
    return 2


def dangling_journal(s: Scene) -> int:
    """A journal SQLite would write through, to a .pth file Python runs at its start."""
    (s.folder / f"{s.search}study.db-journal").symlink_to(s.outside / "pwned.pth")
    return 2


def fifo_readme(s: Scene) -> int:
    (s.folder / "README.md").unlink()
    os.mkfifo(s.folder / "README.md")
    return 2


def study_names_a_run_outside(s: Scene) -> int:
    """The database says every trial trained into a run folder outside (a copy of one, as a
    user's own run would stand there): the report of the pick is written into the folder the
    sweep's layout gives, never into one the database names."""
    victim = s.outside / "my-run"
    shutil.copytree(s.folder / f"{s.search}trials" / "0", victim)
    with _study_db(s) as db:
        db.execute("UPDATE trial_user_attributes SET value_json = ? WHERE key = 'run_dir'",
                   (json.dumps(str(victim)),))
    return 0


def point_names_code(s: Scene) -> int:
    """A trial's searched point gains a key the space does not search: the model, named as a
    file of the folder's whose import leaves a marker. Built into a recipe, it would run."""
    (s.folder / "evil.py").write_text(f"open({str(s.root / 'pwned')!r}, 'w')\n"
                                      "def build(**kw):\n    raise ValueError('it ran')\n")
    choices = json.dumps({"name": "CategoricalDistribution",
                          "attributes": {"choices": [f"{s.folder / 'evil.py'}:build"]}})
    with _study_db(s) as db:
        for (trial_id,) in db.execute("SELECT trial_id FROM trials").fetchall():
            db.execute("INSERT INTO trial_params (trial_id, param_name, param_value, "
                       "distribution_json) VALUES (?, 'model.name', 0.0, ?)",
                       (trial_id, choices))
    return 2


def figure_as_text(s: Scene) -> int:
    """A trial's parameter count recorded as text (a report formats it as a number)."""
    with _study_db(s) as db:
        db.execute("UPDATE trial_user_attributes SET value_json = '\"lots\"' "
                   "WHERE key = 'params'")
    return 2


def settings_as_text(s: Scene) -> int:
    """What the study's trials trained with, which a resumed sweep compares with its file,
    recorded as text."""
    with _study_db(s) as db:
        db.execute("UPDATE study_user_attributes SET value_json = '\"all\"' "
                   "WHERE key = 'trained_with'")
    return 2


@contextlib.contextmanager
def _study_db(s: Scene):
    with contextlib.closing(sqlite3.connect(s.folder / f"{s.search}study.db")) as db, db:
        yield db


def link_record_out(s: Scene) -> int:
    _moved_out(s, "design.json")
    return 2


def shape_out_of_the_library(s: Scene) -> int:
    """An input shape that names a file outside the library's folder."""
    _edit_record(s, lambda record: record.update(input_shape="../outside/pwned"))
    return 2


def nested_record(s: Scene) -> int:
    (s.folder / "design.json").write_text("[" * 100_000 + "]" * 100_000)
    return 2


def _edit_record(s: Scene, change: Callable[[dict], None]) -> None:
    record = json.loads((s.folder / "design.json").read_text())
    change(record)
    (s.folder / "design.json").write_text(json.dumps(record))


# --- the verbs ------------------------------------------------------------------------------

VERBS: dict[str, tuple[str, Callable[[Scene], list[str]]]] = {
    "sweep --resume": ("sweep", lambda s: ["sweep", f"{s.folder}/sweep.toml", "--out",
                                           str(s.folder.parent), "--resume", "--no-progress"]),
    "design --resume": ("design", lambda s: ["design", f"{s.folder}/design.toml", "--out",
                                             str(s.folder.parent), "--resume", "--no-progress"]),
    "design-library": ("design", lambda s: ["design-library", str(s.folder), "--out",
                                            str(s.library)]),
}
ATTACKS = [link_readme_out, link_own_file_out, link_plots_out, link_runs_out, link_study_db_out,
           dangling_journal, fifo_readme, study_names_a_run_outside, point_names_code,
           figure_as_text, settings_as_text, link_record_out, shape_out_of_the_library,
           nested_record]
DESIGN_ONLY = {"link_record_out", "shape_out_of_the_library", "nested_record"}
# design-library reads design.json alone: an attack on another file leaves it nothing to
# refuse; --resume rewrites design.json without reading it.
UNTOUCHED = {(a.__name__, "design-library") for a in ATTACKS if a.__name__ not in DESIGN_ONLY} | {
    ("shape_out_of_the_library", "design --resume"), ("nested_record", "design --resume")}
CASES = [(attack, verb) for attack in ATTACKS for verb, (kind, _) in VERBS.items()
         if kind == "design" or attack.__name__ not in DESIGN_ONLY]


@pytest.mark.parametrize(("attack", "verb"), CASES,
                         ids=[f"{a.__name__}-{v.replace(' --', '-')}" for a, v in CASES])
def test_a_hostile_study_folder(attack, verb, finished, tmp_path):
    kind, argv = VERBS[verb]
    s = _scene(kind, finished[kind], tmp_path)
    planted = attack(s)
    expect = 0 if (attack.__name__, verb) in UNTOUCHED else planted
    before = snapshot(s.root, {s.folder, s.library, s.root / "config"})
    err = io.StringIO()
    with as_user(s.root / "config"), contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        code = main(argv(s))
    after = snapshot(s.root, {s.folder, s.library, s.root / "config"})
    said = err.getvalue()
    lines = [line for line in said.splitlines() if line.strip()]
    problems = [f"outside changed: {path}" for path in sorted(set(before) | set(after))
                 if before.get(path) != after.get(path)]
    if code != expect:
        problems.append(f"exit {code}, expected {expect}: {said.strip()[-300:]}")
    if expect == 2 and len(lines) != 1:
        problems.append(f"the error is {len(lines)} lines")
    if code == 70 or "internal error" in said:
        problems.append("internal error (exit 70)")
    ROWS.append((attack.__name__, verb, str(code),
                 "ok" if not problems else "; ".join(problems)[:160]))
    assert not problems, "; ".join(problems)
