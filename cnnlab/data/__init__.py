"""Data stage: read and verify dataset files, keep them as tensors, batch and augment them."""

from cnnlab.data.augment import BatchAugment
from cnnlab.data.dataset import Dataset, data_facts, load_dataset, load_recipe_data
from cnnlab.data.loader import DeviceLoader

__all__ = ["BatchAugment", "Dataset", "DeviceLoader", "data_facts", "load_dataset",
           "load_recipe_data"]
