"""TensorBoard logging of a run, in `<run>/tb/`: per epoch the losses, accuracies and learning
rate; at the end the hyper-parameters beside the final metrics, and the confusion matrix.
An epoch callback, like any other (`cnnlab.train(..., callbacks=...)`)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from cnnlab.config import Recipe
from cnnlab.errors import ConfigError
from cnnlab.run_folder import RunFolder
from cnnlab.run_folder.confined import FolderFile, make_dirs
from cnnlab.run_folder.history import History, best_row

SCALARS = {"train_loss": "loss/train", "test_loss": "loss/test", "val_loss": "loss/val",
           "train_acc": "accuracy/train", "test_acc": "accuracy/test", "val_acc": "accuracy/val",
           "test_acc_no_tta": "accuracy/test_without_tta", "lr": "lr", "seconds": "seconds"}


class TensorBoardLog:
    def __init__(self, run: RunFolder, recipe: Recipe):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError("TensorBoard logging needs tensorboard: pip install "
                              "'cnnlab[tensorboard]'") from None
        self.recipe = recipe
        make_dirs(run.path, "tb")  # a real folder of the run's, not a link out of it
        self.writer = SummaryWriter(log_dir=str(run.path / "tb"))

    def __call__(self, row: dict[str, Any], _trainer: Any = None) -> None:
        """The epoch callback."""
        for key, tag in SCALARS.items():
            if key in row:
                self.writer.add_scalar(tag, row[key], row["epoch"])
        self.writer.flush()

    def finish(self, history: History, confusion_png: FolderFile | None = None) -> None:
        """Hyper-parameters with the final metrics, and the confusion matrix image."""
        best = best_row(history)
        params = {f"{section}.{key}": value if isinstance(value, int | float | str | bool)
                  else str(value)
                  for section, table in self.recipe.to_dict().items() if isinstance(table, dict)
                  for key, value in table.items()}
        self.writer.add_hparams(params, {"hparam/final_test_acc": history[-1]["test_acc"],
                                         "hparam/best_test_acc": best["test_acc"]},
                                run_name=".")
        if confusion_png is not None and confusion_png.is_file():
            from matplotlib.image import imread

            png = io.BytesIO(confusion_png.read_bytes(64 << 20))
            image = (imread(png, format="png")[..., :3] * 255).astype(np.uint8)
            self.writer.add_image("confusion_matrix", image, len(history), dataformats="HWC")
        self.writer.close()
