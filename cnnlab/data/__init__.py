"""Data stage: read and verify dataset files, keep them as tensors, batch and augment them."""

from cnnlab.data.augment import BatchAugment
from cnnlab.data.dataset import Dataset, load_dataset
from cnnlab.data.loader import DeviceLoader

__all__ = ["BatchAugment", "Dataset", "DeviceLoader", "load_dataset"]
