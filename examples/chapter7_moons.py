"""Chapter 7's moon example (Deep Learning for Molecules and Materials), run on nfkit.

The code below follows the chapter line by line. What changed: the imports (``tfd``/``tfb`` are
nfkit's modules), TFP's deprecated ``AffineLinearOperator`` became the ``Shift(...)(Scale...)``
composition its own warning recommends, the Keras model/compile/fit cell became one
``nfkit.fit`` call, and ``plt.show()`` saves each figure (``show("name")``) into ``--out``.

Run: ``python examples/chapter7_moons.py --out out/chapter7`` (``make demo`` does this).
"""

import argparse
import os
import time

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import sklearn.datasets as datasets
import torch

import nfkit
import nfkit.bijectors as tfb
import nfkit.distributions as tfd
from nfkit.data import moons_entropy
from nfkit.plot import CHAPTER_COLORS, chapter_style

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="out/chapter7", help="folder for the figures")
parser.add_argument("--epochs", type=int, default=50, help="training epochs (chapter: 50)")
parser.add_argument("--seed", type=int, default=None, help="seed for data and weights")
args = parser.parse_args()
os.makedirs(args.out, exist_ok=True)
if args.seed is not None:
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
figures = []


def show(name):
    path = os.path.join(args.out, f"{len(figures) + 1}_{name}.png")
    plt.savefig(path, dpi=100, bbox_inches="tight")
    plt.close("all")
    figures.append(path)


style = chapter_style()
style.__enter__()
mpl.rcParams["axes.prop_cycle"] = mpl.cycler(color=CHAPTER_COLORS)

# 7.6.1 Generating Data
moon_n = 10000
ndim = 2
data, _ = datasets.make_moons(moon_n, noise=0.05)

plt.plot(data[:, 0], data[:, 1], ".", alpha=0.8)
show("data")

# 7.6.2 Z Distribution
zdist = tfd.MultivariateNormalDiag(loc=[0.0] * ndim)
print(zdist)

zsamples = zdist.sample(moon_n)
plt.plot(zsamples[:, 0], zsamples[:, 1], ".", alpha=0.8)
plt.xlim(-4, 4)
plt.ylim(-4, 4)
plt.gca().set_aspect("equal")
show("base_samples")

# x = z * (1, 0.5) + (0.5, 0.25); TFP's AffineLinearOperator is deprecated in favour of this.
b = tfb.Shift([0.5, 0.25])(tfb.ScaleMatvecDiag([1, 0.5]))

td = tfd.TransformedDistribution(zdist, bijector=b)
print(td)

zsamples = td.sample(moon_n)
plt.plot(zsamples[:, 0], zsamples[:, 1], ".", alpha=0.8)
plt.xlim(-4, 4)
plt.ylim(-4, 4)
plt.gca().set_aspect("equal")
show("affine_samples")

# make points for grid
zpoints = np.linspace(-4, 4, 150)
(
    z1,
    z2,
) = np.meshgrid(zpoints, zpoints)
zgrid = np.concatenate((z1.reshape(-1, 1), z2.reshape(-1, 1)), axis=1)
# compute P(x)
p = np.exp(td.log_prob(zgrid))
fig = plt.figure()
# plot and set axes limits
plt.imshow(p.reshape(z1.shape), aspect="equal", extent=[-4, 4, -4, 4])
show("affine_density")

# 7.6.3 The Normalizing Flow
num_layers = 3
my_bijects = []
# loop over desired bijectors and put into list
for i in range(num_layers):  # noqa: B007 (the chapter's loop)
    # Syntax to make a MAF
    anet = tfb.AutoregressiveNetwork(params=ndim, hidden_units=[128, 128], activation="relu")
    ab = tfb.MaskedAutoregressiveFlow(anet)
    # Add bijector to list
    my_bijects.append(ab)
    # Now permuate (!important!)
    permute = tfb.Permute([1, 0])
    my_bijects.append(permute)
# put all bijectors into one "chain bijector"
# that looks like one
big_bijector = tfb.Chain(my_bijects)
# make transformed dist
td = tfd.TransformedDistribution(zdist, bijector=big_bijector)

zpoints = np.linspace(-4, 4, 150)
(
    z1,
    z2,
) = np.meshgrid(zpoints, zpoints)
zgrid = np.concatenate((z1.reshape(-1, 1), z2.reshape(-1, 1)), axis=1)
p = np.exp(td.log_prob(zgrid))
fig = plt.figure()
plt.imshow(p.reshape(z1.shape), aspect="equal", extent=[-4, 4, -4, 4])
show("untrained_density")

# 7.6.4 Training: the Keras Input/Model/compile/fit cells become one call.
start = time.perf_counter()
result = nfkit.fit(td, data, epochs=args.epochs, batch_size=32, lr=1e-2, seed=args.seed)
seconds = time.perf_counter() - start
plt.plot(result.history["loss"])
show("loss")

zpoints = np.linspace(-2.5, 2.5, 200)
(
    z1,
    z2,
) = np.meshgrid(zpoints, zpoints)
zgrid = np.concatenate((z1.reshape(-1, 1), z2.reshape(-1, 1)), axis=1)
p = np.exp(td.log_prob(zgrid))
fig = plt.figure()
plt.imshow(p.reshape(z1.shape), aspect="equal", extent=[-2.5, 2.5, -2.5, 2.5])
show("trained_density")

zsamples = td.sample(moon_n)
plt.plot(zsamples[:, 0], zsamples[:, 1], ".", alpha=0.8)
plt.xlim(-2.5, 2.5)
plt.ylim(-2.5, 2.5)
plt.gca().set_aspect("equal")
show("trained_samples")
style.__exit__(None, None, None)

# Beyond the chapter: how good is the fit? Score 10 000 fresh points.
test, _ = datasets.make_moons(moon_n, noise=0.05)
nll = -float(td.log_prob(test).mean())
entropy, _ = moons_entropy(0.05, n=50_000)
print(f"trained {args.epochs} epochs in {seconds:.1f} s")
print(
    f"held-out NLL on {moon_n} fresh points: {nll:.3f} nats "
    f"(entropy of the data, the lowest possible: {entropy:.3f})"
)
print(f"{len(figures)} figures in {args.out}/:")
for path in figures:
    print("  " + path)
