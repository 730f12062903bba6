"""GradCAM (Selvaraju et al.): where in the image a layer's evidence for a class lies.

Hooks on the chosen layer capture its activations A and the gradient of the class score
with respect to them; the map is ReLU(sum_c mean_hw(dScore/dA_c) * A_c), upsampled to the
input. Works for any nn.Module: the layer is named by its qualified module name.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from cnnlab.errors import ModelError
from cnnlab.inspection.graph import ModelGraph
from cnnlab.report.mistakes import show_image
from cnnlab.report.png import save_png


def default_layer(graph: ModelGraph) -> str:
    """The last convolution whose output map is at least 4x4."""
    convs = [n for n in graph.nodes if isinstance(n.module, nn.Conv2d) and len(n.shape) == 3
             and min(n.shape[-2:]) >= 4]
    if not convs:
        raise ModelError("the model has no convolution with a map of 4x4 or more for GradCAM; "
                         "name a layer with --layer")
    return convs[-1].target


def gradcam(model: nn.Module, layer: str, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Heatmaps in [0, 1], shape [N, H, W] of the input, for class `classes[i]` of image i."""
    modules = dict(model.named_modules())
    if layer not in modules:
        raise ModelError(f"no layer {layer!r} in the model; see the names in `cnnlab rf`")
    captured = {}

    def keep(_module, _inputs, output):
        captured["activation"] = output
        output.register_hook(lambda grad: captured.__setitem__("gradient", grad))

    handle = modules[layer].register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)  # so the hook fires even with frozen weights
            scores = model(x)
            scores.gather(1, classes.view(-1, 1)).sum().backward()
    finally:
        handle.remove()
        model.train(was_training)
    activation, gradient = captured["activation"].detach(), captured["gradient"]
    weights = gradient.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(1).values.clamp_min(1e-12).view(-1, 1, 1)
    return cam / peak


def plot_gradcam(images: torch.Tensor, heatmaps: torch.Tensor, titles: list[str], layer: str,
                 path: Path, columns: int = 5) -> None:
    """Each image with its heatmap laid over it."""
    rows = max(1, -(-len(images) // columns))
    figure = Figure(figsize=(2.4 * columns, 2.7 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for axes, image, heat, title in zip(grid.flat, images, heatmaps, titles, strict=False):
        show_image(axes, image)
        axes.imshow(heat.numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1,
                    extent=(-0.5, image.shape[-1] - 0.5, image.shape[-2] - 0.5, -0.5))
        axes.set_title(title, fontsize=10)
    for axes in list(grid.flat)[len(images):]:
        axes.axis("off")
    figure.suptitle(f"GradCAM at {layer} for the predicted class", fontsize=12)
    save_png(figure, path)
