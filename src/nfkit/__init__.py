"""nfkit: normalizing flows for PyTorch, in the vocabulary of TensorFlow Probability.

>>> import nfkit, nfkit.distributions as nfd, nfkit.bijectors as nfb
>>> td = nfd.TransformedDistribution(nfd.MultivariateNormalDiag(loc=[0.0] * 2), nfb.Reverse())
>>> td.log_prob(td.sample(3)).shape
torch.Size([3])
"""

from nfkit import bijectors, distributions
from nfkit.train import History, NonFiniteLossError, fit

__version__ = "0.1.0"

__all__ = ["History", "NonFiniteLossError", "__version__", "bijectors", "distributions", "fit"]
