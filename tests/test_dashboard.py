"""`cnnlab dashboard SWEEP_DIR`: optuna-dashboard serving a finished sweep's own study file,
started as a user would and read over HTTP."""

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from cnnlab.cli import main

optuna = pytest.importorskip("optuna")
pytest.importorskip("optuna_dashboard")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
@pytest.mark.slow


def test_the_dashboard_serves_a_finished_sweeps_study(tmp_path):
    folder = tmp_path / "sweeps" / "small"
    folder.mkdir(parents=True)
    study = optuna.create_study(study_name="small", storage=f"sqlite:///{folder / 'study.db'}",
                                direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("optim.lr", 1e-3, 0.3, log=True), 3)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "cnnlab", "dashboard", str(folder),
                               "--port", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies",
                                            timeout=5) as answer:
                    studies = json.loads(answer.read())
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, \
                    server.stderr.read() if server.poll() is not None else "no answer in 60 s"
                time.sleep(0.3)
        assert [s["study_name"] for s in studies["study_summaries"]] == ["small"]
    finally:
        server.terminate()
        server.wait(timeout=120)  # a loaded machine can take its time to tear the server down


def test_a_folder_without_a_study_is_one_line(tmp_path, capsys):
    assert main(["dashboard", str(tmp_path)]) == 2
    assert "holds no study.db" in capsys.readouterr().err
