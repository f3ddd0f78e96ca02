"""CLIP4STR on ONNX Runtime: the exporter (`python -m clip4str_onnx.export_onnx MODEL_DIR OUT_DIR`, graphs in
`onnx_graphs`) and the reader of an exported directory ([`CLIP4STROnnxModel`], [`CLIP4STROnnxProcessor`]), which
drives the model package's torch-free reading loop over ONNX Runtime sessions.

An exported directory carries copies of `onnx_clip4str.py`, `onnx_description_clip4str.py`,
`onnx_processing_clip4str.py`, `reading_clip4str.py` and `labels_clip4str.py`, so it also reads where neither this
project nor torch is installed (`sys.path.insert(0, OUT_DIR); from onnx_clip4str import CLIP4STROnnxModel`).
"""
