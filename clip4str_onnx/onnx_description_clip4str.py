"""What an exported CLIP4STR directory holds, as `export_onnx` writes it and the ONNX reader reads it: the description
file, its graphs and the settings of the reading loop ([`CLIP4STROnnxConfig`]). An exported directory carries a
copy."""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, dataclass, fields

# `__package__`, not `try`/`except ImportError`: an exported copy run where this project is installed must still not
# import it (nor torch).
if __package__:  # clip4str_onnx
    from modeling_clip4str.reading_clip4str import ReadingSizes
else:  # the copy in an exported directory, imported as a top-level module (no package, no torch)
    from reading_clip4str import ReadingSizes

DESCRIPTION_FILE = "clip4str_onnx.json"
"""The JSON that describes an exported directory: settings, graphs (files, inputs, outputs) and their checks."""
FORMAT_VERSION = 1
PRECISIONS = ("fp32", "int8")
BRANCHES = ("visual", "cross")
IMAGE_ENCODER = "image_encoder"
CAPTION_ENCODER = "caption_encoder"
CAPTION_TOKENIZER_FILE = "caption_tokenizer/tokenizer.json"


def step_graph(branch: str) -> str:
    """Name of a decoder's left-to-right step graph (`branch`: "visual" or "cross")."""
    return f"{branch}_decoder_step"


def cloze_graph(branch: str) -> str:
    """Name of a decoder's cloze (refinement) graph."""
    return f"{branch}_decoder_cloze"


GRAPH_NAMES = (IMAGE_ENCODER, CAPTION_ENCODER) + tuple(
    name(branch) for branch in BRANCHES for name in (step_graph, cloze_graph)
)


@dataclass(frozen=True)
class CLIP4STROnnxConfig(ReadingSizes):
    """What the decoding loops need of the model's configuration (the `settings` of [`DESCRIPTION_FILE`]).

    The names are those of `CLIP4STRConfig`, so code that reads `model.config.charset` or `.max_label_length` works
    on either model."""

    charset: str
    caption_charset: str
    max_label_length: int
    context_length: int
    refine_iters: int
    decode_ar: bool
    image_input_size: tuple[int, int]
    caption_eos_token_id: int
    decoder_num_layers: int
    decoder_num_heads: int
    decoder_head_dim: int
    benchmark_protocol: str = "pipeline"  # exports written before it was recorded: models trained here
    # The model's special ids, as the export records them (exports written before: `CLIP4STRConfig`'s rule).
    eos_token_id: int | None = None
    bos_token_id: int | None = None
    pad_token_id: int | None = None

    @classmethod
    def from_dict(cls, settings: dict) -> "CLIP4STROnnxConfig":
        values = {field.name: settings[field.name] for field in fields(cls) if field.name in settings
                  or field.default is MISSING}
        values["image_input_size"] = tuple(values["image_input_size"])
        size = len(values["charset"])
        for name, value in (("eos_token_id", 0), ("bos_token_id", size + 1), ("pad_token_id", size + 2)):
            values.setdefault(name, value)
        return cls(**values)


def read_description(directory) -> dict:
    """The [`DESCRIPTION_FILE`] of an exported directory, checked for a format this code reads."""
    path = os.path.join(os.fspath(directory), DESCRIPTION_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{directory} is not an exported CLIP4STR directory: it has no {DESCRIPTION_FILE}. Export one with "
            "`python -m clip4str_onnx.export_onnx MODEL_DIR OUT_DIR`."
        )
    with open(path, encoding="utf-8") as handle:
        description = json.load(handle)
    if description.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has format version {description.get('format_version')}; this code reads version "
            f"{FORMAT_VERSION}. Export the model again with this version of `export_onnx`."
        )
    missing = [name for name in GRAPH_NAMES if name not in description.get("graphs", {})]
    if missing:
        raise ValueError(f"{path} does not describe the graphs {', '.join(missing)}; export the model again.")
    return description


def is_exported_directory(path) -> bool:
    """Whether `path` is a directory written by `export_onnx` (for loaders that accept either kind of model)."""
    return os.path.isfile(os.path.join(os.fspath(path), DESCRIPTION_FILE))


__all__ = [
    "BRANCHES",
    "CAPTION_ENCODER",
    "CAPTION_TOKENIZER_FILE",
    "CLIP4STROnnxConfig",
    "DESCRIPTION_FILE",
    "FORMAT_VERSION",
    "GRAPH_NAMES",
    "IMAGE_ENCODER",
    "PRECISIONS",
    "cloze_graph",
    "is_exported_directory",
    "read_description",
    "step_graph",
]
