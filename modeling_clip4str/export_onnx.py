"""Moved to `clip4str_onnx.export_onnx`; this module keeps `python -m modeling_clip4str.export_onnx` working."""

import sys

from clip4str_onnx.export_onnx import main

if __name__ == "__main__":
    sys.exit(main())
