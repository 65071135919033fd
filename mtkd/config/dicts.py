"""Config dictionaries: attribute access, and the merge rule of ``_base_`` inheritance (mmengine's)."""
from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from typing import Any

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"


class ConfigError(Exception):
    """A config file or an override that cannot be turned into a config."""


class ConfigDict(dict):
    """A dict whose keys also read as attributes: ``cfg.model.backbone.name``."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        for key, value in self.items():
            dict.__setitem__(self, key, _wrap(value))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            close = difflib.get_close_matches(name, [str(k) for k in self], n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise AttributeError(f"config has no key {name!r}{hint} (keys: {sorted(map(str, self))})") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, _wrap(value))

    def __deepcopy__(self, memo: dict) -> "ConfigDict":
        return ConfigDict({copy.deepcopy(k, memo): copy.deepcopy(v, memo) for k, v in self.items()})

    def to_dict(self) -> dict:
        """Plain ``dict``/``list``/``tuple`` copy, for checkpoints and comparisons."""
        return _unwrap(self)


def _wrap(value: Any) -> Any:
    if isinstance(value, dict) and not isinstance(value, ConfigDict):
        return ConfigDict(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_unwrap(v) for v in value)
    return value


def merge_into(child: Mapping, base: Mapping) -> dict:
    """Merge ``child`` into a copy of ``base``: dicts recurse, other values replace, ``_delete_`` resets."""
    merged = dict(copy.deepcopy(base))
    for key, value in child.items():
        if isinstance(value, Mapping):
            value = dict(value)
            delete = value.pop(DELETE_KEY, False)
            if not delete and isinstance(merged.get(key), Mapping):
                merged[key] = merge_into(value, merged[key])
                continue
            merged[key] = _strip_delete(value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _strip_delete(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _strip_delete(v) for k, v in value.items() if k != DELETE_KEY}
    if isinstance(value, (list, tuple)):
        return type(value)(_strip_delete(v) for v in value)
    return value
