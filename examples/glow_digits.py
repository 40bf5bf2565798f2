"""Glow on scikit-learn's 8x8 digits: test bits per dimension and a grid of samples.

The digits (integers 0..16) are dequantized with uniform noise and scaled to [0, 1); the
model (2 levels, 8 steps each, logit pre-processing) trains by maximum likelihood on a fixed
80/20 split; the test NLL is reported in bits per dimension of the discrete pixels.

Run: ``python examples/glow_digits.py --out docs/glow_digits.png`` (``make figures``).
"""

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch

import nfkit
from nfkit.data import bits_per_dim, dequantize, digits_images

LEVELS = 17  # pixel values 0..16


def tile(images, cols=8, gap=1):
    """(N, 1, 8, 8) values to one grid image with a blank gap between digits."""
    n, _, h, w = images.shape
    rows = -(-n // cols)
    grid = np.zeros((rows * (h + gap), cols * (w + gap)))
    for k in range(n):
        r, c = divmod(k, cols)
        grid[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = images[k, 0]
    return grid


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("docs/glow_digits.png"))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train, test, _, _ = digits_images()
    x_train = torch.tensor(dequantize(train, LEVELS, seed=args.seed), dtype=torch.float32)
    x_test = torch.tensor(dequantize(test, LEVELS, seed=args.seed + 1), dtype=torch.float32)
    torch.manual_seed(args.seed)
    flow = nfkit.flows.glow((1, 8, 8), levels=2, steps=args.steps, hidden_channels=64)
    with torch.no_grad():
        untrained = bits_per_dim(-float(flow.log_prob(x_test).mean()), 64, LEVELS)
    start = time.perf_counter()
    h = nfkit.fit(
        flow,
        x_train,
        epochs=args.epochs,
        batch_size=64,
        lr=1e-3,
        lr_schedule="cosine",
        validation_split=0.1,
        verbose=0,
        seed=args.seed,
    )
    seconds = time.perf_counter() - start
    with torch.no_grad():
        bpd = bits_per_dim(-float(flow.log_prob(x_test).mean()), 64, LEVELS)
        samples = flow.sample(64)
    print(
        f"Glow on digits: test {bpd:.3f} bits/dim (untrained {untrained:.3f}, uniform "
        f"{np.log2(LEVELS):.3f}), best epoch {h.best_epoch + 1}/{args.epochs}, {seconds:.0f} s"
    )
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    panels = [(test[:64] / LEVELS, "test digits"), (samples.clamp(0, 1).numpy(), "Glow samples")]
    for ax, (values, title) in zip(axes, panels, strict=True):
        ax.imshow(tile(values), cmap="gray_r", interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"Glow on 8x8 digits: {bpd:.2f} bits/dim on the test split")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
