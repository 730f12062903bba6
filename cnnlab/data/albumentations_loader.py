"""The per-sample path: Albumentations 2.x transforms named in the recipe, applied to one
image at a time in DataLoader workers, as the seed notebooks did.

Arguments are checked against each transform's signature before it is built: Albumentations
only warns about an argument it does not know (a 1.x name like `max_holes`) and then ignores
it, which would silently train with a different augmentation than the recipe says.
"""

from __future__ import annotations

import inspect
import math
import pickle
import warnings
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from cnnlab.data.loader import normaliser
from cnnlab.errors import ConfigError


def build_pipeline(transforms: list[dict[str, Any]], seed: int = 0) -> Any:
    """An `A.Compose` from `[{name = "HorizontalFlip", p = 0.5}, ...]`, strictly validated."""
    try:
        import albumentations as A
    except ImportError:
        raise ConfigError("augment.engine = \"albumentations\" needs the albumentations package: "
                          "pip install 'cnnlab[albumentations]'") from None
    built = []
    for i, spec in enumerate(transforms):
        args = dict(spec)
        name = args.pop("name", None)
        where = f"augment.transforms[{i}]"
        cls = getattr(A, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, A.BasicTransform)):
            raise ConfigError(f"{where}: {name!r} is not an Albumentations {A.__version__} "
                              "transform")
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
        unknown = sorted(set(args) - accepted)
        if unknown:
            raise ConfigError(f"{where}: {name} has no argument {unknown[0]!r} in Albumentations "
                              f"{A.__version__} (it takes: {', '.join(sorted(accepted))})")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                built.append(cls(**{k: tuple(v) if isinstance(v, list) else v
                                    for k, v in args.items()}))
            except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
                first = str(exc).strip().splitlines()
                raise ConfigError(f"{where}: {name}: {' '.join(first[:3])}") from None
        for warning in caught:
            if "not valid" in str(warning.message):
                raise ConfigError(f"{where}: {name}: {warning.message}")
    return A.Compose(built, seed=seed)


def tried_on(pipeline: Any, image: torch.Tensor) -> None:
    """Refuse a pipeline that fails on a training image (a transform that constructs but needs
    what a recipe cannot give, like Lambda's functions or TextImage's metadata) or that changes
    its shape or type, before training starts rather than in a worker mid-epoch. A copy runs,
    so the pipeline's random sequence is as it would be without the trial, with every transform
    made certain to apply (p = 1), and it is pickled as DataLoader workers receive it."""
    sample = image.permute(1, 2, 0).numpy()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial = pickle.loads(pickle.dumps(pipeline))
            for transform in trial.transforms:
                transform.p = 1.0
            out = trial(image=sample)["image"]
    except Exception as exc:  # any transform's own error: the recipe's fault, named
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ConfigError(f"augment.transforms fail on a training image "
                          f"({type(exc).__name__}: {detail}): use transforms that take an "
                          "image alone") from None
    if not isinstance(out, np.ndarray) or out.shape != sample.shape or out.dtype != sample.dtype:
        raise ConfigError(f"augment.transforms turn a {'x'.join(map(str, sample.shape))} "
                          f"{sample.dtype} image into {getattr(out, 'shape', type(out))}: every "
                          "image must keep its size and type (crop back after padding)")


class _Images(TorchDataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, pipeline: Any):
        self.images = images.permute(0, 2, 3, 1).numpy()  # HWC uint8, what Albumentations takes
        self.labels = labels
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.pipeline(image=self.images[i])["image"]
        return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1), self.labels[i]


def _seed_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    info.dataset.pipeline.set_random_seed(info.seed % 2**32)


class AlbumentationsLoader:
    """Batches of per-sample-augmented images, normalised on the device like DeviceLoader."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *,
                 mean: tuple[float, ...], std: tuple[float, ...], transforms: list[dict],
                 workers: int = 2, device: torch.device | str = "cpu",
                 channels_last: bool = False, seed: int = 0):
        self.pipeline = build_pipeline(transforms, seed)
        tried_on(self.pipeline, images[0])
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.generator = None  # the DataLoader shuffles with its own, seeded generator
        self.labels = labels.to(self.device)
        self.channels_last = channels_last
        self.loader = DataLoader(
            _Images(images, labels, self.pipeline), batch_size=batch_size, shuffle=True,
            num_workers=workers, worker_init_fn=_seed_worker if workers else None,
            generator=torch.Generator().manual_seed(seed), persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda",
        )
        self.scale, self.shift = normaliser(mean, std, self.device)

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def __iter__(self):
        for x, y in self.loader:
            x = torch.addcmul(self.shift, x.to(self.device, non_blocking=True).float(), self.scale)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y.to(self.device, non_blocking=True)
