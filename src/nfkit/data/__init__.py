"""Data: checked conversion of user arrays, files and data sets, standardization, and toy data
sets with their exact densities.
"""

from nfkit.data.files import DATASETS, Table, read_table
from nfkit.data.images import bits_per_dim, dequantize, digits_images
from nfkit.data.mapped import open_rows
from nfkit.data.moons import moons_entropy, moons_log_prob
from nfkit.data.sequences import damped_oscillations, noise_entropy_per_step
from nfkit.data.standardize import Standardization
from nfkit.data.torus import torsion_log_prob, torsion_sample
from nfkit.data.validate import as_data_tensor

__all__ = [
    "DATASETS",
    "Standardization",
    "Table",
    "as_data_tensor",
    "bits_per_dim",
    "damped_oscillations",
    "dequantize",
    "digits_images",
    "moons_entropy",
    "moons_log_prob",
    "noise_entropy_per_step",
    "open_rows",
    "read_table",
    "torsion_log_prob",
    "torsion_sample",
]
