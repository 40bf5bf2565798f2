r"""Objects that remember how they were built, so a model can be rebuilt from a JSON config.

Every nfkit bijector, distribution and network derives from :class:`Configurable`: the
arguments its constructor received are kept (by name), and :meth:`Configurable.get_config`
returns them. :mod:`nfkit.io` turns such a tree of arguments into JSON (tensors stored next to
the weights) and back, using only the classes in :data:`REGISTRY` — never an import path read
from a file, so loading a model cannot run code.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, ClassVar

__all__ = ["REGISTRY", "Configurable", "register"]

REGISTRY: dict[str, type[Configurable]] = {}


class Configurable:
    """Mixin recording constructor arguments; subclasses of nfkit's own modules register."""

    config_name: ClassVar[str] = ""
    tfp_keywords: ClassVar[bool] = False
    """Accept TFP's ``name=`` and ``validate_args=`` in every constructor (distributions and
    bijectors): kept as ``self.name`` and ``self.validate_args`` and in the model file."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None:
            cls.__init__ = _recording(init)  # type: ignore[method-assign]
        if cls.__module__.startswith("nfkit.") and not cls.__name__.startswith("_"):
            register(cls)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments that rebuild this object (before its weights are loaded)."""
        return dict(self.__dict__.get("_init_arguments", {}))


def _recording(init: Any) -> Any:
    signature = inspect.signature(init)

    @functools.wraps(init)
    def recording_init(self: Configurable, *args: Any, **kwargs: Any) -> None:
        # The outermost constructor records; the super().__init__ calls it makes do not.
        outermost = "_init_arguments" not in self.__dict__
        tfp = {}
        if self.tfp_keywords and outermost:
            tfp = {k: kwargs.pop(k) for k in ("name", "validate_args") if k in kwargs}
        if outermost:
            bound = signature.bind(self, *args, **kwargs)
            arguments = dict(bound.arguments)
            arguments.pop(next(iter(signature.parameters)))
            object.__setattr__(self, "_init_arguments", {**arguments, **tfp})
        init(self, *args, **kwargs)
        if tfp:
            object.__setattr__(self, "name", str(tfp.get("name", type(self).__name__)))
            object.__setattr__(self, "validate_args", bool(tfp.get("validate_args", False)))

    return recording_init


def register(cls: type[Configurable]) -> type[Configurable]:
    """Allow ``cls`` (a :class:`Configurable` subclass) in model files, under its class name.

    nfkit's own classes register themselves. Register your own subclasses before saving and
    before loading a file that uses them; usable as a class decorator.
    """
    if not (isinstance(cls, type) and issubclass(cls, Configurable)):
        raise TypeError(f"only Configurable subclasses can be registered, got {cls!r}")
    name = cls.config_name or cls.__name__
    if REGISTRY.get(name, cls) is not cls:
        raise ValueError(f"another class is already registered as {name!r}")
    REGISTRY[name] = cls
    return cls
