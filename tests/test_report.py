import json
import re
import shutil
import subprocess

import pytest
import torch
from torch import nn

from cnnlab.config import load_recipe
from cnnlab.errors import ModelError
from cnnlab.pipeline import train
from cnnlab.report import compare, gradcam, write_report
from cnnlab.report.confusion import confusion_matrix, most_confused
from tests.conftest import chromium_path, saved_as_npz, separable_dataset, train_run


class LooksAtTopLeft(nn.Module):
    """Only the top-left quadrant of `features` can reach the output, by construction."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.features = nn.Conv2d(4, 4, 1, bias=False)
        self.head = nn.Linear(4, 3)
        mask = torch.zeros(1, 1, 16, 16)
        mask[..., :8, :8] = 1
        self.register_buffer("mask", mask)

    def forward(self, x):
        x = torch.relu(self.stem(x)) * self.mask
        return self.head(torch.relu(self.features(x)).mean((2, 3)))


def test_gradcam_finds_the_only_region_the_model_uses():
    torch.manual_seed(0)
    model = LooksAtTopLeft()
    x = torch.rand(6, 1, 16, 16)
    classes = model(x).argmax(1)
    heat = gradcam(model, "features", x, classes)
    assert heat.shape == (6, 16, 16)
    assert heat.max() == pytest.approx(1.0)
    inside = heat[:, :7, :7].sum((1, 2))
    outside = heat[:, 9:, :].sum((1, 2)) + heat[:, :, 9:].sum((1, 2))
    assert (inside > 0).all()
    assert (outside == 0).all()  # bilinear upsampling blurs only across the quadrant edge


def test_gradcam_rejects_an_unknown_layer():
    with pytest.raises(ModelError, match="no layer 'nope'"):
        gradcam(LooksAtTopLeft(), "nope", torch.rand(1, 1, 16, 16), torch.tensor([0]))


def test_most_confused_pairs():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    predicted = torch.tensor([0, 1, 1, 1, 2, 0, 2, 1])
    matrix = confusion_matrix(labels, predicted, 3)
    assert matrix.tolist() == [[1, 2, 0], [0, 1, 1], [1, 1, 1]]
    assert most_confused(matrix, ("a", "b", "c"))[0] == ("a", "b", 2)
    assert {p[2] for p in most_confused(matrix, ("a", "b", "c"))} == {2, 1}


@pytest.fixture(scope="module")
def reported_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    recipe = load_recipe("mnist-s5-10ep", ["train.epochs=2", "data.batch_size=64",
                                        "train.device=cpu"])
    result = train(recipe, dataset=separable_dataset(), out_dir=out, progress=False, echo=None,
                   html=True)
    return result


@pytest.mark.slow
def test_a_run_writes_plots_readme_and_html(reported_run):
    run_dir = reported_run.run_dir
    for name in ("curves", "misclassified", "confusion", "gradcam"):
        png = run_dir / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 5000
    readme = (run_dir / "README.md").read_text()
    final = reported_run.history[-1]["test_acc"]
    assert f"Final test accuracy **{final:.2f}%**" in readme
    for section in ("## Budget", "## Model", "## Receptive field", "## Training log",
                    "## Mistakes", "## GradCAM"):
        assert section in readme
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", readme)
    assert images == ["plots/curves.png", "plots/misclassified.png", "plots/confusion.png",
                      "plots/gradcam.png"]  # relative links, as GitHub needs
    assert all((run_dir / path).is_file() for path in images)
    assert "Total params: 16,754" in readme
    # The run evaluates an EMA copy (frozen weights); the table counts the model that trained.
    assert reported_run.model is not None and not any(
        p.requires_grad for p in reported_run.model.parameters())
    assert "Trainable params: 16,754" in readme and "Non-trainable params: 0" in readme
    page = (run_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 4 and "plots/" not in page
    row = reported_run.history[-1]
    assert f"Trained on: {row['device']}, {row['precision']}, torch {torch.__version__}." \
        in readme
    assert row["device"].startswith("cpu, ")


@pytest.mark.slow
def test_report_can_be_rewritten_from_the_run_folder(reported_run, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(reported_run.run_dir, run_dir)
    shutil.rmtree(run_dir / "plots")
    (run_dir / "README.md").unlink()
    write_report(run_dir, dataset=separable_dataset(), layer="features.5.0", mistakes=5)
    assert "`features.5.0`" in (run_dir / "README.md").read_text()
    with pytest.raises(ModelError, match="no layer"):
        write_report(run_dir, dataset=separable_dataset(), layer="features.99")


@pytest.mark.slow
def test_compare_overlays_runs_and_tabulates(reported_run, tmp_path):
    other = train_run(load_recipe("mnist-s5-10ep", ["train.epochs=1", "data.batch_size=64",
                                                 "train.device=cpu"]),
                       dataset=separable_dataset(), out_dir=tmp_path)
    table = compare([reported_run.run_dir, other.run_dir], tmp_path / "both.png")
    assert (tmp_path / "both.png").stat().st_size > 5000
    lines = table.splitlines()
    assert len(lines) == 3
    assert f"{other.history[-1]['test_acc']:.2f}%" in lines[2]


CHECK_IMAGES = """<script>
window.addEventListener('load', () => {
  const widths = Array.from(document.images).map(img => img.naturalWidth);
  document.body.setAttribute('data-image-widths', JSON.stringify(widths));
});
</script></body>"""


@pytest.mark.slow
def test_report_html_renders_in_a_browser(reported_run, tmp_path):
    page = (reported_run.run_dir / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", CHECK_IMAGES))
    result = subprocess.run(
        [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    widths = json.loads(re.search(r'data-image-widths="([^"]*)"', dom).group(1)
                        .replace("&quot;", '"'))
    assert len(widths) == 4 and all(w > 0 for w in widths)
    final = reported_run.history[-1]
    assert f"{final['test_acc']:.2f}%" in dom
    assert "Total params: 16,754" in dom


@pytest.mark.slow
def test_tensorboard_gets_every_epoch_the_hparams_and_the_confusion_matrix(tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    recipe = load_recipe("mnist-s5-10ep", ["train.epochs=2", "data.batch_size=64",
                                        "train.device=cpu", "train.tensorboard=true"])
    result = train_run(recipe, dataset=separable_dataset(), out_dir=tmp_path, report=True)
    events = accumulator.EventAccumulator(str(result.run_dir / "tb"))
    events.Reload()
    tests = events.Scalars("accuracy/test")
    assert [e.step for e in tests] == [1, 2]
    assert [round(e.value, 4) for e in tests] == [round(r["test_acc"], 4) for r in result.history]
    assert {"loss/train", "lr", "accuracy/train"} <= set(events.Tags()["scalars"])
    assert events.Tags()["images"] == ["confusion_matrix"]
    hparams = accumulator.EventAccumulator(str(result.run_dir / "tb"),
                                           size_guidance={"tensors": 0})
    hparams.Reload()
    assert "_hparams_/session_start_info" in hparams.summary_metadata


@pytest.mark.slow
def test_a_report_rebuilt_from_the_folder_states_the_data_the_run_trained_on(tmp_path):

    data = separable_dataset(n_train=300, n_test=64)
    arrays = saved_as_npz(data, tmp_path)
    recipe = load_recipe("mnist-s5-10ep", [f'data.path="{arrays}"',
                                           'data.dataset="npz"',
                                           "data.val_split=60", "data.train_limit=280",
                                           "train.epochs=1", "train.device=cpu"])
    result = train_run(recipe, out_dir=tmp_path / "runs", report=True, enforce_spec=False)
    readme = result.run_dir / "README.md"
    said = [line for line in readme.read_text().splitlines() if line.startswith("Data:")]
    assert "220 training and 64 test images" in said[0]  # 280 kept, 60 held out
    readme.unlink()
    write_report(result.run_dir)
    assert [line for line in readme.read_text().splitlines() if line.startswith("Data:")] == said
