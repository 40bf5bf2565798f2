"""Training: one loop (a data source, a step, callbacks) behind ``fit``, ``fit_energy`` and
flow matching.
"""

from nfkit.train.callbacks import NonFiniteLossError
from nfkit.train.data import holdout
from nfkit.train.energy import EnergyObjective, fit_energy
from nfkit.train.fit import fit
from nfkit.train.loop import History, Loop
from nfkit.train.step import TrainStep

__all__ = [
    "EnergyObjective",
    "History",
    "Loop",
    "NonFiniteLossError",
    "TrainStep",
    "fit",
    "fit_energy",
    "holdout",
]
