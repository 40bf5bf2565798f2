"""Data: checked conversion of user arrays, and toy data sets with their exact densities."""

from nfkit.data.moons import moons_entropy, moons_log_prob
from nfkit.data.validate import as_data_tensor

__all__ = ["as_data_tensor", "moons_entropy", "moons_log_prob"]
