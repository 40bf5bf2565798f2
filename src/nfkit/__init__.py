"""nfkit: normalizing flows for PyTorch, in the vocabulary of TensorFlow Probability.

>>> import nfkit, nfkit.distributions as nfd, nfkit.bijectors as nfb
>>> td = nfd.TransformedDistribution(nfd.MultivariateNormalDiag(loc=[0.0] * 2), nfb.Reverse())
>>> td.log_prob(td.sample(3)).shape
torch.Size([3])

The top-level names load on first use (PEP 562), so that ``import nfkit`` and the command's
``--help`` do not wait for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_WHERE = {
    "ais": "nfkit.annealing",
    "annealing": "nfkit.annealing",
    "bijectors": "nfkit.bijectors",
    "callbacks": "nfkit.callbacks",
    "continuous": "nfkit.continuous",
    "fit_flow_matching": "nfkit.continuous",
    "distributions": "nfkit.distributions",
    "flows": "nfkit.flows",
    "History": "nfkit.train",
    "NonFiniteLossError": "nfkit.train",
    "fit": "nfkit.train",
    "fit_energy": "nfkit.train",
    "importance": "nfkit.reweight",
    "reweight": "nfkit.reweight",
    "stochastic": "nfkit.stochastic",
    "targets": "nfkit.targets",
    "ModelFileError": "nfkit.io",
    "load": "nfkit.io",
    "save": "nfkit.io",
    "register": "nfkit._config",
}

__all__ = [
    "History",
    "ModelFileError",
    "NonFiniteLossError",
    "__version__",
    "ais",
    "annealing",
    "bijectors",
    "callbacks",
    "continuous",
    "distributions",
    "fit",
    "fit_energy",
    "fit_flow_matching",
    "flows",
    "importance",
    "load",
    "register",
    "reweight",
    "save",
    "stochastic",
    "targets",
]

if TYPE_CHECKING:
    from nfkit import (
        annealing,
        bijectors,
        callbacks,
        continuous,
        distributions,
        flows,
        reweight,
        stochastic,
        targets,
    )
    from nfkit._config import register
    from nfkit.annealing import ais
    from nfkit.continuous import fit_flow_matching
    from nfkit.io import ModelFileError, load, save
    from nfkit.reweight import importance
    from nfkit.train import History, NonFiniteLossError, fit, fit_energy


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nfkit' has no attribute {name!r}")
    module = importlib.import_module(_WHERE[name])
    value = module if _WHERE[name] == f"nfkit.{name}" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
