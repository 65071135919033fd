"""Python config files with ``_base_`` inheritance, following mmengine's semantics.

Rules (see README "Configs"):
- ``_base_`` is a path or a list of paths relative to the file. Each base is loaded fully (its own bases
  first), then the bases are combined; a top-level key defined in two bases of one file is an error.
- The file's own variables merge into the combined bases: dicts merge recursively, anything else
  (lists, tuples, scalars) replaces. A dict with ``_delete_=True`` replaces the inherited dict.
- After the ``_base_`` line, plain Python reads the merged bases through ``_base_``:
  ``model = dict(_base_.model, num_classes=3)`` or ``lr = _base_.optimizer.lr * 2``.
- Variables whose names start with ``_`` (other than ``_base_``), modules, functions and classes are
  not config values.
"""
from __future__ import annotations

import argparse
import ast
import copy
import difflib
import importlib
import keyword
import math
import os
import pprint
import sys
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
CUSTOM_IMPORTS_KEY = "custom_imports"


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


class Config:
    """A loaded config: attribute and item access to a :class:`ConfigDict`, plus merge and dump."""

    def __init__(self, cfg_dict: Mapping | None = None, filename: str | os.PathLike | None = None):
        object.__setattr__(self, "_cfg", ConfigDict(cfg_dict or {}))
        object.__setattr__(self, "filename", None if filename is None else str(filename))

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def fromfile(cls, path: str | os.PathLike, import_custom: bool = True) -> "Config":
        """Load a Python config file and everything it inherits, then import its ``custom_imports``."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        cfg = cls(_load_file(path.resolve(), chain=()), filename=path)
        if import_custom:
            import_custom_modules(cfg, str(path))
        return cfg

    # -- access -------------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name == "_cfg" or name.startswith("__"):  # not set yet (unpickling, copying)
            raise AttributeError(name)
        return getattr(self._cfg, name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._cfg[name] = value

    def __getitem__(self, key: str) -> Any:
        return self._cfg[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._cfg[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._cfg

    def __iter__(self):
        return iter(self._cfg)

    def __len__(self) -> int:
        return len(self._cfg)

    def __eq__(self, other: object) -> bool:
        other_dict = other.to_dict() if isinstance(other, Config) else other
        return self.to_dict() == other_dict

    def __repr__(self) -> str:
        return f"Config(filename={self.filename!r}):\n{self.pretty_text}"

    def get(self, key: str, default: Any = None) -> Any:
        return self._cfg.get(key, default)

    def keys(self):
        return self._cfg.keys()

    def items(self):
        return self._cfg.items()

    def copy(self) -> "Config":
        return Config(copy.deepcopy(self._cfg), filename=self.filename)

    def to_dict(self) -> dict:
        """The config as plain dicts, lists and tuples."""
        return self._cfg.to_dict()

    # -- overrides ----------------------------------------------------------------------------
    def merge_from_dict(self, options: Mapping[str, Any]) -> None:
        """Apply ``{"a.b.c": value}`` overrides; missing dicts are created, ``a.0.b`` indexes a list."""
        for dotted, value in options.items():
            _set_dotted(self._cfg, str(dotted), value)

    # -- output -------------------------------------------------------------------------------
    @property
    def pretty_text(self) -> str:
        """The config as Python source (what :meth:`dump` writes)."""
        return "".join(f"{key} = {_format(value, 0, key)}\n" for key, value in self.to_dict().items())

    def dump(self, path: str | os.PathLike) -> None:
        """Write the merged config as a ``.py`` that :meth:`fromfile` reads back to an equal dict."""
        path = Path(path)
        if path.suffix != ".py":
            raise ConfigError(f"Config.dump writes Python files; got {path} (expected a .py name)")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.pretty_text)
        os.replace(tmp, path)


def import_custom_modules(cfg: Mapping | Config, source: str) -> list[str]:
    """Import the modules a config names in ``custom_imports = dict(imports=[...], allow_failed_imports=False)``
    (mmengine's key), so that the components they register can be built; return the names imported.

    Modules are found on ``sys.path`` plus the current directory. One that cannot be imported is a
    ConfigError naming it and ``source`` (the config file, or the checkpoint whose config this is), or a
    warning with ``allow_failed_imports=True``.
    """
    spec = cfg.get(CUSTOM_IMPORTS_KEY)
    if not spec:
        return []
    if not isinstance(spec, Mapping) or set(spec) - {"imports", "allow_failed_imports"}:
        raise ConfigError(f"{source}: custom_imports must be dict(imports=[module names], allow_failed_imports="
                          f"False), got {spec!r}")
    names = [spec.get("imports")] if isinstance(spec.get("imports"), str) else list(spec.get("imports") or [])
    if not all(isinstance(name, str) and name for name in names):
        raise ConfigError(f"{source}: custom_imports.imports must be module names (str), got {names!r}")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    imported = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            message = f"{source}: custom_imports cannot import {name!r}: {type(err).__name__}: {err}"
            if not spec.get("allow_failed_imports", False):
                raise ConfigError(message + " (is it on the Python path, e.g. run from its parent folder?)") from err
            warnings.warn(message + "; going on (allow_failed_imports=True)", stacklevel=2)
            continue
        imported.append(name)
    return imported


# -- file loading --------------------------------------------------------------------------------
def _load_file(path: Path, chain: tuple[Path, ...]) -> dict:
    """Load one config file, resolving its bases; ``chain`` is the inheritance path, for cycle errors."""
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(path):], path))
        raise ConfigError(f"config inheritance cycle: {cycle}")
    source = path.read_text()
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as err:
        raise ConfigError(f"syntax error in config {err.filename}, line {err.lineno}: {err.msg}\n"
                          f"    {(err.text or '').rstrip()}") from err
    base_files = _find_bases(tree, path)
    base_cfg = _combine_bases(path, base_files, (*chain, path))
    own = _exec_config(tree, path, base_cfg)
    return merge_into(own, base_cfg)


def _find_bases(tree: ast.Module, path: Path) -> list[Path]:
    """Read the ``_base_ = ...`` statement (a literal string or list of strings) and drop it from ``tree``."""
    for i, node in enumerate(tree.body):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if any(isinstance(t, ast.Name) and t.id == BASE_KEY for t in targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                raise ConfigError(f"{path}, line {node.lineno}: _base_ must be a string or a list of "
                                  f"strings (literal paths), got {ast.unparse(node.value)}") from None
            del tree.body[i]
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
                raise ConfigError(f"{path}, line {node.lineno}: _base_ must be a string or a list of strings, "
                                  f"got {value!r}")
            return [path.parent / name for name in names]
    return []


def _combine_bases(path: Path, base_files: list[Path], chain: tuple[Path, ...]) -> dict:
    combined: dict = {}
    origin: dict[str, Path] = {}
    for base in base_files:
        if not base.is_file():
            raise ConfigError(f"base config {base} not found (asked for by _base_ in {path})")
        loaded = _load_file(base.resolve(), chain)
        for key, value in loaded.items():
            if key in combined:
                raise ConfigError(f"{path}: key {key!r} is defined in two of its bases, {origin[key]} and "
                                  f"{base}; define it in one base, or override it in {path.name}")
            combined[key] = value
            origin[key] = base
    return combined


def _exec_config(tree: ast.Module, path: Path, base_cfg: dict) -> dict:
    namespace: dict[str, Any] = {BASE_KEY: ConfigDict(copy.deepcopy(base_cfg)), "__file__": str(path)}
    code = compile(tree, str(path), "exec")
    try:
        exec(code, namespace)  # noqa: S102 - configs are the user's own Python files
    except Exception as err:
        if hasattr(err, "add_note"):
            err.add_note(f"while executing config {path}")
        raise
    return {key: _unwrap(value) for key, value in namespace.items() if _is_config_value(key, value)}


def _is_config_value(key: str, value: Any) -> bool:
    if key.startswith("_"):
        return False
    return not (callable(value) or type(value).__name__ == "module")


# -- overrides -----------------------------------------------------------------------------------
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


# -- formatting ----------------------------------------------------------------------------------
def _format(value: Any, indent: int, where: str) -> str:
    """Python source for a config value; ``where`` names the key in errors."""
    pad, inner = " " * indent, " " * (indent + 4)
    if isinstance(value, dict):
        if not value:
            return "dict()"
        if all(isinstance(k, str) and k.isidentifier() and not keyword.iskeyword(k) for k in value):
            items = [f"{inner}{k}={_format(v, indent + 4, f'{where}.{k}')}" for k, v in value.items()]
            return "dict(\n" + ",\n".join(items) + f",\n{pad})"
        items = [f"{inner}{_format(k, indent + 4, where)}: {_format(v, indent + 4, f'{where}.{k}')}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f",\n{pad}}}"
    if isinstance(value, (list, tuple)):
        parts = [_format(v, indent + 4, f"{where}[{i}]") for i, v in enumerate(value)]
        open_, close = ("[", "]") if isinstance(value, list) else ("(", ")")
        one_line = open_ + ", ".join(parts) + ("," if isinstance(value, tuple) and len(parts) == 1 else "") + close
        if len(one_line) + indent <= 100 and "\n" not in one_line:
            return one_line
        return open_ + "\n" + "".join(f"{inner}{p},\n" for p in parts) + pad + close
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    if value is None or isinstance(value, (bool, int, float, str)):
        return pprint.pformat(value, width=1000)
    raise ConfigError(f"config value {where} = {value!r} ({type(value).__name__}) cannot be written to a "
                      f"Python config; use plain dicts, lists, tuples, strings and numbers")
