r"""A sequence data set generated on the spot: damped oscillations from three regimes, with
noise (for FloWaveNet-style flows; no download).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["NOISE", "damped_oscillations", "noise_entropy_per_step"]

NOISE = 0.1
"""Standard deviation of the white noise added to every step."""

# (angular frequency per step, damping per step, probability) of the three regimes.
_REGIMES = ((0.25, 0.01, 0.4), (0.6, 0.05, 0.35), (1.2, 0.1, 0.25))


def damped_oscillations(n: int, length: int = 32, seed: int | None = 0) -> np.ndarray:
    r"""``n`` sequences ``(n, 1, length)`` of
    :math:`x_t = A e^{-\gamma t} \sin(\omega t + \phi) + \sigma \epsilon_t`, with
    :math:`(\omega, \gamma)` from one of three regimes (slow and light, medium, fast and
    heavily damped), amplitude :math:`A \sim U[0.5, 1.5]`, phase :math:`\phi \sim U[0, 2\pi)`
    and :math:`\sigma` = :data:`NOISE`.

    Example:
        >>> damped_oscillations(5, 16).shape
        (5, 1, 16)

    """
    rng = np.random.default_rng(seed)
    regime = rng.choice(len(_REGIMES), size=n, p=[r[2] for r in _REGIMES])
    omega = np.array([r[0] for r in _REGIMES])[regime][:, None]
    gamma = np.array([r[1] for r in _REGIMES])[regime][:, None]
    amplitude = rng.uniform(0.5, 1.5, size=(n, 1))
    phase = rng.uniform(0.0, 2 * math.pi, size=(n, 1))
    t = np.arange(length)[None, :]
    x = amplitude * np.exp(-gamma * t) * np.sin(omega * t + phase)
    x = x + NOISE * rng.standard_normal((n, length))
    return x[:, None, :]


def noise_entropy_per_step() -> float:
    r"""A lower bound on the entropy per step of :func:`damped_oscillations`: the entropy of the
    noise alone, :math:`\tfrac12 \log(2\pi e \sigma^2)` (conditioning cannot raise entropy).
    """
    return 0.5 * math.log(2 * math.pi * math.e * NOISE**2)
