"""Deployment of a trained model: ONNX export with metadata, and running the .onnx like a MultiTaskModel.

Nothing here imports onnx or onnxruntime at import time (they are the ``onnx`` extra); see mtkd.deploy.onnx.
"""
from mtkd.deploy.metadata import (DeployError, build_metadata, check_input_size, config_input_size,  # noqa: F401
                                  model_stride)
from mtkd.deploy.onnx import (DEFAULT_OPSET, OnnxModel, export_onnx, load_source, read_metadata,  # noqa: F401
                              rebuild_model)
