"""Writing a config back as Python source (``Config.dump``, ``Config.pretty_text``)."""
from __future__ import annotations

import keyword
import math
import pprint
from typing import Any

from mtkd.config.dicts import ConfigError


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
