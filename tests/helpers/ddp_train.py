"""Train a small MAF on fixed data; run by tests/test_scale.py both under
``torch.distributed.run --nproc_per_node=2`` (strategy="ddp") and in one process."""

from __future__ import annotations

import sys

import torch
from safetensors.torch import save_file

import nfkit
from nfkit import flows


def train(strategy: str | None) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    data = torch.randn(1024, 2, generator=torch.Generator().manual_seed(1)) * 0.5 + 1.0
    flow = flows.maf(2, layers=2, hidden=[16, 16])
    nfkit.fit(flow, data, epochs=3, batch_size=128, lr=1e-2, seed=0, verbose=0, strategy=strategy)
    return {k: v.detach().contiguous() for k, v in flow.state_dict().items()}


if __name__ == "__main__":
    state = train("ddp")
    if torch.distributed.get_rank() == 0:
        save_file(state, sys.argv[1])
    # Both ranks leave together: a rank that tears gloo down while the other is still in
    # flight aborted once ("terminate called without an active exception", exit -6).
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
