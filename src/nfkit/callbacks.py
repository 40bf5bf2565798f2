"""Training callbacks in Keras' names (see :mod:`nfkit.train.callbacks` for the hooks).

Pass them to :func:`nfkit.fit` (and ``fit_energy``, ``fit_flow_matching``) as
``callbacks=[...]``; subclass :class:`Callback` to write your own.
"""

from nfkit.train.callbacks import (
    Callback,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    NonFiniteLossError,
    ProgressBar,
    TerminateOnNaN,
)
from nfkit.train.loop import History

__all__ = [
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "History",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "NonFiniteLossError",
    "ProgressBar",
    "TerminateOnNaN",
]
