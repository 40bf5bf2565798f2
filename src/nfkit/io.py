r"""Model files: ``save(distribution, path)`` and ``load(path)``, with no pickle anywhere.

A model file is one `safetensors <https://huggingface.co/docs/safetensors>`_ file. Its tensors
are the weights (``state.*``, the module's ``state_dict``) and any tensor given to a constructor
(``init.*``); its text header holds

- ``format`` = ``"nfkit"`` and ``format_version`` (this module reads versions up to
  :data:`FORMAT_VERSION`),
- ``config``: the architecture as JSON — each object is ``{"class": name, "args": {...}}``,
  names resolved only through nfkit's registry of classes (see :func:`nfkit.register`), so a
  file cannot make the loader import or run anything,
- ``metadata``: JSON the caller chose (the command line stores the data standardization,
  column names and metrics there),
- ``sha256``: a digest of all of the above and every tensor's bytes, so a truncated or edited
  file is refused instead of loaded wrong.

Files are written to a temporary name and renamed into place, so an interrupted save never
leaves a half-written model where a good one was.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from nfkit import _format1, _format2, _format3
from nfkit._config import REGISTRY, Configurable, register
from nfkit._files import atomic_save_file
from nfkit.distributions.base import Distribution

__all__ = [
    "FORMAT_VERSION",
    "ModelFileError",
    "load",
    "load_with_header",
    "read_header",
    "register",
    "save",
]

FORMAT_VERSION = 4
RUN_MODEL_FILE = "model.safetensors"  # the model in a run folder of the command
# 2: one conditioner convention (``conditioner`` for every layer's network); format 1 files
# are read through nfkit._format1.
# 3: ScaleMatvecLU's permutation as tf.linalg.lu's; formats 1-2 are read through
# nfkit._format2.
# 4: three defaults as TFP's (Independent's reinterpreted_batch_ndims, AutoregressiveNetwork's
# activation, the exponential scale of affine layers given a TFP-form network); formats 1-3
# are read through nfkit._format3.


def upgrade_args(cls: type, args: dict[str, Any], version: int) -> dict[str, Any]:
    """Constructor arguments of a file of format ``version`` in today's conventions."""
    if version == 1:
        args = _format1.upgrade_args(cls, args)
    if version <= 2:
        args = _format2.upgrade_args(cls, args)
    return _format3.upgrade_args(cls, args) if version <= 3 else args


def upgrade_state(model: nn.Module, state: dict[str, Tensor], version: int) -> dict[str, Tensor]:
    """Weights of a file of format ``version`` in today's names and conventions."""
    if version == 1:
        state = _format1.upgrade_state(model, state)
    return _format2.upgrade_state(model, state) if version <= 2 else state


class ModelFileError(ValueError):
    """A file that is not a readable nfkit model (wrong kind, damaged, or from a newer nfkit)."""


def _encode(value: Any, where: str, tensors: dict[str, Tensor]) -> Any:
    """JSON for one constructor argument; tensors go to ``tensors`` under ``init.<where>``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Tensor):
        key = f"init.{where}"
        tensors[key] = value.detach().cpu().contiguous()
        return {"tensor": key, "parameter": isinstance(value, nn.Parameter)}
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, list | tuple | torch.Size):
        return [_encode(v, f"{where}.{i}", tensors) for i, v in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {"dict": {k: _encode(v, f"{where}.{k}", tensors) for k, v in value.items()}}
    if isinstance(value, Configurable):
        name = type(value).config_name or type(value).__name__
        if REGISTRY.get(name) is not type(value):
            raise TypeError(
                f"cannot save {where or 'the model'}: {type(value).__qualname__} is not a "
                "registered class; decorate it with @nfkit.register (and import it before "
                "loading)"
            )
        args = value.get_config()
        return {
            "class": name,
            "args": {k: _encode(v, f"{where}.{k}".lstrip("."), tensors) for k, v in args.items()},
        }
    raise TypeError(
        f"cannot save {where or 'the model'}: a {type(value).__qualname__} is neither an nfkit "
        "object nor a plain value (a custom network, function or torch distribution?). Build the "
        "model from nfkit's own networks (activations by name, e.g. 'relu'), or make the custom "
        "part a registered nfkit.bijectors.Bijector subclass"
    )


def _decode(value: Any, tensors: dict[str, Tensor], version: int = FORMAT_VERSION) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_decode(v, tensors, version) for v in value]
    if not isinstance(value, dict):
        raise ModelFileError(f"unexpected value in the model config: {value!r}")
    if "tensor" in value:
        tensor = tensors[value["tensor"]].clone()
        return nn.Parameter(tensor) if value.get("parameter") else tensor
    if "dtype" in value:
        dtype = getattr(torch, str(value["dtype"]), None)
        if not isinstance(dtype, torch.dtype):
            raise ModelFileError(f"unknown dtype {value['dtype']!r} in the model config")
        return dtype
    if "dict" in value:
        return {k: _decode(v, tensors, version) for k, v in value["dict"].items()}
    if "class" in value:
        name = value["class"]
        if name not in REGISTRY:
            _import_families()
        if name not in REGISTRY:
            raise ModelFileError(
                f"the model uses class {name!r}, which this program has not registered: import "
                "the module that defines it (decorated with @nfkit.register) before loading"
            )
        cls = REGISTRY[name]
        args = {k: _decode(v, tensors, version) for k, v in value["args"].items()}
        return _construct(cls, upgrade_args(cls, args, version))
    raise ModelFileError(f"unexpected object in the model config: {sorted(value)}")


def _import_families() -> None:
    """Import nfkit's families that ``nfkit.distributions`` does not pull in, so that their
    classes are registered (a model file may use a continuous flow).
    """
    importlib.import_module("nfkit.continuous")


def _construct(cls: type, args: dict[str, Any]) -> Any:
    """``cls(**args)``, passing ``*args``/``**kwargs`` parameters the way they were recorded."""
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    for name, parameter in inspect.signature(cls).parameters.items():
        if name not in args:
            continue
        if parameter.kind is parameter.VAR_POSITIONAL:
            positional.extend(args[name])
        elif parameter.kind is parameter.VAR_KEYWORD:
            keywords.update(args[name])
        elif parameter.kind is parameter.POSITIONAL_ONLY:
            positional.append(args[name])
        else:
            keywords[name] = args[name]
    if getattr(cls, "tfp_keywords", False):  # TFP's name= and validate_args=, recorded apart
        keywords.update({k: args[k] for k in ("name", "validate_args") if k in args})
    return cls(*positional, **keywords)


def _digest(header: dict[str, str], tensors: dict[str, Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(header):
        h.update(f"{key}={header[key]}\n".encode())
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save(distribution: Distribution, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ``distribution`` (architecture, weights, ``metadata``) to a model file at ``path``.

    Args:
        distribution: an nfkit distribution built from nfkit's classes (or registered ones).
        path: the file to write; replaced atomically if it exists.
        metadata: JSON-serializable extras stored with the model (read back by
            :func:`read_header`).

    Returns:
        The path written.

    Raises:
        TypeError: a part of the model cannot be described by a config (e.g. a lambda).

    Example:
        >>> import tempfile, torch, nfkit, nfkit.distributions as nfd, nfkit.bijectors as nfb
        >>> flow = nfb.Shift(torch.tensor([1.0, 2.0]))(nfd.MultivariateNormalDiag(loc=[0.0] * 2))
        >>> path = nfkit.save(flow, tempfile.mkdtemp() + "/shift.safetensors")
        >>> x = torch.randn(3, 2)
        >>> torch.allclose(nfkit.load(path).log_prob(x), flow.log_prob(x))
        True

    """
    if not isinstance(distribution, Distribution):
        raise TypeError(f"save expects an nfkit distribution, got {type(distribution).__name__}")
    tensors: dict[str, Tensor] = {}
    config = _encode(distribution, "", tensors)
    for key, value in distribution.state_dict().items():
        tensors[f"state.{key}"] = value.detach().cpu().contiguous().clone()
    header = {
        "format": "nfkit",
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(config),
        "metadata": json.dumps(metadata or {}),
        "dtype": str(distribution.dtype).removeprefix("torch."),
    }
    header["sha256"] = _digest(header, tensors)
    path = Path(path)
    atomic_save_file(tensors, path, header)
    return path


def _read(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, Tensor]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ModelFileError(
            f"{path} is not an nfkit model file (not a readable safetensors file: {err})"
        ) from err
    if header.get("format") != "nfkit":
        raise ModelFileError(f"{path} is a safetensors file but not an nfkit model")
    try:
        version = int(header.get("format_version", ""))
    except ValueError:
        raise ModelFileError(f"{path}: unreadable format_version") from None
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written by a newer nfkit (model format {version}); this nfkit reads "
            f"formats up to {FORMAT_VERSION}: upgrade nfkit to load it"
        )
    expected = header.pop("sha256", None)
    if expected != _digest(header, tensors):
        raise ModelFileError(
            f"{path} is damaged or was modified after saving (checksum mismatch); it was not loaded"
        )
    return header, tensors


def _decoded(header: dict[str, str]) -> dict[str, Any]:
    return {
        **header,
        "config": json.loads(header["config"]),
        "metadata": json.loads(header["metadata"]),
    }


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The checked header of a model file: ``config`` and ``metadata`` decoded from JSON."""
    header, _ = _read(path)
    return _decoded(header)


def load_with_header(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[Distribution, dict[str, Any]]:
    """:func:`load` and :func:`read_header` from a single read of the file."""
    if Path(path).is_dir():  # a run folder of the command
        path = Path(path) / RUN_MODEL_FILE
    header, tensors = _read(path)
    version = int(header["format_version"])
    try:
        model = _decode(json.loads(header["config"]), tensors, version)
        if not isinstance(model, Distribution):
            raise ModelFileError(f"{path} does not hold a distribution")
        model = model.to(dtype=getattr(torch, header.get("dtype", "float32")))
        state = {k.removeprefix("state."): v for k, v in tensors.items() if k.startswith("state.")}
        model.load_state_dict(upgrade_state(model, state, version), strict=True)
    except (TypeError, KeyError, RuntimeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path}: the model could not be rebuilt ({err})") from err
    return model.to(map_location).eval(), _decoded(header)


def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Distribution:
    """Rebuild the distribution saved at ``path`` (in eval mode, on ``map_location``): a model
    file, or a run folder of the ``nfkit`` command (its ``model.safetensors``).

    Raises:
        FileNotFoundError: no file at ``path``.
        ModelFileError: not an nfkit model, damaged or edited, or written by a newer nfkit.

    """
    return load_with_header(path, map_location)[0]
