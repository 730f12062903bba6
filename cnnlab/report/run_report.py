"""The seed README, written by the tool: everything a run folder knows, as README.md (and
optionally report.html), with the plots it refers to in plots/."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cnnlab.config import Recipe
from cnnlab.data import Dataset, DeviceLoader, load_recipe_data
from cnnlab.display_text import for_code_span, for_markdown
from cnnlab.errors import ModelError, TrainingError
from cnnlab.inspection import Inspection
from cnnlab.inspection.spec import check_history
from cnnlab.prepare import as_the_run_sees_it, prepare
from cnnlab.report.confusion import (
    confusion_matrix,
    most_confused,
    per_class_accuracy,
    plot_confusion,
)
from cnnlab.report.curves import plot_curves, plot_lr_find
from cnnlab.report.document import Code, Heading, Image, Paragraph, Table, to_html, to_markdown
from cnnlab.report.gradcam import default_layer, gradcam, plot_gradcam
from cnnlab.report.mistakes import plot_misclassified
from cnnlab.report.predictions import Predictions, predict
from cnnlab.run_folder import RunFolder
from cnnlab.run_folder.confined import FolderFile
from cnnlab.run_folder.history import best_row, trained_on_spans
from cnnlab.run_folder.lr_find_result import LRFindResult
from cnnlab.training.optim import lr_curve

GRADCAM_IMAGES = 10
LR_CURVE_POINTS = 20_000
PNG_BYTES = 64 << 20  # a plot of cnnlab's is well under 1 MB


def write_report(
    run_dir: str | Path,
    *,
    model: nn.Module | None = None,
    dataset: Dataset | None = None,
    inspection: Inspection | None = None,
    data_dir: str | Path | None = None,
    html: bool = False,
    layer: str | None = None,
    mistakes: int = 20,
    trust_code: bool = False,
) -> Path:
    """Write plots/, README.md (and report.html) into a run folder; returns the README path.

    A finished run's `cnnlab.pipeline.run` passes what it holds: the evaluated `model`, the
    `dataset` as the run saw it, and the `inspection` with the run's verdicts. Given a run
    folder alone, they are rebuilt from it (`prepare`): model from the last checkpoint, data
    from disk with the run's limits and validation split; model code the folder names runs
    only if it is trusted (this user's own run, or `trust_code`)."""
    run = RunFolder.existing(run_dir)
    run.require_writable()
    history = run.history()
    if not history:
        raise TrainingError(f"{run.path} has no finished epoch to report on")
    # every file read before any is written
    recipe, found = run.recipe(), run.lr_find_record()
    int8, tflite = run.int8_record(), run.tflite_record()
    if model is None or inspection is None:
        prepared = prepare(folder=run, data_dir=data_dir, trust_code=trust_code)
        model = run.load_trained(prepared.model) if model is None else model
        dataset = prepared.data() if dataset is None else dataset
        inspection = prepared.inspection if inspection is None else inspection
        inspection.check.verdicts += check_history(recipe, history, training=run.is_training())
    elif dataset is None:
        dataset = as_the_run_sees_it(load_recipe_data(recipe.data, data_dir), recipe)
    if layer is not None and layer not in dict(model.named_modules()):
        raise ModelError(f"no layer {layer!r} in the model; see the layer names in `cnnlab rf`")

    layer = layer or default_layer(inspection.graph)
    predictions = predict(model, dataset, recipe.data.eval_batch_size, recipe.train.tta)
    # the schedule replayed at up to LR_CURVE_POINTS steps: its shape, at any run's length
    steps = min(history[0].get("steps", 1), max(1, LR_CURVE_POINTS // recipe.train.epochs))
    lrs = lr_curve(recipe.schedule, recipe.optim, steps, recipe.train.epochs)
    plot_curves(history, lrs, steps, run.file("plots/curves.png"))
    shown = plot_misclassified(predictions, run.file("plots/misclassified.png"), mistakes)
    matrix = confusion_matrix(predictions.labels, predictions.predicted, len(dataset.classes))
    plot_confusion(matrix, dataset.classes, run.file("plots/confusion.png"))
    _plot_gradcam(model, dataset, predictions, layer, run.file("plots/gradcam.png"))
    names = [for_markdown(name) for name in dataset.classes]

    field = inspection.field
    final, best = history[-1], best_row(history)
    blocks = [
        Heading(for_markdown(f"{recipe.name}: {recipe.description}" if recipe.description
                             else recipe.name), 1),
        Paragraph(
            f"Final test accuracy **{final['test_acc']:.2f}%** (epoch {final['epoch']}"
            f"{_without_tta(recipe, final)}), best **{best['test_acc']:.2f}%** "
            f"(epoch {best['epoch']}). Model `{for_code_span(recipe.model.name)}`, "
            f"{inspection.summary.total_params:,} parameters, "
            f"{len(history)} epochs in {sum(r['seconds'] for r in history):.0f} s."
        ),
        *([Paragraph(_int8_line(int8))] if int8 else []),
        *([Paragraph(_tflite_line(tflite))] if tflite else []),
        Paragraph(_data_line(recipe, dataset)),
        Paragraph(_trained_on_line(history)),
        Heading("Budget"),
        Table(*inspection.check.table()),
        Heading("Model"),
        Code(inspection.summary.to_text()),
        Heading("Receptive field"),
        Table(*field.table()),
        Paragraph(field.closing_line()),
        Heading("Training log"),
        Table(["epoch", "train loss", "train acc", "test loss", "test acc", "lr", "seconds"],
              [[str(r["epoch"]), f"{r['train_loss']:.4f}", f"{r['train_acc']:.2f}%",
                f"{r['test_loss']:.4f}", f"{r['test_acc']:.2f}%", f"{r['lr']:.3g}",
                f"{r['seconds']:.1f}"] for r in history]),
        Image("plots/curves.png", "loss, accuracy and learning rate per epoch"),
        *_lr_find_blocks(found, recipe, run),
        Heading("Mistakes"),
        Paragraph(f"{len(predictions.wrong)} of {len(predictions.labels)} test images are "
                  f"misclassified; the {shown} most confident mistakes:"),
        Image("plots/misclassified.png", "misclassified test images"),
        Image("plots/confusion.png", "confusion matrix"),
        Paragraph("Most confused pairs (true → predicted):"),
        Table(["true", "predicted", "count"],
              [[t, p, str(n)] for t, p, n in most_confused(matrix, names)]),
        Paragraph("Accuracy per class:"),
        Table(["class", "test images", "accuracy"],
              [[name, str(n), f"{accuracy:.2f}%"]
               for name, n, accuracy in per_class_accuracy(matrix, names)]),
        Heading("GradCAM"),
        Paragraph(f"Where layer `{for_code_span(layer)}` finds evidence for the predicted "
                  f"class, on the first {GRADCAM_IMAGES} mistakes above."),
        Image("plots/gradcam.png", f"GradCAM at {for_markdown(layer)}"),
        Heading("Reproduce"),
        Code(f"cnnlab train {run.config_path}"),
    ]
    readme = run.path / "README.md"
    run.write_text("README.md", to_markdown(blocks))
    if html:
        run.write_text("report.html", to_html(
            blocks, recipe.name, lambda name: run.file(name).read_bytes(PNG_BYTES)))
    return readme


def _lr_find_blocks(found: LRFindResult | None, recipe: Recipe, run: RunFolder) -> list:
    """The range test that chose the peak learning rate, for runs whose recipe asked for one."""
    if found is None:
        return []
    plot_lr_find(found, run.file("plots/lr-find.png"))
    peak = recipe.schedule.max_lr
    return [Heading("LR range test"),
            Paragraph(f"{found.summary_line()}. One Cycle's peak: "
                      f"{peak:.3g}." if isinstance(peak, float) else f"{found.summary_line()}."),
            Image("plots/lr-find.png", "smoothed loss against learning rate")]


def _int8_line(int8: dict) -> str:
    """The int8 export's figure beside the fp32 model's on the same images."""
    return (f"int8 (`cnnlab export --int8`, ONNX Runtime): **{int8['test_acc_int8']:.2f}%** "
            f"on the {int8['test_images']:,} test images, against {int8['test_acc_fp32']:.2f}% "
            f"for the fp32 model on the same images "
            f"({int8['test_acc_int8'] - int8['test_acc_fp32']:+.2f}); "
            f"{int8['flash_bytes']:,} bytes of weights and quantization parameters.")


def _tflite_line(tflite: dict) -> str:
    """What the microcontroller runtime measured: its accuracy and the arena it allocated,
    beside cnnlab's estimate of the activations' share."""
    return (f"TFLite Micro (`cnnlab export --tflite`, `model.int8.tflite`, "
            f"{tflite['tflite_bytes']:,} bytes): **{tflite['test_acc_tflm']:.2f}%** on the "
            f"{tflite['test_images']:,} test images; its arena holds "
            f"{tflite['arena_bytes']:,} bytes of activations (cnnlab's estimate: "
            f"{tflite['ram_estimate_bytes']:,}) and {tflite['arena_total_bytes']:,} in all.")


def _data_line(recipe: Recipe, data: Dataset) -> str:
    """What the run trained on: the dataset, its size and shape, and its classes by name."""
    where = f" from `{for_code_span(recipe.data.path)}`" if recipe.data.path else ""
    names = ", ".join(map(for_markdown, data.classes[:20])) + (", ..." if len(data.classes) > 20
                                                               else "")
    shape = "x".join(map(str, data.input_shape))
    return (f"Data: `{for_code_span(data.name)}`{where}, {len(data.train_labels):,} training and "
            f"{len(data.test_labels):,} test images of {shape}, {len(data.classes)} classes: "
            f"{names}.")


def _trained_on_line(history: list[dict]) -> str:
    """The hardware, precision and torch behind the figures; by epochs if a resume moved them."""
    spans = trained_on_spans(history)
    if len(spans) == 1:
        return f"Trained on: {spans[0][2]}."
    parts = [f"epoch {first} on {where}" if first == last else
             f"epochs {first}-{last} on {where}" for first, last, where in spans]
    return f"Trained on: {'; '.join(parts)}."


def _without_tta(recipe: Recipe, row: dict) -> str:
    """The plain figure beside one measured with test-time augmentation."""
    if "test_acc_no_tta" not in row:
        return ""
    return f"; {recipe.train.tta} test-time augmentation, {row['test_acc_no_tta']:.2f}% without"


def _plot_gradcam(model: nn.Module, data: Dataset, predictions: Predictions, layer: str,
                  path: FolderFile) -> None:
    chosen = predictions.wrong[:GRADCAM_IMAGES]
    if not len(chosen):  # a perfect model: show the first test images instead
        chosen = torch.arange(min(GRADCAM_IMAGES, len(predictions.labels)))
    device = next(model.parameters()).device
    loader = DeviceLoader(predictions.images[chosen], predictions.labels[chosen], len(chosen),
                          mean=data.mean, std=data.std, device=device)
    x, _ = next(iter(loader))
    guesses = predictions.predicted[chosen]
    heatmaps = gradcam(model, layer, x, guesses.to(device)).cpu()
    names = predictions.classes
    titles = [f"true {names[t]} / pred {names[p]}"
              for t, p in zip(predictions.labels[chosen].tolist(), guesses.tolist(), strict=True)]
    plot_gradcam(predictions.images[chosen], heatmaps, titles, layer, path)
