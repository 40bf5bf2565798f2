r"""Images as densities: uniform dequantization of integer pixels, bits per dimension, and the
8x8 digits of scikit-learn as a fixed train/test split of images.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["bits_per_dim", "dequantize", "digits_images"]


def dequantize(values: ArrayLike, levels: int, seed: int | None = 0) -> np.ndarray:
    r"""Integer pixels :math:`v \in \{0, \dots, L-1\}` to :math:`x = (v + u) / L` in [0, 1)
    with :math:`u \sim U[0, 1)`.

    The continuous density of :math:`x` then bounds the discrete one: :math:`\log P(v) \ge
    \mathbb E_u \log p(x) - D \log L` (Theis, van den Oord, Bethge 2016,
    https://arxiv.org/abs/1511.01844), which :func:`bits_per_dim` turns into bits.

    Example:
        >>> x = dequantize([[0, 16]], levels=17)
        >>> bool(((x >= 0) & (x < 1)).all())
        True

    """
    v = np.asarray(values, dtype=np.float64)
    if v.size and (v.min() < 0 or v.max() > levels - 1):
        raise ValueError(f"pixel values must lie in 0..{levels - 1}, got {v.min()}..{v.max()}")
    return (v + np.random.default_rng(seed).uniform(size=v.shape)) / levels


def bits_per_dim(nll: float, dims: int, levels: int) -> float:
    r"""Bits per dimension of discrete data from the NLL (nats per image) of its dequantized
    version on [0, 1): :math:`(\mathrm{NLL} + D \log L) / (D \log 2)`. Uniform noise over the
    :math:`L` levels scores :math:`\log_2 L`.

    Example:
        >>> round(bits_per_dim(0.0, 64, 17), 3)  # the uniform density on [0, 1)^64
        4.087

    """
    return (nll + dims * math.log(levels)) / (dims * math.log(2.0))


def digits_images(
    test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits (ships with it: no download) as integer images ``(N, 1, 8, 8)``
    with values 0..16, split at random (fixed ``seed``): ``train, test, train_labels,
    test_labels``.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.int64)[:, None]
    order = np.random.default_rng(seed).permutation(len(images))
    cut = round(len(images) * (1 - test_fraction))
    train, test = order[:cut], order[cut:]
    return images[train], images[test], bunch.target[train], bunch.target[test]
