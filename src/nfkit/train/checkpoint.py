r"""Training checkpoints: everything ``fit`` needs to continue a run exactly where it stopped.

One safetensors file holds the model weights (``model.*``), the optimizer's tensors
(``optim.<param>.<name>``), the callbacks' tensors (``callback.<i>.<key>[.<name>]``, e.g. the
best weights so far) and the random-number states (``rng.*``); its text header holds the rest
as JSON (epoch, history, optimizer hyper-parameters, scheduler state, the callbacks' counters).
No pickle. Written atomically (temporary file, then
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
    callbacks: list[dict[str, Any]]  # each callback's state_dict(), in the loop's order
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
    callbacks = [_split_state(s, f"callback.{i}.", tensors) for i, s in enumerate(state.callbacks)]
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
                "callbacks": callbacks,
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
    if "callbacks" not in header.get("state", ""):
        raise ValueError(f"{path} was written by an older nfkit; start the run again (--force)")
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
        callbacks=[_join_state(c, f"callback.{i}.", part) for i, c in enumerate(meta["callbacks"])],
        torch_rng=tensors["rng.torch"],
        data_rng=tensors["rng.data"],
        stopped_early=meta["stopped_early"],
        model=part("model."),
        device_rng=tensors.get("rng.device"),
    )


def _split_state(state: dict[str, Any], prefix: str, tensors: dict[str, Tensor]) -> dict:
    """A callback's state as JSON; its tensors (and dicts of tensors) go to ``tensors``."""
    plain: dict[str, Any] = {}
    for key, value in state.items():
        if isinstance(value, Tensor):
            tensors[prefix + key] = value
            plain[key] = {"tensor": True}
        elif (
            isinstance(value, dict) and value and all(isinstance(v, Tensor) for v in value.values())
        ):
            tensors.update({f"{prefix}{key}.{name}": v for name, v in value.items()})
            plain[key] = {"tensors": True}
        else:
            plain[key] = value
    return plain


def _join_state(plain: dict[str, Any], prefix: str, part: Any) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for key, value in plain.items():
        if isinstance(value, dict) and value.get("tensor") is True:
            state[key] = part(prefix)[key]
        elif isinstance(value, dict) and value.get("tensors") is True:
            state[key] = part(f"{prefix}{key}.")
        else:
            state[key] = value
    return state


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
