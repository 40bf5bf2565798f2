"""Training: maximum likelihood with ``fit``, sampling an energy with ``fit_energy``."""

from nfkit.train.energy import EnergyObjective, fit_energy
from nfkit.train.fit import History, NonFiniteLossError, fit

__all__ = ["EnergyObjective", "History", "NonFiniteLossError", "fit", "fit_energy"]
