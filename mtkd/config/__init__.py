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
from mtkd.config.dicts import BASE_KEY, DELETE_KEY, ConfigDict, ConfigError, merge_into
from mtkd.config.loading import CUSTOM_IMPORTS_KEY, Config, import_custom_modules
from mtkd.config.options import DictAction, parse_cfg_options, parse_value

__all__ = ["BASE_KEY", "CUSTOM_IMPORTS_KEY", "Config", "ConfigDict", "ConfigError", "DELETE_KEY", "DictAction",
           "import_custom_modules", "merge_into", "parse_cfg_options", "parse_value"]
