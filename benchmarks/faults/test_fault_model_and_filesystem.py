"""The campaign's model and filesystem cases: broken models, full and read-only
disks, folders that are not runs."""



from fault_case import (
    LEFTOVERS,
    LONGER,
    SMALL,
    Finished,
    Scratch,
    expect_in,
    fault,
    interrupted_run,
    train,
    write,
)

from cnnlab.run_folder.checkpoint import load_checkpoint


def model_case(s: Scratch, source: str) -> Finished:
    write(s.root / "net.py", source)
    return train(s, "--set", f"model.name={s.root / 'net.py'}:build", "--no-check")


@fault("model", "model with 7 outputs for 10 classes", 2)
def test_model_with_7_outputs_for_10_classes(s):
    return model_case(s, "from torch import nn\ndef build():\n"
                              "    return nn.Sequential(nn.Flatten(), nn.Linear(784, 7))\n")


@fault("model", "model for 3-channel input on MNIST", 2)
def test_model_for_3_channel_input_on_mnist(s):
    return model_case(s, "from torch import nn\ndef build():\n    return nn.Sequential("
                         "nn.Conv2d(3, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), "
                         "nn.Linear(8, 10))\n")


@fault("model", "model over the recipe's parameter budget", 1)
def test_model_over_the_recipe_s_parameter_budget(s):
    return train(s, "--set", "model.args.width=64")


@fault("filesystem", "--out on a read-only filesystem", 2, needs_root=True)
def test_out_on_a_read_only_filesystem(s):
    target = s.mount_tmpfs("ro", "1m")
    s.read_only(target)
    return s.cnnlab("train", "mnist-s5-10ep", "--out", str(target / "runs"), *SMALL)


@fault("filesystem", "the disk fills up during the run", 2, needs_root=True)
def test_the_disk_fills_up_during_the_run(s):
    small = s.mount_tmpfs("small", "400k")
    result = s.cnnlab("train", "mnist-s5-10ep", "--out", str(small / "runs"), *LONGER)
    problems = expect_in(result.err, "disk is full")
    for folder in s.run_folders(small / "runs"):
        last = folder / "checkpoints/last.pt"
        if last.exists():
            try:
                load_checkpoint(last)
            except Exception as exc:  # noqa: BLE001 (any failure is the finding)
                problems.append(f"last.pt unreadable: {exc}")
        problems += [f"left {p.name}" for pattern in LEFTOVERS for p in folder.rglob(pattern)]
    return result, problems


@fault("filesystem", "--resume a folder on a read-only filesystem", 2, needs_root=True)
def test_resume_a_folder_on_a_read_only_filesystem(s):
    mount = s.mount_tmpfs("ro", "20m")
    run = interrupted_run(s, under=mount / "runs")
    s.read_only(mount)
    return s.cnnlab("train", "--resume", str(run), "--no-progress")


@fault("filesystem", "--resume a folder that is not a run", 2)
def test_resume_a_folder_that_is_not_a_run(s):
    (s.root / "notes").mkdir()
    return s.cnnlab("train", "--resume", str(s.root / "notes"))


@fault("filesystem", "--resume with last.pt truncated", 2, folder=True)
def test_resume_with_last_pt_truncated(s):
    run = interrupted_run(s)
    last = run / "checkpoints/last.pt"
    last.write_bytes(last.read_bytes()[:500])
    return s.cnnlab("train", "--resume", str(run), "--no-progress")


@fault("filesystem", "report of a folder that is not a run", 2)
def test_report_of_a_folder_that_is_not_a_run(s):
    (s.root / "notes").mkdir()
    return s.cnnlab("report", str(s.root / "notes"))


@fault("filesystem", "export --onnx of a folder that does not exist", 2)
def test_export_onnx_of_a_folder_that_does_not_exist(s):
    return s.cnnlab("export", str(s.root / "nothing"), "--onnx")
