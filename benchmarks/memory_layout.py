"""channels_last vs contiguous for a training step on one fixed batch, and the device loader's
throughput with the `mnist-99.4` augmentation: the figures behind `train.channels_last`.

    CNNLAB_DATA=../shared/data .venv/bin/python benchmarks/memory_layout.py
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

import cnnlab
from cnnlab.data import BatchAugment, DeviceLoader
from cnnlab.models import build_model, default_input_shape


def step_rate(name: str, channels_last: bool, batch: int = 128, steps: int = 10,
              repeats: int = 5) -> float:
    torch.manual_seed(0)
    model = build_model(name)
    x = torch.randn(batch, *default_input_shape(name))
    y = torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        rates.append(steps * batch / (time.perf_counter() - started))
    return statistics.median(rates)


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, steps in (("mnist_fast", 20), ("mnist_s5", 20), ("cifar_s9", 5)):
        contiguous = step_rate(name, False, steps=steps)
        channels_last = step_rate(name, True, steps=steps)
        print(f"{name:<11} contiguous {contiguous:7.0f} img/s  channels_last {channels_last:7.0f}"
              f" img/s  ratio {channels_last / contiguous:.2f}")
    data = cnnlab.load_dataset("mnist")
    augment = BatchAugment(cnnlab.load_recipe("mnist-99.4").augment)
    loader = DeviceLoader(data.train_images[:12800], data.train_labels[:12800], 128,
                          mean=data.mean, std=data.std, shuffle=True, augment=augment,
                          generator=torch.Generator().manual_seed(0))
    started = time.perf_counter()
    for _ in loader:
        pass
    print(f"device loader with the mnist-99.4 augmentation: "
          f"{12800 / (time.perf_counter() - started):.0f} img/s")


if __name__ == "__main__":
    main()
