"""Training: maximum likelihood with ``fit``."""

from nfkit.train.fit import History, NonFiniteLossError, fit

__all__ = ["History", "NonFiniteLossError", "fit"]
