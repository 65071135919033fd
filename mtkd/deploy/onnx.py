"""ONNX deployment: export the inference model with its metadata, read it back, run the .onnx like a model.

The .onnx has one input ``img`` float32 ``[B, 3, H, W]`` (normalized, see mtkd.deploy.metadata) and one output
per task, named after it: the head's raw output of the output contract (mtkd.structures), ``feats`` dropped.
Decoding, NMS and upsampling stay outside the graph, in the heads' ``predict``, as for a checkpoint.

The graph is traced by torch's TorchScript exporter (``dynamo=False``): it needs only ``onnx``, exports the
built-in models in seconds and matches PyTorch to ~1e-6. onnx and onnxruntime are the ``onnx`` extra
(``pip install -e '.[onnx]'``), imported only when used, so mtkd works without them.
"""
from __future__ import annotations

import importlib
import io
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtkd.checkpoint import load_checkpoint
from mtkd.config import import_custom_modules
from mtkd.deploy.metadata import (INPUT_NAME, LAYOUT, DeployError, decode_metadata, encode_metadata,
                                  with_input_size)
from mtkd.registry import MODELS

DEFAULT_OPSET = 17
INSTALL_HINT = "pip install -e '.[onnx]'"
ONNX_SUFFIX = ".onnx"


def require(module: str):
    """Import ``onnx``/``onnxruntime`` on first use; a DeployError saying how to install them when missing."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise DeployError(f"{module} is not installed, and ONNX export and inference need it: {INSTALL_HINT} "
                          f"(the onnx extra: onnx, onnxruntime)") from err


class TaskOutputs(nn.Module):
    """``img [B, 3, H, W]`` -> the tuple of the model's raw outputs in ``model.tasks`` order (ONNX outputs are
    positional, named after the tasks); the neck's ``feats`` are left out."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.tasks = model, tuple(model.tasks)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = self.model(img)
        return tuple(outputs[task] for task in self.tasks)


def _trace_to_onnx(module: nn.Module, args: tuple, opset: int, input_names=None, output_names=None,
                   dynamic_axes=None) -> bytes:
    """``torch.onnx.export`` (TorchScript exporter, eval mode) into memory; its deprecation/tracer warnings muted."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)      # "legacy TorchScript-based ONNX export"
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shapes become constants: the input size is fixed
        torch.onnx.export(module, args, buffer, input_names=input_names, output_names=output_names,
                          opset_version=opset, dynamic_axes=dynamic_axes, do_constant_folding=True, dynamo=False)
    return buffer.getvalue()


def export_onnx(model: nn.Module, path: str | os.PathLike, input_size: Sequence[int], dynamic_batch: bool = False,
                opset: int = DEFAULT_OPSET, metadata: Mapping[str, Any] | None = None) -> Path:
    """Export ``model`` (a MultiTaskModel) in eval mode to ``path`` and check the file with ``onnx.checker``.

    Input ``img [B, 3, H, W]`` at ``input_size = (H, W)``, B fixed at 1 unless ``dynamic_batch``; one output
    per task. ``metadata`` (see mtkd.deploy.metadata) goes into ``metadata_props`` with the graph's ``input``,
    ``outputs`` and ``opset``. An op that does not export is a DeployError naming the module that holds it.
    """
    onnx = require("onnx")
    wrapper, was_training = TaskOutputs(model).eval(), model.training
    img = torch.zeros(1, 3, *(int(v) for v in input_size))
    axes = {name: {0: "batch"} for name in (INPUT_NAME, *wrapper.tasks)} if dynamic_batch else None
    try:
        with torch.no_grad():
            data = _trace_to_onnx(wrapper, (img,), opset, [INPUT_NAME], list(wrapper.tasks), axes)
    except Exception as err:   # the exporter raises UnsupportedOperatorError, SymbolicValueError, RuntimeError...
        where = locate_unexportable(model.eval(), img, opset)
        raise DeployError(f"cannot export the model to ONNX (opset {opset}): {where or 'the model'} fails: "
                          f"{_first_line(err)}") from err
    finally:
        model.train(was_training)
    proto = onnx.load_model_from_string(data)
    props = {**(metadata or {}), **graph_description(proto), "opset": opset}
    for key, value in encode_metadata(props).items():
        proto.metadata_props.add(key=key, value=value)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as err:
        path.unlink(missing_ok=True)
        raise DeployError(f"onnx.checker rejects the exported {path}: {_first_line(err)}") from err
    return path


def graph_description(proto) -> dict[str, Any]:
    """``input`` (name, shape, layout) and ``outputs`` ``{name: shape}`` of an ONNX graph; a symbolic dim by name."""
    def shape(value_info) -> list:
        return [dim.dim_param or dim.dim_value for dim in value_info.type.tensor_type.shape.dim]

    (graph_input,) = [v for v in proto.graph.input if v.name == INPUT_NAME]
    return {"input": {"name": INPUT_NAME, "shape": shape(graph_input), "layout": LAYOUT},
            "outputs": {v.name: shape(v) for v in proto.graph.output}}


def locate_unexportable(model: nn.Module, img: torch.Tensor, opset: int) -> str | None:
    """``"module heads.cls.post (Erfinv)"``: the deepest submodule that fails to export on its own.

    Each module's inputs are recorded in one forward; then, from the top, the first child that fails to export
    alone is descended into (containers that are never called, e.g. a ModuleDict, are looked into). None when
    no submodule fails alone (the failure is in how they are combined).
    """
    try:
        found = _failing_child(model, "", _record_inputs(model, img), opset)
    except Exception:   # noqa: BLE001  the search is best effort: the caller reports the exporter's error
        return None
    return f"module {found[0]} ({type(found[1]).__name__})" if found else None


def _failing_child(module: nn.Module, name: str, inputs: Mapping[str, tuple], opset: int):
    """``(name, module)`` of the deepest descendant of ``module`` that fails to export alone, or None."""
    for child, sub in module.named_children():
        full = f"{name}.{child}" if name else child
        if full not in inputs:    # never called itself (a container): its children may be
            found = _failing_child(sub, full, inputs, opset)
        elif not _exports(sub, inputs[full], opset):
            found = _failing_child(sub, full, inputs, opset) or (full, sub)
        else:
            found = None
        if found:
            return found
    return None


def _record_inputs(model: nn.Module, img: torch.Tensor) -> dict[str, tuple]:
    """``{module name: positional args of its first call}`` in one forward of ``model``."""
    inputs: dict[str, tuple] = {}
    hooks = [module.register_forward_pre_hook(lambda _m, args, name=name: inputs.setdefault(name, args))
             for name, module in model.named_modules() if name]
    try:
        with torch.no_grad():
            model(img)
    finally:
        for hook in hooks:
            hook.remove()
    return inputs


def _exports(module: nn.Module, args: tuple, opset: int) -> bool:
    try:
        with torch.no_grad():
            _trace_to_onnx(module, args, opset)
    except Exception:   # noqa: BLE001  any failure counts: only which module fails matters here
        return False
    return True


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0][:300] if lines else 'no message'}"


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The decoded mtkd metadata of an .onnx file (see mtkd.deploy.metadata); a DeployError when it has none."""
    onnx = require("onnx")
    path = Path(path)
    if not path.is_file():
        raise DeployError(f"ONNX file not found: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:   # noqa: BLE001  protobuf's DecodeError and friends
        raise DeployError(f"cannot read {path} as an ONNX model ({_first_line(err)})") from err
    return decode_metadata({prop.key: prop.value for prop in proto.metadata_props}, path)


def rebuild_model(metadata: Mapping[str, Any], path: str | os.PathLike) -> nn.Module:
    """The MultiTaskModel that ``model_config`` and ``num_classes`` describe, randomly initialized, eval mode
    (only its heads' ``predict``, ``batch_keys`` and class counts are used)."""
    import_custom_modules(metadata["config"], f"the config stored in {path}")
    try:
        model = MODELS.build(metadata["model_config"], num_classes=dict(metadata["num_classes"]))
    except (KeyError, TypeError, ValueError) as err:
        raise DeployError(f"{path}: its model_config does not build a model here: {_first_line(err)}") from err
    return model.eval()


class OnnxModel(nn.Module):
    """An exported .onnx run by onnxruntime on CPU, with what the engine and tools use of a MultiTaskModel.

    ``model(img [B, 3, H, W]) -> {task: raw}`` runs the graph (a graph with a fixed batch of 1 image by image);
    ``tasks``, ``heads``, ``num_classes``, ``predict`` and ``parameters()`` are those of the MultiTaskModel
    rebuilt from the metadata (random weights: decoding and NMS only), so ``evaluate`` and ``tools/test.py``
    treat it as a checkpoint's model. It cannot be trained.
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        super().__init__()
        ort = require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise DeployError(f"ONNX file not found: {self.path}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:   # noqa: BLE001  onnxruntime raises its own Fail/InvalidGraph/... types
            raise DeployError(f"onnxruntime cannot load {self.path}: {_first_line(err)}") from err
        self.metadata = decode_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        self.tasks: tuple[str, ...] = tuple(self.metadata["tasks"])
        self.input_size = tuple(int(v) for v in self.metadata["input_size"])
        self._check_graph()
        self.reference = rebuild_model(self.metadata, self.path)
        batch = self.session.get_inputs()[0].shape[0]
        self.fixed_batch = batch if isinstance(batch, int) and batch > 0 else None
        super().train(False)

    def _check_graph(self) -> None:
        names = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if names != [INPUT_NAME] or sorted(outputs) != sorted(self.tasks):
            raise DeployError(f"{self.path}: the graph has inputs {names} and outputs {outputs}, but its metadata "
                              f"expects input [{INPUT_NAME!r}] and one output per task {list(self.tasks)}")

    @property
    def heads(self) -> nn.ModuleDict:
        return self.reference.heads

    @property
    def num_classes(self) -> dict[str, int]:
        return self.reference.num_classes

    def train(self, mode: bool = True) -> "OnnxModel":
        if mode:
            raise RuntimeError(f"OnnxModel ({self.path}) runs an exported graph for inference; it cannot be trained")
        return super().train(False)

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        """``img [B, 3, H, W]`` at the exported size -> ``{task: raw}`` (float32, on ``img``'s device)."""
        if img.dim() != 4 or img.shape[1] != 3 or tuple(img.shape[-2:]) != self.input_size:
            size = "x".join(map(str, self.input_size))
            raise ValueError(f"OnnxModel: {self.path} was exported for img [B, 3, {size.replace('x', ', ')}], got "
                             f"{list(img.shape)}; resize the input to {size}, or export again with "
                             f"tools/export.py --input-size H W")
        array = np.ascontiguousarray(img.detach().float().cpu().numpy())
        step = self.fixed_batch or len(array)
        if len(array) % step:
            raise ValueError(f"OnnxModel: {self.path} takes batches of exactly {step} images, got {len(array)}")
        runs = [self.session.run(list(self.tasks), {INPUT_NAME: array[i:i + step]})
                for i in range(0, len(array), step)]
        return {task: torch.from_numpy(np.concatenate([run[k] for run in runs])).to(img.device)
                for k, task in enumerate(self.tasks)}

    def predict(self, outputs: Mapping[str, Any], batch: Mapping[str, Any]) -> dict[str, Any]:
        """The rebuilt model's ``predict``: each head's decoding (and NMS) of the raw outputs."""
        return self.reference.predict(outputs, batch)

    def checkpoint_view(self) -> dict[str, Any]:
        """The keys of a checkpoint that the tools read (config, model_config, num_classes, class_names); the
        config's evaluation pipelines resize to the exported input size (``--input-size`` at export)."""
        view = {key: self.metadata.get(key) for key in ("model_config", "num_classes", "class_names")}
        return {**view, "config": with_input_size(self.metadata["config"], self.input_size)}


def load_source(path: str | os.PathLike, threads: int | None = None) -> tuple[dict[str, Any], OnnxModel | None]:
    """What tools evaluate: a checkpoint (``load_checkpoint``) and None, or for an ``.onnx`` file the same keys
    from its metadata (``OnnxModel.checkpoint_view``) and the OnnxModel."""
    if Path(path).suffix.lower() != ONNX_SUFFIX:
        return load_checkpoint(path), None
    model = OnnxModel(path, threads)
    return model.checkpoint_view(), model
