"""A run's folder: the files a run writes, read back checked, trusted before its code runs."""

from cnnlab.run_folder.folder import RunFolder, ShippedWeights

__all__ = ["RunFolder", "ShippedWeights"]
