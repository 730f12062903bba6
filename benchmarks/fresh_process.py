"""Calling a benchmark's function in a new Python process, for settings a process can make
only once (inter-op threads, the C library's memory thresholds): each side of a race then
starts clean."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))


def call_in_fresh_process(module: str, function: str, *args: object) -> object:
    """`module.function(*args)` run in a new interpreter that imports `module` from this folder;
    the arguments and the returned value travel as Python literals (numbers, strings, tuples)."""
    code = (f"import sys; sys.path.insert(0, {BENCHMARKS!r}); import {module};"
            f" print(repr({module}.{function}(*{args!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:  # the child's own last words, not a CalledProcessError
        said = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        sys.exit(f"{module}.{function} in a fresh process: {said[-1]}")
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])
