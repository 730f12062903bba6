"""`cnnlab app RUN_DIR`: a web page for a trained run (Gradio, an optional extra). Upload or
pick a test image and see the top-k classes, with GradCAM over it (layer and opacity chosen
on the page), and browse the test images the model gets wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from PIL import Image

from cnnlab.data import Dataset, load_recipe_data
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.inspection import trace
from cnnlab.prepare import as_the_run_sees_it
from cnnlab.report.gradcam import default_layer, gradcam
from cnnlab.report.predictions import predict
from cnnlab.ship.loaded_run import LoadedRun, load_run

EXAMPLES = 6  # test images offered as examples


def build_app(run_dir: str | Path, data_dir: str | Path | None = None,
              trust_code: bool = False, int8: bool = False) -> Any:
    """The gradio.Blocks page for the run at `run_dir` (launch it, or mount it elsewhere);
    `trust_code` as in `load_run`. With `int8`, the top-k comes from the run's int8 model
    (GradCAM, which needs gradients, from the fp32 one)."""
    try:
        import gradio as gr
    except ImportError:
        raise ConfigError("the web demo needs Gradio: pip install 'cnnlab[app]'") from None
    loaded = load_run(run_dir, trust_code)
    if int8:  # refused now, in one line, if the run has none or it is damaged
        loaded.int8_logits(loaded.normalise(torch.zeros(loaded.input_shape)))
    graph = trace(loaded.model, loaded.input_shape)
    layers = [n.target for n in graph.nodes if n.kind == "Conv2d" and len(n.shape) == 3
              and n.shape[-1] >= 2]
    data = _test_data(loaded, data_dir)
    c, h, w = loaded.input_shape

    def classify(image: np.ndarray | None, k: float, layer: str, opacity: float):
        if image is None:
            return {}, None
        pixels = _fit(image, loaded)
        result = loaded.predict(pixels, topk=int(k), int8=int8)
        scores = {name: float(p) for name, p in
                  zip(result.classes[0], result.probabilities[0].tolist(), strict=True)}
        x = loaded.normalise(pixels)
        top = result.indices[:, 0].clone()  # out of inference mode: autograd may keep it
        heat = gradcam(loaded.model, layer, x, top)[0].numpy()
        return scores, _overlay(pixels, heat, opacity)

    def mistakes(n: float):
        if data is None:
            return []
        found = predict(loaded.model, data, tta="none")
        chosen = found.wrong[: int(n)].tolist()
        return [(_display(found.images[i]),
                 f"true {found.classes[found.labels[i]]} / predicted "
                 f"{found.classes[found.predicted[i]]} ({found.confidence[i]:.0%})")
                for i in chosen]

    with gr.Blocks(title=f"cnnlab: {loaded.recipe.name}") as app:
        gr.Markdown(f"## {loaded.recipe.name}\n{len(loaded.classes)} classes, input "
                    f"{c}x{h}x{w}. Upload an image or pick a test image.")
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="image", type="numpy", elem_id="image",
                                 image_mode="L" if c == 1 else "RGB")
                k = gr.Slider(1, min(10, len(loaded.classes)), value=3, step=1, label="top k",
                              elem_id="topk")
                layer = gr.Dropdown(layers, value=default_layer(graph), label="GradCAM layer",
                                    elem_id="layer")
                opacity = gr.Slider(0.0, 1.0, value=0.5, label="GradCAM opacity",
                                    elem_id="opacity")
                run = gr.Button("Classify", elem_id="classify", variant="primary")
            with gr.Column():
                scores = gr.Label(label="prediction", elem_id="prediction")
                heatmap = gr.Image(label="GradCAM", elem_id="gradcam")
        if data is not None:
            gr.Examples([[_display(data.test_images[i])] for i in range(EXAMPLES)],
                        inputs=[image], label="test images")
            with gr.Row():
                count = gr.Slider(1, 64, value=16, step=1, label="misclassified images shown",
                                  elem_id="mistake_count")
                show = gr.Button("Show mistakes", elem_id="show_mistakes")
            gallery = gr.Gallery(label="misclassified test images", elem_id="mistakes",
                                 columns=8)
            show.click(mistakes, inputs=[count], outputs=[gallery])
        run.click(classify, inputs=[image, k, layer, opacity], outputs=[scores, heatmap])
    return app


def serve(run_dir: str | Path, port: int = 7860, host: str = "127.0.0.1",
          data_dir: str | Path | None = None, trust_code: bool = False,
          int8: bool = False) -> None:
    """Serve the page until interrupted."""
    build_app(run_dir, data_dir, trust_code, int8).launch(
        server_name=host, server_port=port, share=False, show_error=True)


def _test_data(loaded: LoadedRun, data_dir: str | Path | None) -> Dataset | None:
    """The run's test split, for examples and mistakes; the page works without it."""
    try:
        data = load_recipe_data(loaded.recipe.data, data_dir, progress=False)
    except CnnlabError:
        return None
    return as_the_run_sees_it(data, loaded.recipe)


def _fit(image: np.ndarray, loaded: LoadedRun) -> np.ndarray:
    """An uploaded image as the model's input size and channels, uint8 HW or HWC."""
    c, h, w = loaded.input_shape
    picture = Image.fromarray(np.asarray(image).astype(np.uint8))
    picture = picture.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
    return np.asarray(picture)


def _display(image: torch.Tensor) -> np.ndarray:
    """A stored uint8 [C, H, W] image as HW (grey) or HWC for the page."""
    array = image.numpy()
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def _overlay(pixels: np.ndarray, heat: np.ndarray, opacity: float) -> np.ndarray:
    """The heat map in a colour map over the image, at `opacity`."""
    base = pixels.astype(np.float32) / 255
    base = np.repeat(base[..., None], 3, axis=2) if base.ndim == 2 else base
    colour = colormaps["jet"](heat)[..., :3]
    blended = ((1 - opacity) * base + opacity * colour).clip(0, 1)
    return (blended * 255).astype(np.uint8)
