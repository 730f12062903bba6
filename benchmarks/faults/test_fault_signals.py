"""The campaign's signal cases: Ctrl-C and SIGKILL mid-run, then --resume."""

import json
import signal
import time
from pathlib import Path

from fault_case import (
    LEFTOVERS,
    LONGER,
    Finished,
    Scratch,
    expect_in,
    fault,
    wait_for_epochs,
)

from cnnlab.run_folder.checkpoint import load_checkpoint
from cnnlab.run_folder.history import best_row


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


@fault("signals", "Ctrl-C in epoch 2, then --resume", 0, folder=True)
def test_ctrl_c_in_epoch_2_then_resume(s):
    return stop_then_resume(s, signal.SIGINT, 130)


@fault("signals", "SIGKILL in epoch 2, then --resume", 0, folder=True)
def test_sigkill_in_epoch_2_then_resume(s):
    return stop_then_resume(s, signal.SIGKILL, -9)
