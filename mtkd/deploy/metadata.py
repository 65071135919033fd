"""What an exported model carries besides its graph: the metadata a user needs to run it without mtkd.

Every value of an mtkd .onnx file's ``metadata_props`` is JSON (``json.loads`` each one):
    mtkd_version, format       the writer (mtkd's version) and this layout's version (``FORMAT``)
    tasks                      the output names, in output order: one per task, its head's raw output
    input                      ``{"name": "img", "shape": [B, 3, H, W], "layout": ...}``, B "batch" when dynamic
    input_size                 ``[H, W]`` the graph was exported for
    mean, std                  the normalization: ``img = (rgb / 255 - mean) / std``, per RGB channel
    outputs                    ``{task: shape}`` of each raw output (B as in ``input``)
    heads                      ``{task: output_signature() (+ deploy_info())}``: what a raw output indexes,
                               e.g. the det head's strides and box encoding
    num_classes, class_names   ``{task: int}`` and ``{task: [names]}`` of the training data
    model_config, config       the MultiTaskModel's config and the source checkpoint's whole merged config
    source_checkpoint, opset   where it was exported from, the ONNX opset
"""
from __future__ import annotations

import copy
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

FORMAT = 1
INPUT_NAME = "img"
LAYOUT = "float32 [B, 3, H, W], RGB, img = (rgb / 255 - mean) / std"
REQUIRED = ("mtkd_version", "tasks", "input_size", "mean", "std", "num_classes", "model_config", "config")
SPLITS = ("test", "val")  # whose pipeline gives the input size and normalization, in this order


class DeployError(ValueError):
    """An export or an exported file that cannot be used; the message names the file and what is wrong."""


def encode_metadata(metadata: Mapping[str, Any]) -> dict[str, str]:
    """``{key: JSON text}`` for ``metadata_props`` (tuples become lists; anything else unserializable, its repr)."""
    return {str(key): json.dumps(value, default=repr) for key, value in metadata.items()}


def decode_metadata(props: Mapping[str, str], path: str | Path) -> dict[str, Any]:
    """The metadata of an mtkd .onnx file from its ``metadata_props``; a DeployError naming what is missing."""
    missing = [key for key in REQUIRED if key not in props]
    if missing:
        has = f"its metadata has only {sorted(props)[:8]}" if props else "it has no metadata_props at all"
        raise DeployError(f"{path} has no mtkd metadata: missing {missing} ({has}); export the model with "
                          f"tools/export.py, which records the config, classes and normalization needed to "
                          f"evaluate it")
    decoded = {}
    for key, text in props.items():
        try:
            decoded[key] = json.loads(text)
        except json.JSONDecodeError as err:
            if key in REQUIRED:
                raise DeployError(f"{path}: metadata {key!r} is not JSON ({err}): {text[:80]!r}") from err
            decoded[key] = text   # a key someone else added: kept as text
    return decoded


def split_pipeline(config: Mapping[str, Any]) -> list[dict]:
    """The evaluation pipeline of a stored config: the test split's, else the val split's, else ``[]``."""
    for split in SPLITS:
        dataset = (config.get(f"{split}_dataloader") or {}).get("dataset") or {}
        if dataset.get("pipeline"):
            return [dict(step) for step in dataset["pipeline"]]
    return []


def config_input_size(config: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(H, W)`` the model sees at evaluation: the last fixed-size step of the evaluation pipeline (``height``/
    ``width``, or ``min_height``/``min_width`` of a pad), else the config's ``input_size``; None if neither."""
    size = None
    for step in split_pipeline(config):
        for keys in (("height", "width"), ("min_height", "min_width")):
            if all(isinstance(step.get(k), int) for k in keys):
                size = (step[keys[0]], step[keys[1]])
    if size is None and config.get("input_size") is not None:
        given = config["input_size"]
        size = (given, given) if isinstance(given, int) else tuple(given)
    return None if size is None else (int(size[0]), int(size[1]))


def with_input_size(config: Mapping[str, Any], size: Sequence[int]) -> dict[str, Any]:
    """``config`` itself when its evaluation input size is ``size``; else a copy whose test/val pipelines resize
    (and pad) to ``size``, since an exported graph runs at the one input size it was exported for."""
    if config_input_size(config) == tuple(size):
        return dict(config)
    config = copy.deepcopy(dict(config))
    for split in SPLITS:
        for step in ((config.get(f"{split}_dataloader") or {}).get("dataset") or {}).get("pipeline") or []:
            for keys in (("height", "width"), ("min_height", "min_width")):
                if all(isinstance(step.get(k), int) for k in keys):
                    step[keys[0]], step[keys[1]] = (int(v) for v in size)
    if "input_size" in config:
        config["input_size"] = [int(v) for v in size]
    return config


def model_stride(model: nn.Module) -> int:
    """The largest stride of a MultiTaskModel's feature maps (backbone and neck)."""
    strides = [*getattr(model.backbone, "strides", []), *getattr(model.neck, "strides", [])]
    return int(max(strides, default=1))


def check_input_size(size: Sequence[int], stride: int) -> None:
    """An input size must be a multiple of the largest stride (else levels are cropped unevenly)."""
    if len(size) != 2 or any(int(v) <= 0 or int(v) % stride for v in size):
        fit = "x".join(str(max(stride, -(-int(v) // stride) * stride)) for v in size)
        raise DeployError(f"input size {'x'.join(str(v) for v in size)} is not a multiple of the model's largest "
                          f"stride {stride}: use e.g. --input-size {fit.replace('x', ' ')}")


def head_info(model: nn.Module) -> dict[str, dict]:
    """``{task: head.output_signature()}`` updated with ``head.deploy_info()`` where a head has one."""
    info = {}
    for task, head in model.heads.items():
        info[task] = dict(head.output_signature())
        if hasattr(head, "deploy_info"):
            info[task].update(head.deploy_info())
    return info


def normalization(config: Mapping[str, Any]) -> tuple[tuple, tuple]:
    """Mean and std (per RGB channel, on ``rgb / 255``) of the evaluation pipeline."""
    from mtkd.data.transforms import Pipeline

    return Pipeline(split_pipeline(config)).normalization()


def build_metadata(ckpt: Mapping[str, Any], model: nn.Module, input_size: Sequence[int],
                   source: str | Path = "") -> dict[str, Any]:
    """The metadata of an export of ``model`` (the inference model of checkpoint ``ckpt``); see the module doc.

    ``export_onnx`` adds ``input``, ``outputs`` and ``opset``, which depend on the graph.
    """
    from mtkd import __version__

    mean, std = normalization(ckpt["config"])
    return {"mtkd_version": __version__, "format": FORMAT, "tasks": list(model.tasks),
            "input_size": [int(v) for v in input_size], "mean": list(mean), "std": list(std),
            "heads": head_info(model), "num_classes": dict(ckpt["num_classes"]),
            "class_names": dict(ckpt.get("class_names") or {}), "model_config": ckpt["model_config"],
            "config": ckpt["config"], "source_checkpoint": str(source)}
