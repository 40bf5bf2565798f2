"""Builders in nfkit.flows, and reading tables from files and data sets."""

import numpy as np
import pytest
import torch

import nfkit
from nfkit.data import DATASETS, Standardization, read_table


@pytest.mark.parametrize("name", sorted(nfkit.flows.FLOWS))
def test_builders_make_normalised_saveable_flows(name, tmp_path):
    torch.manual_seed(0)
    flow = nfkit.flows.FLOWS[name](3, layers=2, hidden=[8])
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(5, 3)
    lp = flow.log_prob(x)
    assert lp.shape == (5,) and torch.isfinite(lp).all()
    assert flow.sample(4).shape == (4, 3)
    loaded = nfkit.load(nfkit.save(flow, tmp_path / "f.safetensors"))
    torch.testing.assert_close(loaded.log_prob(x), lp)


def test_realnvp_needs_two_features():
    with pytest.raises(ValueError, match="at least 2 features"):
        nfkit.flows.realnvp(1)


def test_conditional_maf_builder():
    flow = nfkit.flows.maf(2, layers=2, hidden=[8], context=3)
    assert flow.log_prob(torch.zeros(4, 2), context=torch.ones(4, 3)).shape == (4,)


def test_file_formats_agree(tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 3))
    np.savetxt(tmp_path / "h.csv", x, delimiter=",", header="a,b,c", comments="")
    np.savetxt(tmp_path / "n.csv", x, delimiter=",")
    np.savetxt(tmp_path / "t.tsv", x, delimiter="\t", header="a\tb\tc", comments="")
    np.savetxt(tmp_path / "s.txt", x)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "x.npz", data=x)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2]}), tmp_path / "x.parquet")
    for name in ("h.csv", "n.csv", "t.tsv", "s.txt", "x.npy", "x.npz", "x.parquet"):
        table = read_table(tmp_path / name)
        np.testing.assert_allclose(table.values, x, rtol=1e-15, err_msg=name)
    assert read_table(tmp_path / "h.csv").columns == ["a", "b", "c"]
    assert read_table(tmp_path / "n.csv").columns == ["x0", "x1", "x2"]
    picked = read_table(tmp_path / "x.parquet", ["c", "0"])
    np.testing.assert_array_equal(picked.values, x[:, [2, 0]])
    with pytest.raises(ValueError, match=r"no column 'd'.*it has a, b, c"):
        read_table(tmp_path / "h.csv", ["d"])
    np.savez(tmp_path / "two.npz", a=x, b=x)
    with pytest.raises(ValueError, match="holds 2 arrays"):
        read_table(tmp_path / "two.npz")
    (tmp_path / "ragged.csv").write_text("a,b\n1,2\n3\n")
    with pytest.raises(ValueError, match="line 3: 1 cells, but the header has 2"):
        read_table(tmp_path / "ragged.csv")


def test_datasets_are_local_and_checked():
    for name, make in DATASETS.items():
        table = make()
        assert np.isfinite(table.values).all() and table.values.shape[1] == len(table.columns), name
    digits = read_table("digits")
    assert digits.image_shape == (8, 8)
    assert (digits.values.std(0) > 0).all()  # dequantized: no constant pixel


def test_standardization_is_inside_the_density():
    x = np.random.default_rng(0).normal(size=(500, 2)) * [3.0, 0.5] + [1.0, -2.0]
    standard = Standardization.of(x, ["a", "b"])
    base = nfkit.distributions.MultivariateNormalDiag(loc=[0.0, 0.0])
    model = standard.bijector()(base)
    # N(m, s^2) in data units: log p = log N(y) - sum(log s).
    y = standard.apply(x[:5])
    expected = base.log_prob(torch.tensor(y, dtype=torch.float32)) - np.log(standard.std).sum()
    torch.testing.assert_close(
        model.log_prob(torch.tensor(x[:5], dtype=torch.float32)), expected.float()
    )
