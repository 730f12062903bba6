"""A model's predictions on the test split, kept with the original images for plotting."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.data import Dataset, DeviceLoader
from cnnlab.training.tta import tta_logits


@dataclass
class Predictions:
    images: torch.Tensor  # uint8 [N, C, H, W], as stored: no de-normalisation needed
    labels: torch.Tensor  # int64 [N]
    predicted: torch.Tensor  # int64 [N]
    confidence: torch.Tensor  # float [N], softmax probability of the predicted class
    classes: tuple[str, ...]

    @property
    def wrong(self) -> torch.Tensor:
        """Indices of the misclassified images, most confident mistakes first."""
        idx = (self.predicted != self.labels).nonzero().flatten()
        return idx[self.confidence[idx].argsort(descending=True)]


@torch.inference_mode()
def predict(model: nn.Module, data: Dataset, batch_size: int = 128, tta: str = "none"
            ) -> Predictions:
    """The model's answers on the test split, with the run's test-time augmentation so they
    agree with the accuracy in its history."""
    device = next(model.parameters()).device
    loader = DeviceLoader(data.test_images, data.test_labels, batch_size, mean=data.mean,
                          std=data.std, device=device)
    model.eval()
    predicted, confidence = [], []
    for x, _ in loader:
        probs = tta_logits(model, x, tta).softmax(1)
        best = probs.max(1)
        predicted.append(best.indices.cpu())
        confidence.append(best.values.float().cpu())
    return Predictions(data.test_images, data.test_labels, torch.cat(predicted),
                       torch.cat(confidence), data.classes)
