"""Plots return matplotlib objects and write PNGs; the chapter example runs end to end."""

import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

import nfkit
import nfkit.bijectors as nfb
import nfkit.distributions as nfd
from nfkit import plot

ROOT = Path(__file__).resolve().parents[1]


def test_plots_write_pngs(tmp_path):
    td = nfb.Shift([0.5, 0.25])(nfd.MultivariateNormalDiag(loc=[0.0] * 2))
    ax = plot.density(
        td, xlim=(-3, 3), ylim=(-2, 2), resolution=50, figsize=(4, 3), path=tmp_path / "d.png"
    )
    assert ax.get_xlim() == pytest.approx((-3, 3)) and ax.get_ylim() == pytest.approx((-2, 2))
    assert ax.figure.get_size_inches() == pytest.approx((4, 3))
    image = ax.get_images()[0].get_array()
    # origin="lower": the density's peak at y=0.25 sits in the lower-middle rows, not mirrored
    assert np.argmax(image.max(axis=1)) == pytest.approx(0.5625 * 50, abs=2)
    ax = plot.samples(td.sample(100), xlim=(-4, 4), ylim=(-4, 4), path=tmp_path / "s.png")
    assert ax.get_aspect() == 1.0 and len(ax.get_lines()) == 1
    history = nfkit.fit(
        nfb.Shift(torch.nn.Parameter(torch.zeros(2)))(nfd.MultivariateNormalDiag([0.0] * 2)),
        np.random.default_rng(0).normal(size=(64, 2)),
        epochs=3,
        verbose=0,
        validation_split=0.25,
    )
    ax = plot.loss(history, path=tmp_path / "l.png")
    kept = f"kept: epoch {history.best_epoch + 1}"  # the kept weights' epoch, marked
    assert [line.get_label() for line in ax.get_lines()] == ["loss", "val_loss", kept]
    for name in ("d.png", "s.png", "l.png"):
        assert (tmp_path / name).stat().st_size > 1000
    with plot.chapter_style():
        assert matplotlib.rcParams["axes.facecolor"] == "#EAEAF2"
    assert matplotlib.rcParams["axes.facecolor"] != "#EAEAF2"
    with pytest.raises(ValueError, match="2-D distribution"):
        plot.density(nfd.MultivariateNormalDiag(loc=[0.0] * 3))


def test_chapter_example_writes_every_figure(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "chapter7_moons.py"),
            "--out",
            str(tmp_path),
            "--epochs",
            "4",  # at the chapter's lr 1e-2, 2 epochs can still be above the Gaussian (seed 0)
            "--seed",
            "0",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=True,
    )
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == [
        "1_data.png",
        "2_base_samples.png",
        "3_affine_samples.png",
        "4_affine_density.png",
        "5_untrained_density.png",
        "6_loss.png",
        "7_trained_density.png",
        "8_trained_samples.png",
    ]
    assert (
        "<nfkit.distributions.MultivariateNormalDiag 'MultivariateNormalDiag' "
        "batch_shape=[] event_shape=[2] dtype=float32>" in result.stdout
    )
    nll = float(result.stdout.split("held-out NLL on 10000 fresh points: ")[1].split()[0])
    assert nll < 1.5  # four epochs beat the best Gaussian (about 1.9 nats) by far


def test_run_pictures_name_the_axes_and_follow_the_data_aspect(tmp_path, monkeypatch):
    from nfkit import report

    seen = []
    original = report.plot.samples

    def recording(points, **kw):
        ax = original(points, **kw)
        seen.append((ax.get_aspect(), ax.get_xlabel(), len(points), kw.get("ms")))
        return ax

    monkeypatch.setattr(report.plot, "samples", recording)
    rng = np.random.default_rng(0)
    data = np.stack([rng.normal(size=300), 1000 * rng.normal(size=300)], 1)
    flow = nfb.Scale([1.0, 1000.0])(nfd.MultivariateNormalDiag([0.0] * 2))
    written = report.write_pictures(flow, data, tmp_path, columns=["mass", "energy"])
    assert {p.name for p in written} == {"density.png", "samples.png"}
    assert seen[0][0] == "auto"  # 1 : 1000 ranges: not a sliver
    (_, _, rows, dot), (_, _, drawn, same) = seen
    assert rows == drawn == 300 and dot == same > 3  # as many samples as data, big enough
    many = rng.normal(size=(200, 9))
    wide = nfd.MultivariateNormalDiag([0.0] * 9)
    report.write_pictures(wide, many, tmp_path, columns=[f"c{i}" for i in range(9)])
    assert (tmp_path / "corner.png").is_file()
