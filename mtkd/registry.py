"""Registries: map a ``type`` name in a config dict to the class that builds it.

In the spirit of mmengine's ``Registry`` (``registry/build_functions.py``) without scopes, parents or
lazy locations: one flat name table per kind of component. ``build`` pops ``type``, fills defaults and
calls the class; it does not recurse, the class builds its own children.
"""
from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch


class Registry:
    """A named table of classes (or factory functions) that config dicts refer to by ``type``."""

    def __init__(self, name: str):
        self.name = name
        self._modules: dict[str, Callable] = {}

    # -- registration -------------------------------------------------------------------------
    def register_module(self, name: str | None = None, force: bool = False, module: Callable | None = None):
        """Register ``module`` under ``name`` (default: its ``__name__``); usable as a decorator.

        ``@MODELS.register_module()`` or ``MODELS.register_module(module=SomeClass)``. Registering a name
        twice is an error unless ``force=True``.
        """
        if name is not None and not isinstance(name, str):
            raise TypeError(f"{self.name}.register_module: name must be a str, got {type(name).__name__}")

        def _register(obj: Callable) -> Callable:
            key = name or obj.__name__
            if not callable(obj):
                raise TypeError(f"{self.name}: can only register classes or functions, got {obj!r}")
            if key in self._modules and not force and self._modules[key] is not obj:
                raise KeyError(
                    f"{self.name}: {key!r} is already registered as {self._describe(self._modules[key])}; "
                    f"pass force=True to replace it")
            self._modules[key] = obj
            return obj

        if module is not None:
            return _register(module)
        return _register

    # -- lookup -------------------------------------------------------------------------------
    def get(self, name: str) -> Callable:
        """Return the class registered as ``name``; a KeyError names the closest known names."""
        if name in self._modules:
            return self._modules[name]
        raise KeyError(self._unknown_message(name))

    def __contains__(self, name: object) -> bool:
        return name in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def keys(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._modules)

    def items(self) -> list[tuple[str, Callable]]:
        """``(name, class)`` pairs in registration order (import order decides, e.g. for discovery)."""
        return list(self._modules.items())

    def __repr__(self) -> str:
        lines = [f"Registry({self.name!r}, {len(self)} entries)"]
        width = max((len(k) for k in self._modules), default=0)
        for key in self.keys():
            lines.append(f"  {key.ljust(width)}  {self._describe(self._modules[key])}")
        return "\n".join(lines)

    # -- building -----------------------------------------------------------------------------
    def build(self, cfg: Mapping[str, Any], **default_args: Any) -> Any:
        """Build ``cfg['type'](**rest_of_cfg, **default_args)``; keys in ``cfg`` win over defaults.

        ``type`` is a registered name or a class. An exception raised inside the constructor keeps its
        type and traceback and gains a note saying which ``type`` was being built.
        """
        if not isinstance(cfg, Mapping):
            raise TypeError(f"{self.name}.build expects a dict with a 'type' key, got {type(cfg).__name__}: {cfg!r}")
        if "type" not in cfg:
            raise KeyError(f"{self.name}.build: the config has no 'type' key (keys: {sorted(cfg)})")
        args = dict(cfg)
        obj_type = args.pop("type")
        for key, value in default_args.items():
            args.setdefault(key, value)
        if isinstance(obj_type, str):
            obj_cls = self.get(obj_type)
        elif callable(obj_type):
            obj_cls = obj_type
        else:
            raise TypeError(f"{self.name}.build: 'type' must be a registered name or a class, got {obj_type!r}")
        label = obj_type if isinstance(obj_type, str) else getattr(obj_type, "__name__", repr(obj_type))
        try:
            return obj_cls(**args)
        except Exception as err:
            note = f"while building {self.name} type={label!r}"
            if hasattr(err, "add_note"):  # Python >= 3.11: same exception, same traceback, one more line
                err.add_note(note)
                raise
            raise RuntimeError(f"{note}: {type(err).__name__}: {err}") from err

    # -- helpers ------------------------------------------------------------------------------
    def _unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(str(name), list(self._modules), n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        return (f"{name!r} is not registered in {self.name}{hint}. "
                f"Known: {', '.join(self.keys()) or '(none)'}")

    @staticmethod
    def _describe(obj: Callable) -> str:
        module = inspect.getmodule(obj)
        return f"{module.__name__ if module else '?'}.{getattr(obj, '__qualname__', repr(obj))}"


MODELS = Registry("MODELS")          # backbones, necks, heads, whole models, distillers, losses
DATASETS = Registry("DATASETS")
TRANSFORMS = Registry("TRANSFORMS")  # data pipeline steps (albumentations transforms and ours)
METRICS = Registry("METRICS")
TARGETS = Registry("TARGETS")        # how a task's ground truth is read from a dataset and transformed
DRAWERS = Registry("DRAWERS")        # how a task's prediction (and ground truth) is drawn on an image
OPTIMIZERS = Registry("OPTIMIZERS")  # torch.optim classes under their own names
SCHEDULERS = Registry("SCHEDULERS")  # torch.optim.lr_scheduler classes under their own names


def _register_torch_optim() -> None:
    for name, obj in vars(torch.optim).items():
        if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer) and obj is not torch.optim.Optimizer:
            OPTIMIZERS.register_module(name=name, module=obj)
    base = torch.optim.lr_scheduler.LRScheduler
    for name, obj in vars(torch.optim.lr_scheduler).items():
        if inspect.isclass(obj) and issubclass(obj, base) and obj is not base and not name.startswith("_"):
            SCHEDULERS.register_module(name=name, module=obj)
    SCHEDULERS.register_module(name="ReduceLROnPlateau", module=torch.optim.lr_scheduler.ReduceLROnPlateau)


_register_torch_optim()
