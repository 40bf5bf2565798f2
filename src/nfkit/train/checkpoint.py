r"""Training checkpoints: everything ``fit`` needs to continue a run exactly where it stopped.

One safetensors file holds the model weights (``model.*``), the optimizer's tensors
(``optim.<param>.<name>``), the best weights so far (``best.*``) and the random-number states
(``rng.*``); its text header holds the rest as JSON (epoch, history, optimizer hyper-parameters,
scheduler state, early-stopping counters). No pickle. Written atomically (temporary file, then
rename), so an interruption during the write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open
from torch import Tensor

from nfkit._files import atomic_save_file

__all__ = ["TrainingState", "read_checkpoint", "scheduler_state", "write_checkpoint"]

_KIND = "nfkit-checkpoint"


@dataclass
class TrainingState:
    """What a checkpoint restores, besides the model's weights."""

    next_epoch: int
    history: dict[str, list[float]]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    best: float
    best_epoch: int | None
    bad_epochs: int
    best_state: dict[str, Tensor] | None
    torch_rng: Tensor
    data_rng: Tensor
    stopped_early: bool = False
    model: dict[str, Tensor] = field(default_factory=dict)
    device_rng: Tensor | None = None  # the CUDA generator's state when training on a GPU


def write_checkpoint(path: str | os.PathLike, state: TrainingState) -> None:
    """Write ``state`` atomically to ``path``."""
    tensors = {f"model.{k}": v for k, v in state.model.items()}
    optim_state = {}
    for index, values in state.optimizer["state"].items():
        for name, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"optim.{index}.{name}"] = value
            else:
                optim_state.setdefault(str(index), {})[name] = value
    if state.best_state is not None:
        tensors.update({f"best.{k}": v for k, v in state.best_state.items()})
    tensors["rng.torch"] = state.torch_rng
    tensors["rng.data"] = state.data_rng
    if state.device_rng is not None:
        tensors["rng.device"] = state.device_rng
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    header = {
        "format": _KIND,
        "state": json.dumps(
            {
                "next_epoch": state.next_epoch,
                "history": state.history,
                "param_groups": state.optimizer["param_groups"],
                "optim_scalars": optim_state,
                "scheduler": state.scheduler,
                "best": state.best,
                "best_epoch": state.best_epoch,
                "bad_epochs": state.bad_epochs,
                "has_best_state": state.best_state is not None,
                "stopped_early": state.stopped_early,
            }
        ),
    }
    atomic_save_file(tensors, Path(path), header)


def read_checkpoint(path: str | os.PathLike) -> TrainingState:
    """Read a checkpoint written by :func:`write_checkpoint`."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path} is not a readable nfkit checkpoint ({err})") from err
    if header.get("format") != _KIND:
        raise ValueError(f"{path} is not an nfkit training checkpoint")
    meta = json.loads(header["state"])

    def part(prefix: str) -> dict[str, Tensor]:
        return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

    optim: dict[int, dict[str, Any]] = {}
    for key, value in part("optim.").items():
        index, name = key.split(".", 1)
        optim.setdefault(int(index), {})[name] = value
    for index, values in meta["optim_scalars"].items():
        optim.setdefault(int(index), {}).update(values)
    return TrainingState(
        next_epoch=meta["next_epoch"],
        history=meta["history"],
        optimizer={"state": optim, "param_groups": meta["param_groups"]},
        scheduler=meta["scheduler"],
        best=float(meta["best"]),
        best_epoch=meta["best_epoch"],
        bad_epochs=meta["bad_epochs"],
        best_state=part("best.") if meta["has_best_state"] else None,
        torch_rng=tensors["rng.torch"],
        data_rng=tensors["rng.data"],
        stopped_early=meta["stopped_early"],
        model=part("model."),
        device_rng=tensors.get("rng.device"),
    )


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def scheduler_state(scheduler: Any) -> dict[str, Any] | None:
    """A scheduler's state dict, if it is plain JSON (the built-in schedules are)."""
    if scheduler is None:
        return None
    state = scheduler.state_dict()
    if not _is_json(state):
        raise ValueError(
            "this lr_schedule has state that cannot be checkpointed without pickle; "
            "use lr_schedule='cosine' or None with checkpoint="
        )
    return state
