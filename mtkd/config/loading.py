"""The Config object and loading Python config files with ``_base_`` inheritance and ``custom_imports``."""
from __future__ import annotations

import ast
import copy
import importlib
import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mtkd.config.dicts import BASE_KEY, ConfigDict, ConfigError, _unwrap, merge_into
from mtkd.config.options import _set_dotted, check_override
from mtkd.config.text import _format

CUSTOM_IMPORTS_KEY = "custom_imports"


class Config:
    """A loaded config: attribute and item access to a :class:`ConfigDict`, plus merge and dump."""

    def __init__(self, cfg_dict: Mapping | None = None, filename: str | os.PathLike | None = None,
                 origins: Mapping[str, str] | None = None):
        object.__setattr__(self, "_cfg", ConfigDict(cfg_dict or {}))
        object.__setattr__(self, "filename", None if filename is None else str(filename))
        object.__setattr__(self, "_origins", dict(origins or {}))

    def origin(self, dotted: str) -> str:
        """Where a key's value came from: the config file that set it last, ``--cfg-options``, or the
        config's own name when unknown (a config stored in a checkpoint)."""
        return self._origins.get(dotted) or self.filename or "the config"

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def fromfile(cls, path: str | os.PathLike, import_custom: bool = True) -> "Config":
        """Load a Python config file and everything it inherits, then import its ``custom_imports``."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        values, origins = _load_file(path.resolve(), chain=())
        cfg = cls(values, filename=path, origins=origins)
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
        return Config(copy.deepcopy(self._cfg), filename=self.filename, origins=self._origins)

    def to_dict(self) -> dict:
        """The config as plain dicts, lists and tuples."""
        return self._cfg.to_dict()

    # -- overrides ----------------------------------------------------------------------------
    def merge_from_dict(self, options: Mapping[str, Any], source: str = "--cfg-options") -> None:
        """Apply ``{"a.b.c": value}`` overrides; missing dicts are created, ``a.0.b`` indexes a list.

        A value that cannot be meant for its key (an empty string, or a string where the config holds a
        number or a bool) is a ConfigError naming both, as ``1e-3x`` for ``optimizer.lr`` would be.
        """
        for dotted, value in options.items():
            check_override(self._cfg, str(dotted), value, source)
            _set_dotted(self._cfg, str(dotted), value)
            self._origins.update(key_origins({str(dotted): value}, source))

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


def _load_file(path: Path, chain: tuple[Path, ...]) -> tuple[dict, dict[str, str]]:
    """Load one config file, resolving its bases; ``chain`` is the inheritance path, for cycle errors.

    Returns the merged values and where each dotted key was last set (``{"train_cfg.max_epochs": file}``).
    """
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
    base_cfg, origins = _combine_bases(path, base_files, (*chain, path))
    own = _exec_config(tree, path, base_cfg)
    return merge_into(own, base_cfg), {**origins, **key_origins(own, str(path))}


def key_origins(values: Mapping, source: str, prefix: str = "") -> dict[str, str]:
    """``{dotted key: source}`` for every key of ``values`` and of the dicts nested in it."""
    found = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        found[dotted] = source
        if isinstance(value, Mapping):
            found.update(key_origins(value, source, dotted + "."))
    return found


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


def _combine_bases(path: Path, base_files: list[Path], chain: tuple[Path, ...]) -> tuple[dict, dict[str, str]]:
    combined: dict = {}
    origin: dict[str, Path] = {}
    origins: dict[str, str] = {}
    for base in base_files:
        if not base.is_file():
            raise ConfigError(f"base config {base} not found (asked for by _base_ in {path})")
        loaded, loaded_origins = _load_file(base.resolve(), chain)
        origins.update(loaded_origins)
        for key, value in loaded.items():
            if key in combined:
                raise ConfigError(f"{path}: key {key!r} is defined in two of its bases, {origin[key]} and "
                                  f"{base}; define it in one base, or override it in {path.name}")
            combined[key] = value
            origin[key] = base
    return combined, origins


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
