"""The reliability campaign's fixtures: each case runs the real `cnnlab` command in its own
scratch folder (its own runs/, signing key and mounts), and is checked for what every case
must show besides its own: the exit code it should give, no Python traceback on any output,
an error that is one line, no temporary file left behind, and no run folder where the run
should have stopped before writing one. At the end, the cases and outcomes print as the
Markdown table RELIABILITY.md holds.

    CNNLAB_DATA=../shared/data .venv/bin/pytest benchmarks/faults [-m data]

Groups are markers (recipe, cli, data, model, filesystem, run_folder, signals). The cases of
a full disk and a read-only filesystem mount a tmpfs and skip without root.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from fault_case import DATA, GROUPS, Scratch


@pytest.fixture
def scratch(tmp_path: Path) -> Scratch:
    env = {**os.environ, "CNNLAB_DATA": str(DATA), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
           "CNNLAB_CONFIG_DIR": str(tmp_path / "config")}  # this case's own signing key
    s = Scratch(tmp_path, env)
    yield s
    for mount in reversed(s.mounts):
        subprocess.run(["umount", "-l", str(mount)], check=False)


# --- the table ------------------------------------------------------------------------------

_ROWS: list[tuple[str, str, int, str, str, str]] = []
_STARTED = time.monotonic()


def pytest_configure(config: pytest.Config) -> None:
    for group in GROUPS:
        config.addinivalue_line("markers", f"{group}: the campaign's {group} cases")
    config.addinivalue_line("markers", "adversarial: hostile run folders against every verb "
                                       "that opens one (make test runs them)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    case = getattr(getattr(item, "function", None), "case", None)
    if case is None or not (report.when == "call" or report.skipped):
        return report
    code, said = getattr(item.function, "outcome", ("-", ""))
    if report.skipped:
        outcome = "skipped: " + str(report.longrepr[-1] if isinstance(report.longrepr, tuple)
                                    else report.longrepr).removeprefix("Skipped: ")
    elif report.passed:
        outcome = "ok"
    else:
        outcome = "**" + str(call.excinfo.value).split("\n")[0].replace("|", "/") + "**"
    _ROWS.append((*case, code, outcome, said.replace("|", "/")[:160]))
    return report


def pytest_terminal_summary(terminalreporter) -> None:
    _adversarial_table(terminalreporter.write_line)
    if not _ROWS:
        return
    write_line = terminalreporter.write_line
    write_line("")
    write_line("| # | group | case | expected | exit | outcome | what the user read (last line) |")
    write_line("|---|---|---|---|---|---|---|")
    for number, (group, what, expect, code, outcome, said) in enumerate(_ROWS, 1):
        write_line(f"| {number} | {group} | {what} | {expect} | {code} | {outcome} | {said} |")
    passed = sum(row[4] == "ok" for row in _ROWS)
    skipped = sum(row[4].startswith("skipped") for row in _ROWS)
    tracebacks = sum("traceback" in row[4] for row in _ROWS)
    write_line(f"fault_campaign cases={len(_ROWS)} passed={passed} skipped={skipped} "
               f"failed={len(_ROWS) - passed - skipped} tracebacks={tracebacks} "
               f"seconds={time.monotonic() - _STARTED:.0f}")


def _adversarial_table(write_line) -> None:
    """The attacks by verb, a table per kind of folder: each cell the exit code, with what
    went wrong where it did."""
    import sys

    for name in ("test_adversarial", "test_adversarial_studies"):
        rows = getattr(sys.modules.get(name), "ROWS", [])
        if rows:
            _attack_table(rows, write_line)


def _attack_table(rows: list[tuple[str, str, str, str]], write_line) -> None:
    verbs = list(dict.fromkeys(verb for _, verb, _, _ in rows))
    cells = {(attack, verb): code if outcome == "ok" else f"**{code}: {outcome}**"
             for attack, verb, code, outcome in rows}
    write_line("")
    write_line("| attack | " + " | ".join(verbs) + " |")
    write_line("|---|" + "---|" * len(verbs))
    for attack in dict.fromkeys(attack for attack, _, _, _ in rows):
        write_line(f"| {attack} | " + " | ".join(cells.get((attack, v), "-") for v in verbs)
                   + " |")
    failed = [row for row in rows if row[3] != "ok"]
    write_line(f"adversarial cases={len(rows)} failed={len(failed)} "
               f"escapes={sum('outside changed' in r[3] or 'code ran' in r[3] for r in rows)} "
               f"exit70={sum('exit 70' in r[3] for r in rows)} "
               f"unbounded={sum('took' in r[3] for r in rows)}")
