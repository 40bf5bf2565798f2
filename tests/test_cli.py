"""The ``nfkit`` command on small files: in this process through typer's test runner (each
subprocess pays 4-7 s of imports), and for real in subprocesses where it matters (a killed
run, the installed entry point)."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

NFKIT = str(Path(sys.executable).with_name("nfkit"))
SMALL = ["--layers", "1", "--hidden", "16", "--epochs", "3", "--quiet"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def nfkit(*args, cwd, check=True, real=False):
    """Run ``nfkit ARGS`` in ``cwd``: in this process, or as a subprocess with ``real``."""
    if real:
        done = subprocess.run(
            [NFKIT, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300
        )
        result = Result(done.returncode, done.stdout, done.stderr)
    else:
        from typer.testing import CliRunner

        from nfkit.cli import app

        before = os.getcwd()
        os.chdir(cwd)
        try:
            out = CliRunner().invoke(app, [str(a) for a in args])
        finally:
            os.chdir(before)
        if out.exception is not None and not isinstance(out.exception, SystemExit):
            raise out.exception
        result = Result(out.exit_code, out.stdout, out.stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"nfkit {args} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def table(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0, 0, 1.0]])
    path = tmp_path / "data.csv"
    x += np.array([10.0, -5.0, 0.0])
    np.savetxt(path, x, delimiter=",", header="a,b,c", comments="")
    return path


def test_train_sample_log_prob_info_plot(tmp_path, table):
    nfkit("train", table, "--columns", "a,b", *SMALL, "-o", "run", cwd=tmp_path)
    run = tmp_path / "run"
    for name in ("model.safetensors", "metrics.json", "loss.png", "density.png", "samples.png"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["loss"]) == len(metrics["val_loss"]) == 3
    assert metrics["seconds"] > 0
    report = (run / "report.html").read_text()
    assert "data:image/png;base64," in report and "http" not in report.split("<body>")[1]

    nfkit("sample", run, "-n", "50", "-o", "s.csv", "--seed", "1", cwd=tmp_path)
    samples = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    assert samples.shape == (50, 2)
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == "a,b"
    assert abs(samples[:, 0].mean() - 10.0) < 1.0  # in data units, not standardized ones

    # log-prob picks the trained columns (a, b) out of the three in the file.
    nfkit("log-prob", run, table, "-o", "lp.csv", cwd=tmp_path)
    lp = np.loadtxt(tmp_path / "lp.csv", delimiter=",", skiprows=1)
    assert lp.shape == (400,) and np.isfinite(lp).all()
    assert -lp.mean() == pytest.approx(metrics["train_nll"], abs=0.3)

    info = nfkit("info", run, cwd=tmp_path).stdout
    assert "columns: a, b" in info and "validation NLL" in info and "parameters:" in info
    nfkit("plot", run, "-o", "pics", cwd=tmp_path)
    assert (tmp_path / "pics" / "density.png").is_file()


def test_a_conditional_flow_from_context_columns(tmp_path):
    rng = np.random.default_rng(0)
    t = rng.uniform(-2, 2, size=(1000, 1))
    x = np.hstack([t, -t]) + 0.3 * rng.normal(size=(1000, 2))
    label = rng.integers(0, 3, size=(1000, 1))  # a column neither modelled nor context
    np.savetxt(tmp_path / "d.csv", np.hstack([x, t, label]), delimiter=",", header="a,b,t,k",
               comments="")  # fmt: skip
    nfkit("train", "d.csv", "--columns", "a,b", "--context", "t", "--epochs", "60",
          "--batch-size", "64", "--layers", "2", "--hidden", "32", "-o", "run", "--quiet",
          cwd=tmp_path)  # fmt: skip
    assert (tmp_path / "run" / "samples.png").is_file()
    assert "context: t" in nfkit("info", "run", cwd=tmp_path).stdout

    # p(a, b | t = 1.5) is N((1.5, -1.5), 0.3^2 I): the samples follow the given context.
    nfkit("sample", "run", "-n", "400", "--context", "1.5", "-o", "s.csv", cwd=tmp_path)
    s = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    assert s.shape == (400, 3) and (s[:, 0] == 1.5).all()
    np.testing.assert_allclose(s[:, 1:].mean(0), [1.5, -1.5], atol=0.25)
    # A context file: n samples per row, after its context values.
    np.savetxt(tmp_path / "c.csv", [[-1.0], [0.0]], header="t", comments="")
    nfkit("sample", "run", "-n", "5", "--context", "c.csv", "-o", "s2.csv", cwd=tmp_path)
    assert np.loadtxt(tmp_path / "s2.csv", delimiter=",", skiprows=1).shape == (10, 3)

    # log-prob reads t from the data file; the true contexts explain the rows far better than
    # one context for all of them.
    nfkit("log-prob", "run", "d.csv", "-o", "lp.csv", cwd=tmp_path)
    nfkit("log-prob", "run", "d.csv", "--context", "0", "-o", "lp0.csv", cwd=tmp_path)
    lp = np.loadtxt(tmp_path / "lp.csv", skiprows=1)
    lp0 = np.loadtxt(tmp_path / "lp0.csv", skiprows=1)
    assert lp.mean() > -0.6 and lp.mean() > lp0.mean() + 2.0  # the best: -0.43
    nfkit("plot", "run", "-o", "pics", cwd=tmp_path)

    for args, message in [
        (("sample", "run"), "conditional on t: pass --context"),
        (("sample", "run", "--context", "1,2"), "--context needs 1 values (t), got 2"),
        (("sample", "run", "--context", "x"), "neither a file nor numbers"),
    ]:
        out = nfkit(*args, cwd=tmp_path, check=False)
        assert out.returncode != 0 and message in out.stderr + out.stdout, out.stderr
    out = nfkit("train", "d.csv", "--columns", "a,t", "--context", "t", "-o", "r2",
                cwd=tmp_path, check=False)  # fmt: skip
    assert "both modelled and context" in out.stderr + out.stdout


def test_more_dimensions_get_a_corner_plot_and_npy_io(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(300, 4)))
    nfkit("train", "x.npy", *SMALL, "--flow", "realnvp", "-o", "run", cwd=tmp_path)
    assert (tmp_path / "run" / "corner.png").is_file()
    nfkit("sample", "run", "-n", "7", "-o", "s.npy", cwd=tmp_path)
    assert np.load(tmp_path / "s.npy").shape == (7, 4)


def test_continuous_flow_by_flow_matching_then_resume(tmp_path, table):
    args = [
        "train",
        table,
        "--flow",
        "cnf",
        "--hidden",
        "16",
        "--lr-schedule",
        "constant",
        "--quiet",
    ]
    nfkit(*args, "--epochs", "4", "-o", "run", cwd=tmp_path)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["objective"] == "flow-matching"
    assert len(metrics["flow_matching_loss"]) == len(metrics["val_loss"]) == 4
    nfkit("log-prob", "run", table, "-o", "lp.csv", cwd=tmp_path)
    lp = np.loadtxt(tmp_path / "lp.csv", delimiter=",", skiprows=1)
    assert -lp.mean() == pytest.approx(metrics["train_nll"], abs=0.3)
    assert "objective flow-matching" in nfkit("info", "run", cwd=tmp_path).stdout
    # Stopped after its checkpoint of epoch 2 (as if killed), then resumed: same model.
    nfkit(*args, "--epochs", "2", "-o", "cut", cwd=tmp_path)
    run_file = tmp_path / "cut" / "run.json"
    run_file.write_text(run_file.read_text().replace('"epochs": 2', '"epochs": 4'))
    nfkit("train", "--resume", "cut", "--quiet", cwd=tmp_path)
    resumed = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert resumed["val_loss"] == pytest.approx(metrics["val_loss"])

    result = nfkit(
        "train", table, *SMALL, "--objective", "flow-matching", "-o", "x", cwd=tmp_path, check=False
    )
    assert result.returncode == 2 and "trains continuous flows only" in result.stderr


def test_glow_on_the_digits_images(tmp_path, table):
    nfkit("train", "digits", "--flow", "glow", *SMALL, "--hidden", "8", "-o", "run", cwd=tmp_path)
    assert (tmp_path / "run" / "samples.png").is_file()
    nfkit("sample", "run", "-n", "5", "-o", "s.npy", cwd=tmp_path)
    samples = np.load(tmp_path / "s.npy")
    assert samples.shape == (5, 64) and samples.min() > -1.0 and samples.max() < 18.0
    result = nfkit("train", table, "--flow", "glow", *SMALL, "-o", "x", cwd=tmp_path, check=False)
    assert result.returncode == 2 and "--flow glow models images" in result.stderr


def test_resume_after_a_kill_gives_the_uninterrupted_result(tmp_path, table):
    args = ["train", table, "--layers", "1", "--hidden", "16", "--epochs", "6"]
    args += ["--batch-size", "16", "--quiet"]
    nfkit(*args, "-o", "whole", cwd=tmp_path, real=True)
    proc = subprocess.Popen([NFKIT, *map(str, args), "-o", "cut"], cwd=tmp_path)
    checkpoint = tmp_path / "cut" / "checkpoint.safetensors"
    deadline = time.time() + 120
    while not checkpoint.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "cut" / "model.safetensors").exists(), "killed too late to test"
    nfkit("train", "--resume", "cut", cwd=tmp_path, real=True)
    whole = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    cut = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert cut["loss"] == whole["loss"] and cut["val_loss"] == whole["val_loss"]
    for run in ("whole", "cut"):
        nfkit("log-prob", run, table, "-o", f"{run}.csv", cwd=tmp_path)
    assert (tmp_path / "whole.csv").read_text() == (tmp_path / "cut.csv").read_text()


def _write(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    return name


BAD_INPUTS = {
    "missing file": (lambda p: "nope.csv", "no such file: nope.csv"),
    "empty file": (lambda p: _write(p, "e.csv", ""), "e.csv is empty"),
    "header only": (lambda p: _write(p, "h.csv", "a,b\n"), "has a header row (a, b) but no data"),
    "non-numeric cell": (
        lambda p: _write(p, "t.csv", "a,b\n1,2\n3,abc\n"),
        "line 3, column 'b': 'abc' is not a number",
    ),
    "NaN/inf cells": (
        lambda p: _write(p, "n.csv", "a,b\n1,2\n3,nan\n4,5\ninf,1\n"),
        "NaN, inf or empty cells in 2 rows; the first is data row 2 (column 'b', value nan)",
    ),
    "one row": (lambda p: _write(p, "o.csv", "a,b\n1,2\n"), "has 1 row; need at least 2"),
    "too few rows to hold out": (
        lambda p: _write(p, "f.csv", "a,b\n1,2\n2,1\n0,0\n"),
        "--validation-split 0.1 of 3 rows holds out 0",
    ),
    "constant column": (
        lambda p: _write(p, "c.csv", "a,b\n1,2\n2,2\n3,2\n"),
        "column 'b' never changes (zero variance)",
    ),
    "log scale of a non-positive column": (
        lambda p: [_write(p, "l.csv", "a,b\n1,2\n2,0\n3,5\n"), "--log-columns", "b"],
        "column 'b' has values <= 0 (the smallest is 0): its log scale is undefined",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_training_input_is_one_clear_line(tmp_path, case):
    make, message = BAD_INPUTS[case]
    given = make(tmp_path)
    given = [given] if isinstance(given, str) else given
    result = nfkit("train", *given, *SMALL, "-o", "run", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()  # nothing half-made


def test_bad_model_and_run_folder_inputs(tmp_path, table):
    nfkit("train", table, *SMALL, "-o", "run", cwd=tmp_path)
    wrong = _write(tmp_path, "wrong.csv", "a,b\n1,2\n3,4\n")
    result = nfkit("log-prob", "run", wrong, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "the model expects 3 columns (a, b, c), but wrong.csv has 2 (a, b)" in result.stderr

    result = nfkit("info", table, cwd=tmp_path, check=False)
    assert result.returncode == 2 and "is not an nfkit model file" in result.stderr

    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    result = nfkit("train", table, *SMALL, "-o", "run", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "run already exists and is not empty; pass --force" in result.stderr
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before
    nfkit("train", table, *SMALL, "-o", "run", "--force", "--seed", "1", cwd=tmp_path)
    assert (tmp_path / "run" / "model.safetensors").read_bytes() != before


def test_every_command_has_help(tmp_path):
    for command in ("train", "sample", "log-prob", "info", "plot"):
        out = nfkit(command, "--help", cwd=tmp_path, real=command == "train").stdout
        assert "Usage" in out


def test_the_command_shares_the_defaults_and_says_what_it_did(tmp_path):
    rng = np.random.default_rng(0)
    flag, value = rng.integers(0, 2, 300), rng.normal(size=300)
    path = tmp_path / "t.csv"
    path.write_text(
        "flag,value\n" + "\n".join(f"{f},{v:.4f}" for f, v in zip(flag, value, strict=True))
    )
    out = tmp_path / "run"
    result = nfkit("train", path, "--flow", "nsf", "--epochs", "3", "-o", out, cwd=tmp_path)
    assert "note: few-valued columns (flag) were dequantized" in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dequantized_columns"] == ["flag"] and metrics["start_components"] >= 1
    import torch

    from nfkit.io import load

    model = load(out / "model.safetensors")
    assert torch.isfinite(model.log_prob(torch.tensor([[0.0, 0.1], [1.0, -0.3]]))).all()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--epochs", "0", "--epochs must be at least 1, got 0"),
        ("--batch-size", "0", "--batch-size must be at least 1, got 0"),
        ("--lr", "0", "--lr must be positive, got 0.0"),
        ("--start-components", "-1", "--start-components must be at least 0, got -1"),
    ],
)
def test_impossible_settings_are_refused_before_the_run_folder(
    tmp_path, table, option, value, message
):
    result = nfkit("train", table, option, value, "-o", "run", cwd=tmp_path, check=False)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "run").exists()


def test_info_and_load_take_a_python_model_file_and_a_run_folder(tmp_path, table):
    import nfkit as nf

    path = nf.save(nf.flows.maf(2, layers=1, hidden=[4]), tmp_path / "mine.safetensors")
    out = nfkit("info", path, cwd=tmp_path).stdout
    assert "saved from Python" in out and "parameters" in out
    nfkit("train", table, *SMALL, "-o", "run", cwd=tmp_path)
    assert nf.load(tmp_path / "run").event_shape == (3,)
    for name, extra in (("warm", []), ("cold", ["--temperature", "0.3"])):
        nfkit("sample", "run", "-n", "2000", "--seed", "0", *extra, "-o", f"{name}.csv",
              cwd=tmp_path)  # fmt: skip
    warm, cold = (np.loadtxt(tmp_path / f"{n}.csv", delimiter=",", skiprows=1)
                  for n in ("warm", "cold"))  # fmt: skip
    assert (cold.std(0) < 0.6 * warm.std(0)).all()
    nfkit("plot", "run", "--columns", "c,a", "-o", "pics", cwd=tmp_path)
    assert (tmp_path / "pics" / "corner.png").is_file()
    bad = nfkit("plot", "run", "--columns", "zz", "-o", "pics", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "no column 'zz' in the model; it has a, b, c" in bad.stderr


def test_a_semicolon_export_with_a_label_trains_and_says_how_it_was_read(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    rows = [f"{i};{a:.3f};{b:.3f};{'ab'[i % 2]}".replace(".", ",") for i, (a, b) in enumerate(x)]
    path = tmp_path / "export.csv"
    path.write_bytes(("\ufeff;a;b;label\n" + "\n".join(rows)).encode("utf-8"))
    result = nfkit("train", path, *SMALL[:-1], "-o", "run", cwd=tmp_path)
    for part in ("semicolon-separated", "unnamed first column", "text column 'label'"):
        assert part in result.stdout, part
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["features"] == 2
    bad = nfkit("train", path, "--delimiter", ",", "-o", "r2", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "looks semicolon-separated" in bad.stderr


def test_a_diverging_run_ends_in_one_line_and_force_recovers(tmp_path, table):
    args = ["--flow", "maf", "--lr", "50", "--epochs", "3", "-o", "run"]  # NSF's bounded splines
    result = nfkit("train", table, *args, cwd=tmp_path, check=False)  # do not diverge there
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: training diverged: loss is" in result.stderr and "--force" in result.stderr
    nfkit("train", table, *SMALL, "-o", "run", "--force", cwd=tmp_path)
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_positive_columns_on_the_log_scale_in_data_units(tmp_path):
    rng = np.random.default_rng(0)
    log_conc = rng.normal(2.0, 1.0, 400)  # concentrations around e^2, over decades
    table = np.c_[np.exp(log_conc), log_conc + 0.3 * rng.normal(size=400)]
    np.savetxt(tmp_path / "c.csv", table, delimiter=",", header="conc,signal", comments="")
    nfkit("train", "c.csv", "--log-columns", "conc", *SMALL, "-o", "run", cwd=tmp_path)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    nfkit("log-prob", "run", "c.csv", "-o", "lp.csv", cwd=tmp_path)
    lp = np.loadtxt(tmp_path / "lp.csv", delimiter=",", skiprows=1)
    # The run's numbers are in data units: the mean log conc (2 nats a row) is in them.
    assert -lp.mean() == pytest.approx(metrics["train_nll"], abs=0.05)
    true_nll = 1.4189 + 2.0 + (1.4189 + np.log(0.3))  # lognormal conc, Gaussian signal | conc
    assert abs(metrics["val_nll"] - true_nll) < 0.15
    nfkit("sample", "run", "-n", "500", "-o", "s.csv", cwd=tmp_path)
    samples = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    assert (samples[:, 0] > 0).all() and abs(np.median(np.log(samples[:, 0])) - 2.0) < 0.2
    info = nfkit("info", "run", cwd=tmp_path).stdout
    mean = float(info.split("log conc: mean ")[1].split(",")[0])
    assert abs(mean - 2.0) < 0.2  # the standardization is of log conc


def test_ctrl_c_says_how_to_resume_and_the_resumed_run_finishes(tmp_path, table, monkeypatch):
    from nfkit import runs
    from nfkit.callbacks import Callback

    class CtrlC(Callback):  # the KeyboardInterrupt that Ctrl-C raises, after the 2nd epoch
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise KeyboardInterrupt

    real_fit = runs._fit
    monkeypatch.setattr(runs, "_fit", lambda *a, **kw: real_fit(*a, callbacks=[CtrlC()], **kw))
    args = ["train", table, "--layers", "1", "--hidden", "16", "--epochs", "4", "--quiet"]
    result = nfkit(*args, "-o", "run", cwd=tmp_path, check=False)
    assert result.returncode == 130 and "Traceback" not in result.stderr
    assert "continue with `nfkit train --resume run`" in result.stderr
    assert not (tmp_path / "run" / "model.safetensors").exists()
    monkeypatch.setattr(runs, "_fit", real_fit)
    nfkit("train", "--resume", "run", cwd=tmp_path)
    assert len(json.loads((tmp_path / "run" / "metrics.json").read_text())["loss"]) == 4
