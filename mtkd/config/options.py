"""``--cfg-options``: parsing ``KEY=VALUE`` items and setting dotted keys of a config (mmengine's syntax)."""
from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from typing import Any

from mtkd.config.dicts import ConfigDict, ConfigError, _strip_delete, _wrap, merge_into


def check_override(cfg: Mapping, dotted: str, value: Any, source: str = "--cfg-options") -> None:
    """Refuse an override that cannot be meant for its key: an empty value, or text where the config
    holds a number or a bool (``optimizer.lr=1e-3x`` parses as the string ``'1e-3x'``)."""
    if isinstance(value, str) and not value.strip():
        raise ConfigError(f"{source} {dotted}={value!r}: empty value; give a value, or None to unset it")
    current = _lookup(cfg, dotted)
    if not isinstance(value, str) or current is None or isinstance(current, str):
        return
    if isinstance(current, bool):
        expected = "true or false"
    elif isinstance(current, (int, float)):
        expected = "a number"
    else:
        return
    raise ConfigError(f"{source} {dotted}={value!r}: expected {expected}, like its current value {current!r}")


def _lookup(cfg: Any, dotted: str) -> Any:
    """The value at ``dotted`` in nested dicts/lists, or None when a step is missing."""
    node = cfg
    for key in dotted.split("."):
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.lstrip("-").isdigit() and -len(node) <= int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def _set_dotted(cfg: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node: Any = cfg
    walked: list[str] = []
    for key in keys[:-1]:
        walked.append(key)
        node = _step(node, key, dotted, walked, create=True)
    last = keys[-1]
    if isinstance(node, list):
        node[_list_index(node, last, dotted)] = _wrap(value)
    elif isinstance(node, dict):
        if isinstance(value, Mapping) and isinstance(node.get(last), Mapping):
            node[last] = merge_into(value, node[last])
        else:
            node[last] = _strip_delete(value) if isinstance(value, Mapping) else value
    else:
        raise ConfigError(f"cannot set {dotted!r}: {'.'.join(keys[:-1])} is a {type(node).__name__} "
                          f"({node!r}), not a dict or list")


def _step(node: Any, key: str, dotted: str, walked: list[str], create: bool) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, key, dotted)]
    if not isinstance(node, dict):
        parent = ".".join(walked[:-1])
        raise ConfigError(f"cannot set {dotted!r}: {parent} is a {type(node).__name__} ({node!r}), "
                          f"not a dict or list")
    if key not in node and create:
        node[key] = ConfigDict()
    return node[key]


def _list_index(node: list, key: str, dotted: str) -> int:
    if not key.lstrip("-").isdigit():
        raise ConfigError(f"cannot set {dotted!r}: {key!r} indexes a list and must be an integer")
    index = int(key)
    if not -len(node) <= index < len(node):
        raise ConfigError(f"cannot set {dotted!r}: index {index} is out of range for a list of {len(node)}")
    return index


def parse_value(text: str) -> Any:
    """Parse one ``--cfg-options`` value: int, float, true/false, None, list, tuple, else string.

    ``a,b`` and ``[a,b]`` give lists, ``(a,b)`` a tuple; brackets nest (``[(1,2),(3,4)]``).
    """
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        return [parse_value(p) for p in _split_top_level(text[1:-1])]
    if text.startswith("(") and text.endswith(")"):
        return tuple(parse_value(p) for p in _split_top_level(text[1:-1]))
    parts = _split_top_level(text)
    if len(parts) > 1:
        return [parse_value(p) for p in parts]
    return _parse_scalar(text)


def _parse_scalar(text: str) -> Any:
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if text == "None":
        return None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets; ``''`` gives ``[]``."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "([{"
        depth -= char in ")]}"
        if depth < 0:
            raise ConfigError(f"unbalanced brackets in --cfg-options value {text!r}")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if depth != 0:
        raise ConfigError(f"unbalanced brackets in --cfg-options value {text!r}")
    parts.append(current)
    return [p for p in parts if p.strip() != ""]


def parse_cfg_options(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[1,2]"]`` -> ``{"a.b": 1, "c": [1, 2]}``; an item without ``=`` is an error."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--cfg-options expects KEY=VALUE items, got {item!r}")
        options[key.strip()] = parse_value(value)
    return options


class DictAction(argparse.Action):
    """argparse action collecting ``KEY=VALUE`` items into a dict (``--cfg-options a.b=1 c=x,y``)."""

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            options = parse_cfg_options(values if isinstance(values, list) else [values])
        except ConfigError as err:
            parser.error(str(err))
        merged = dict(getattr(namespace, self.dest, None) or {})
        merged.update(options)
        setattr(namespace, self.dest, merged)
