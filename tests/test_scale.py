"""Training that scales: DistributedDataParallel on CPU (gloo), memory-mapped data larger than
what the process holds, and the opt-in torch.compile path."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import nfkit
from nfkit import flows
from nfkit.data import open_rows

HELPERS = Path(__file__).parent / "helpers"
sys.path.insert(0, str(HELPERS))

from ddp_train import train  # noqa: E402


def test_two_process_ddp_matches_one_process(tmp_path) -> None:
    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(HELPERS / "ddp_train.py"),
        str(out),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    distributed = load_file(out)
    single = train(None)
    assert distributed.keys() == single.keys()
    for key, value in single.items():
        torch.testing.assert_close(distributed[key], value, rtol=1e-4, atol=1e-5, msg=key)
    # and the run really trained: weights moved from the seeded start
    torch.manual_seed(0)
    start = flows.maf(2, layers=2, hidden=[16, 16])
    start.log_prob(torch.zeros(1, 2))
    moved = [not torch.allclose(start.state_dict()[k], v) for k, v in single.items()]
    assert any(moved)


def test_ddp_strategy_without_a_launcher_trains_in_one_process() -> None:
    assert not torch.distributed.is_initialized()
    torch.testing.assert_close(train("ddp"), train(None))
    with pytest.raises(ValueError, match="strategy"):
        nfkit.fit(flows.maf(2, layers=1), torch.zeros(8, 2), strategy="horovod", verbose=0)


def _anonymous_rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon")


def test_training_from_a_memory_mapped_million_rows_keeps_memory_low(tmp_path) -> None:
    rows, features = 1_000_000, 128  # a 512 MB file
    path = tmp_path / "big.npy"
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, features))
    rng = np.random.default_rng(0)
    for start in range(0, rows, 100_000):
        array[start : start + 100_000] = rng.normal(3.0, 1.0, (100_000, features))
    array.flush()
    del array
    size = path.stat().st_size
    data = open_rows(path)
    torch.manual_seed(0)
    flow = flows.realnvp(features, layers=1, hidden=[32])
    with torch.no_grad():
        before_nll = -float(flow.log_prob(torch.tensor(data[:2000])).mean())

    peak, stop = [_anonymous_rss()], threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak.append(_anonymous_rss())
            stop.wait(0.005)

    baseline = peak[0]
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        history = nfkit.fit(
            flow, data, epochs=1, batch_size=1024, lr=1e-2, seed=0, verbose=0, validation_split=0.01
        )
    finally:
        stop.set()
        watcher.join()
    grown = max(peak) - baseline
    assert grown < size / 4, (
        f"anonymous memory grew by {grown / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB file"
    )
    assert history.history["val_loss"][0] < before_nll - 100  # it learned the shift of 3


def test_memory_mapped_data_is_checked(tmp_path) -> None:
    path = tmp_path / "bad.npy"
    array = np.ones((5000, 2), np.float32)
    array[4321, 1] = np.nan
    np.save(path, array)
    with pytest.raises(ValueError, match="row 4321"):
        nfkit.fit(flows.maf(2, layers=1), open_rows(path), verbose=0)
    np.save(path, np.ones((10, 3), np.float32))
    with pytest.raises(ValueError, match="event shape"):
        nfkit.fit(flows.maf(2, layers=1), open_rows(path), verbose=0)


def test_parquet_rows_are_converted_once_and_mapped(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    values = np.random.default_rng(0).normal(size=(3000, 2))
    path = tmp_path / "rows.parquet"
    pq.write_table(
        pa.table({"a": values[:, 0], "b": values[:, 1], "c": values[:, 0]}),
        path,
        row_group_size=500,
    )
    rows = open_rows(path, columns=["b", "a"])
    assert isinstance(rows, np.memmap) and rows.shape == (3000, 2)
    np.testing.assert_allclose(rows, values[:, ::-1].astype(np.float32))
    cached = tmp_path / "rows.parquet.npy"
    stamp = cached.stat().st_mtime_ns
    open_rows(path, columns=["b", "a"])
    assert cached.stat().st_mtime_ns == stamp  # reused, not converted again
    nfkit.fit(flows.maf(2, layers=1), rows, epochs=1, batch_size=500, verbose=0)


# On a GPU, also the CUDA-graph mode (forward and backward replayed as graphs).
COMPILED = [("cpu", True)] + ([("cuda", "reduce-overhead")] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device, mode", COMPILED)
def test_compiled_training_step_agrees_with_eager(device, mode) -> None:
    data = torch.randn(512, 2, generator=torch.Generator().manual_seed(1))

    def run(compile: bool | str) -> tuple[list[float], dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        flow = flows.maf(2, layers=2, hidden=[16, 16]).to(device)
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="torch.compile failed")  # no fallback
            history = nfkit.fit(
                flow, data, epochs=2, batch_size=128, lr=1e-2, seed=0, verbose=0, compile=compile
            )
        return history.history["loss"], flow.state_dict()

    eager_loss, eager_state = run(False)
    compiled_loss, compiled_state = run(mode)
    np.testing.assert_allclose(compiled_loss, eager_loss, rtol=1e-4)
    for key, value in eager_state.items():
        torch.testing.assert_close(compiled_state[key], value, rtol=1e-4, atol=1e-5)


def test_an_unknown_compile_mode_is_named() -> None:
    with pytest.raises(ValueError, match="'fastest'"):
        nfkit.fit(flows.maf(2, layers=1, hidden=[8]), torch.randn(64, 2), compile="fastest")


def test_compile_falls_back_to_eager_with_a_warning(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken)
    torch.manual_seed(0)
    flow = flows.maf(2, layers=1, hidden=[8])
    with pytest.warns(RuntimeWarning, match="without compilation"):
        history = nfkit.fit(
            flow, torch.randn(64, 2), epochs=1, batch_size=32, verbose=0, compile=True
        )
    assert np.isfinite(history.history["loss"][0])


class _FailingBackward(torch.autograd.Function):
    """The identity, whose backward raises: a compiled graph that fails to build its backward."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("inductor could not lower the backward")


def test_a_compiled_backward_that_fails_falls_back_to_eager(monkeypatch) -> None:
    monkeypatch.setattr(
        torch, "compile", lambda fn, **kw: lambda *a: _FailingBackward.apply(fn(*a))
    )
    torch.manual_seed(0)
    flow = flows.maf(2, layers=1, hidden=[8])
    with pytest.warns(RuntimeWarning, match="inductor could not lower"):
        history = nfkit.fit(
            flow, torch.randn(64, 2), epochs=2, batch_size=32, verbose=0, compile=True
        )
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("epochs, compiles", [(3, True), (2, False)])
def test_auto_compiles_once_a_run_is_long_enough(monkeypatch, epochs, compiles) -> None:
    """The default, compile="auto": eager for AUTO_COMPILE_STEPS steps, then compiled when as
    many steps remain (here 2 batches an epoch and a threshold of 3 steps: a run of 6 steps
    compiles at the 4th, one of 4 does not), quietly."""
    import nfkit.train.step as step_module

    calls = []

    def recording(fn, **kwargs):
        calls.append(kwargs)
        return fn

    monkeypatch.setattr(step_module, "AUTO_COMPILE_STEPS", 3)
    monkeypatch.setattr(torch, "compile", recording)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nfkit.fit(flows.maf(2, layers=1, hidden=[8]), torch.randn(64, 2), epochs=epochs, verbose=0)
    assert len(calls) == (1 if compiles else 0)


def test_auto_does_not_compile_without_a_compiler(monkeypatch) -> None:
    import shutil

    from nfkit.train.step import compiler_available

    assert compiler_available(torch.device("cpu"), 2) is False  # never under DDP
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert compiler_available(torch.device("cpu"), 1) is False
    assert compiler_available(torch.device("cuda"), 1) is True


def test_evaluation_uses_inference_mode_unless_a_part_differentiates() -> None:
    from nfkit.distributions.base import evaluation_mode
    from nfkit.stochastic import MALALayer, StochasticNormalizingFlow

    flow = flows.maf(2, layers=1, hidden=[8])
    with evaluation_mode(flow):
        assert torch.is_inference_mode_enabled()
    snf = StochasticNormalizingFlow(flow.distribution, [MALALayer()], lambda x: -x.square().sum(-1))
    with evaluation_mode(snf):
        assert not torch.is_inference_mode_enabled() and not torch.is_grad_enabled()
    cnf = flows.cnf(2, hidden=[8])
    with evaluation_mode(cnf):
        assert not torch.is_inference_mode_enabled()
    # numpy in, numpy out: evaluated in inference mode, and a CNF still gets its divergence
    assert np.isfinite(cnf.log_prob(np.zeros((3, 2), np.float32))).all()


def test_a_network_built_lazily_during_evaluation_stays_trainable() -> None:
    torch.manual_seed(0)
    flow = flows.maf(2, layers=1, hidden=[8])  # unbuilt until first use
    flow.log_prob(np.zeros((4, 2), np.float32))  # builds it inside inference mode
    assert not any(p.is_inference() for p in flow.parameters())
    history = nfkit.fit(flow, torch.randn(256, 2) + 2.0, epochs=5, lr=1e-2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
