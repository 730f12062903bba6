"""What a case of the reliability campaign is made of: its scratch folder, the real `cnnlab`
command run in it, the `fault` decorator that checks what every case must show, and the
helpers several groups share."""


from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

DATA = Path(os.environ.get("CNNLAB_DATA", "../shared/data")).resolve()
SMALL = ["--set", "data.train_limit=1024", "--set", "data.test_limit=256",
         "--set", "train.epochs=2", "--no-progress"]
LONGER = ["--set", "data.train_limit=6144", "--set", "data.test_limit=256",
          "--set", "train.epochs=4", "--no-progress"]
LEFTOVERS = ("*.tmp", "*.part", ".*.tmp", ".*.part")
GROUPS = ("recipe", "cli", "data", "model", "filesystem", "run_folder", "signals")


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


def fault(group: str, what: str, expect: int, *, folder: bool = False,
          needs_root: bool = False) -> Callable:
    """A case of the campaign: `what` it tries, the exit code `expect`ed of its last command,
    whether it may leave a run `folder`. The case returns its last command's result, or that
    and the problems it found itself."""
    def make(case: Callable) -> Callable:
        def test(scratch: Scratch) -> None:
            result = case(scratch)
            finished, problems = result if isinstance(result, tuple) else (result, [])
            lines = [line for line in finished.err.splitlines() if line.strip()]
            test.outcome = (str(finished.code), lines[-1] if lines else "")
            problems = _common_problems(scratch, finished, expect, folder) + problems
            assert not problems, "; ".join(problems)

        test.__name__, test.__doc__ = case.__name__, what
        test.case = (group, what, expect)
        marks = [getattr(pytest.mark, group.replace(" ", "_"))]
        if needs_root:
            marks.append(pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount a "
                                                                       "tmpfs"))
        for mark in marks:
            test = mark(test)
        return test
    return make


def _common_problems(s: Scratch, result: Finished, expect: int, folder: bool) -> list[str]:
    problems = []
    if result.code != expect:
        problems.append(f"exit {result.code}: {result.err.strip()[-300:]}")
    if any("Traceback (most recent call last)" in text for text in s.outputs):
        problems.append("traceback")
    lines = [line for line in result.err.splitlines() if line.strip()]
    if expect == 2 and len(lines) != 1:
        problems.append(f"the error is {len(lines)} lines")
    problems += [f"left {p.relative_to(s.root)}" for pattern in LEFTOVERS
                 for p in s.root.rglob(pattern)]
    if not folder and s.run_folders():
        problems.append("left a run folder")
    return problems


def train(s: Scratch, *args: str, recipe: str = "mnist-s5-10ep", **kw) -> Finished:
    return s.cnnlab("train", recipe, "--out", str(s.runs), *SMALL, *args, **kw)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def data_copy(s: Scratch, *names: str) -> Path:
    """A private copy of some of the real data folders, to damage."""
    import shutil

    root = s.root / "data"
    for name in names:
        shutil.copytree(DATA / name, root / name)
    return root


def expect_in(text: str, *words: str) -> list[str]:
    return [f"the message does not say {word!r}" for word in words if word not in text]


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
