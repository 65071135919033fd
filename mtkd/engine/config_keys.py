"""The config keys the engine and the tools read; any other key is a typo, reported before a run starts.

A researcher who writes ``max_epoch=1`` or ``grad_clip=dict(max_nrom=1.0)`` must not get a run that silently
did something else. Component dicts (``model``, ``optimizer``, datasets, metrics...) are checked by their
constructors; this checks the top level and the runtime dicts read here. A variable of your own that
other keys are built from: give it a leading underscore (``_pipeline = [...]``), it is then not a key.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping

from mtkd.config import Config, ConfigError

ENGINE_KEYS = {
    "model", "train_dataloader", "val_dataloader", "test_dataloader", "optimizer", "param_scheduler", "train_cfg",
    "seed", "deterministic", "device", "work_dir", "log_interval", "amp", "channels_last", "grad_clip", "ema",
    "checkpoint", "metrics", "drawers", "num_vis_images", "custom_imports",
}
# keys of the _base_/datasets configs that child configs and the tools read (mmdet's names where it has them)
CONVENTION_KEYS = {"data_root", "dataset_type", "input_size", "train_pipeline", "test_pipeline", "norm", "labels_file",
                   "synthetic_data"}
RUNTIME_KEYS = {  # the dicts the engine reads key by key
    "train_cfg": {"max_epochs", "val_interval"},
    "grad_clip": {"max_norm", "norm_type"},
    "checkpoint": {"interval", "best_metric", "patience"},
    "ema": {"enabled", "decay"},
    "amp": {"enabled", "dtype"},
    "param_scheduler": {"warmup", "main"},
    "custom_imports": {"imports", "allow_failed_imports"},
}
PRIVATE_HINT = ("a variable of your own that other keys are built from needs a leading underscore "
                "(e.g. _pipeline = [...]): it is then not a config key")


def check_config_keys(cfg: Config) -> None:
    """Raise one ConfigError listing every unknown key: where it came from and the closest known key."""
    known = ENGINE_KEYS | CONVENTION_KEYS
    problems = [_unknown(key, sorted(known), cfg) for key in cfg.keys() if key not in known]
    for name, allowed in RUNTIME_KEYS.items():
        value = cfg.get(name)
        if isinstance(value, Mapping):
            problems += [_unknown(f"{name}.{key}", sorted(f"{name}.{k}" for k in allowed), cfg)
                         for key in value if key not in allowed]
    if problems:
        raise ConfigError("unknown config keys (typos are errors, not ignored):\n  " + "\n  ".join(problems)
                          + f"\n({PRIVATE_HINT})")


def _unknown(dotted: str, known: list[str], cfg: Config) -> str:
    """One line: the key, the file it came from, the closest known key (a top-level ``max_epochs`` is also
    compared with the runtime dicts' keys: ``train_cfg.max_epochs``)."""
    options = known + ([f"{n}.{k}" for n, keys in RUNTIME_KEYS.items() for k in sorted(keys)] if "." not in dotted else [])
    last = dotted.split(".")[-1]
    ratio, best = max((difflib.SequenceMatcher(None, last, o.split(".")[-1]).ratio(), o) for o in options)
    hint = f"; did you mean {best!r}?" if ratio >= 0.6 else f"; known: {', '.join(known)}"
    return f"{dotted!r} (set in {cfg.origin(dotted)}){hint}"
