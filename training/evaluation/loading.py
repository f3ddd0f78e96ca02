"""Loading a saved CLIP4STR and its processor: the one loader of `training/run_str.py` (fine-tuning) and
`training/evaluate_str.py`, which also reads a directory exported to ONNX."""

from __future__ import annotations

import os

from transformers import AutoModel, AutoProcessor

import modeling_clip4str  # noqa: F401  (registers CLIP4STR with the Auto classes)
from clip4str_onnx.onnx_clip4str import PRECISIONS, is_exported_directory


def load_model_and_processor(model_name_or_path: str, trust_remote_code: bool = False,
                             onnx_precision: str | None = None, **hub_kwargs):
    """`AutoModel` and `AutoProcessor` of a CLIP4STR directory or Hub id, or the ONNX Runtime model of a local
    directory that `python -m clip4str_onnx.export_onnx` wrote.

    This package's classes are registered with the Auto classes, so its own code is used unless `trust_remote_code`
    asks for the code saved with the checkpoint. `hub_kwargs` (`cache_dir`, `revision`, `token`) go to both
    `from_pretrained` calls.

    Args:
        onnx_precision: which graphs of an exported directory to run, "fp32" (default) or "int8"; an error for a
            model that is not an exported directory.

    Returns:
        `(model, processor)`: the PyTorch model in eval mode (as `from_pretrained` leaves it; the Trainer switches
        modes itself), or a [`~clip4str_onnx.onnx_clip4str.CLIP4STROnnxModel`] with the PyTorch processor saved
        beside its graphs (its `batch_decode` reads the ONNX model's numpy output as it reads tensors).
    """
    if os.path.isdir(model_name_or_path) and is_exported_directory(model_name_or_path):
        from clip4str_onnx.onnx_clip4str import CLIP4STROnnxModel  # needs onnxruntime: the `onnx` extra

        model = CLIP4STROnnxModel.from_pretrained(model_name_or_path, precision=onnx_precision or "fp32")
        return model, AutoProcessor.from_pretrained(model_name_or_path)
    if onnx_precision is not None:
        raise ValueError(
            f"An ONNX precision ({onnx_precision!r}) was asked for, but {model_name_or_path} is not a directory "
            "exported to ONNX. Export it first: `python -m clip4str_onnx.export_onnx MODEL_DIR OUT_DIR "
            "--quantize int8`."
        )
    model = AutoModel.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code, **hub_kwargs)
    processor = AutoProcessor.from_pretrained(model_name_or_path, trust_remote_code=trust_remote_code, **hub_kwargs)
    return model, processor


__all__ = ["PRECISIONS", "load_model_and_processor"]
