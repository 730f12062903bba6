import os
import subprocess
import sys

import pytest

from cnnlab.cli import main


def _cli(*args, env=None, cwd=None):
    environment = {**os.environ, "CNNLAB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "cnnlab.cli", *args], capture_output=True,
                          text=True, env=environment, cwd=cwd, timeout=300)


def test_recipes_lists_name_dataset_model_params_epochs_target(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("mnist-s4 "))
    assert row.split() == ["mnist-s4", "mnist", "mnist_s4", "18,650", "19", "99.4%"]


def test_models_lists_parameter_counts(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "mnist_s5" in out and "19,290" in out and "26,314" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "no-such-recipe"], "unknown recipe"),
        (["train", "mnist-s4", "--set", "train.epoch=3"], "train.epoch"),
        (["train", "mnist-s4", "--seed", "x"], "invalid int value"),
        (["train", "mnist-s4", "--device", "tpu"], "invalid choice"),
        (["train"], "give a recipe"),
        (["train", "mnist-s4", "--resume", "runs/x"], "--resume"),
        (["fly"], "invalid choice"),
        (["train", "mnist-s4", "--set", "data.batch_size=0"], "at least 1"),
        (["summary", "my_net.py:build"], "model file my_net.py not found"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1
@pytest.mark.slow


def test_missing_data_is_one_line_without_traceback(tmp_path):
    result = _cli("train", "mnist-s4", "--data-dir", str(tmp_path / "empty"),
                  "--out", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "train-images-idx3-ubyte" in result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "empty").exists()


@pytest.mark.slow
def test_train_end_to_end_and_resume_a_finished_run(fake_mnist, tmp_path, capsys):
    root, _ = fake_mnist(n_train=256, n_test=64)
    code = main(["train", "mnist-s5-10ep", "--data-dir", str(root), "--out", str(tmp_path / "runs"),
                 "--set", "train.epochs=2", "--seed", "3", "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.count("Test set: Average loss:") == 2
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert {p.name for p in run_dir.iterdir()} == {
        "config.toml", "run.json", "log.txt", "history.jsonl", "checkpoints", "summary.txt",
        "rf.md", "check.md", "best.safetensors", "plots", "README.md", "signature"}
    assert "Total params: 16,754" in (run_dir / "summary.txt").read_text()
    assert "final receptive field" in (run_dir / "rf.md").read_text()
    # a 2-epoch run cannot decide a rule about the last 3 epochs: undecided, not failed
    assert ("| - | test accuracy >= 99.4% in each of the last 3 epochs | needs a run of at "
            "least 3 epochs |") in (run_dir / "check.md").read_text()
    assert "seed = 3" in (run_dir / "config.toml").read_text()
    assert main(["train", "--resume", str(run_dir), "--data-dir", str(root), "--no-progress"]) == 0
    assert "Test set" not in capsys.readouterr().out  # nothing left to train


@pytest.mark.slow
def test_lr_find_report_and_compare_commands(fake_mnist, tmp_path, capsys):
    root, _ = fake_mnist(n_train=256, n_test=64)
    png = tmp_path / "lr.png"
    assert main(["lr-find", "mnist-s5-10ep", "--data-dir", str(root), "--steps", "12",
                 "--start", "1e-4", "--end", "1", "--set", "data.batch_size=16",
                 "--out", str(png)]) == 0
    assert "suggested max lr" in capsys.readouterr().out
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["train", "mnist-s5-10ep", "--data-dir", str(root), "--out", str(tmp_path / "runs"),
                 "--set", "train.epochs=1", "--set", "data.batch_size=32", "--no-progress",
                 "--html"]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "README.md").is_file() and (run_dir / "report.html").is_file()
    (run_dir / "README.md").unlink()
    assert main(["report", str(run_dir), "--data-dir", str(root), "--mistakes", "4"]) == 0
    assert (run_dir / "README.md").is_file()
    assert main(["compare", str(run_dir), str(run_dir), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").is_file()
    assert main(["report", str(tmp_path)]) == 2  # not a run folder
    assert "not a cnnlab run folder" in capsys.readouterr().err


def test_check_exit_codes(capsys):
    assert main(["check", "mnist-s5-10ep"]) == 0
    assert main(["check", "mnist-s5-10ep", "--set", "x"]) == 2  # check takes no --set
    assert main(["summary", "cifar_s9", "--columns", "rf"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 94,292" in out and "cat-" in out


def test_json_output_for_scripts(capsys):
    import json

    assert main(["models", "--json"]) == 0
    models = {row["model"]: row for row in json.loads(capsys.readouterr().out)}
    assert models["mnist_s5"]["params"] == 19290 and models["cifar_s9"]["input"] == "3,32,32"
    assert main(["recipes", "--json"]) == 0
    recipes = {row["recipe"]: row for row in json.loads(capsys.readouterr().out)}
    assert recipes["mnist-s4"]["epochs"] == 19 and recipes["mnist-s4"]["params"] == 18650
    assert main(["summary", "mnist_pool", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["total_params"] == 16754 and table["rows"][0]["output_shape"] == [8, 26, 26]
    assert main(["check", "mnist-s5-10ep", "--json"]) == 0
    verdicts = json.loads(capsys.readouterr().out)
    assert verdicts["passed"] is True
    assert verdicts["verdicts"][0] == {"rule": "parameters <= 20,000", "ok": True,
                                       "measured": "16,754"}


def test_inspect_results_show_as_tables_in_a_notebook():
    from cnnlab import build_model, check, load_recipe, receptive_field, summary

    model = build_model("mnist_pool")
    assert summary(model, (1, 28, 28))._repr_markdown_().startswith("```\n---")
    assert receptive_field(model, (1, 28, 28))._repr_markdown_().startswith("| Layer | nin")
    verdicts = check(load_recipe("mnist-s5-10ep"))
    assert verdicts._repr_markdown_().startswith("|  | rule | measured |")


def test_a_recipe_over_its_budget_exits_1_like_check(tmp_path, capsys):
    code = main(["train", "mnist-s5-10ep", "--set", "spec.max_params=100", "--out",
                 str(tmp_path / "runs")])
    assert code == 1
    err = capsys.readouterr().err
    assert "breaks its [spec]" in err and "parameters <= 100" in err and "error" not in err
    assert not (tmp_path / "runs").exists()
