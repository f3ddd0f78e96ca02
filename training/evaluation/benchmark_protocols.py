"""The two ways `training/evaluate_str.py` reads a model for scoring (its `--protocol`).

| | `reference` (the reference's test.py) | `pipeline` |
|---|---|---|
| images | resized as the processor resizes them, normalised with 0.5 per channel | the model's processor, as saved |
| captions of the cross-modal branch | filtered by the comparison charset | filtered by the model's `caption_charset` |
| "Label length" column | mean length of the *prediction* after the charset rule | mean length of the label |

Both score the same samples with the same label rule, accuracy, 1 - NED and word confidence. The reference's test.py
loads a model with its comparison charset as the caption charset and normalises test images with 0.5 per channel
(CLIP's mean and std serve its training and validation only); the published CLIP4STR numbers were computed that way.
`pipeline` reads a model exactly as `pipeline("image-to-text")` and evaluation during training read it.

`auto` (evaluate_str's default) takes the model's `config.benchmark_protocol`: `reference` for checkpoints converted
from the reference (so their default table is comparable with the paper's), `pipeline` for models trained here (so
their default score equals the one evaluation during training reported).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from modeling_clip4str.image_processing_clip4str import normalization_values


@dataclass(frozen=True)
class BenchmarkProtocol:
    """How images are prepared and captions filtered, and what the length column holds.

    Attributes:
        name: `"reference"` or `"pipeline"`.
        normalization: a name of [`~modeling_clip4str.image_processing_clip4str.NORMALIZATIONS`] that replaces the
            processor's mean and std, or `None` to keep them.
        captions_follow_comparison: whether captions are filtered by the comparison charset instead of the model's
            caption charset.
        length_column: the score the table's "Label length" column shows: `"mean_prediction_length"` (test.py's
            column) or `"mean_label_length"`.
    """

    name: str
    normalization: str | None
    captions_follow_comparison: bool
    length_column: str

    def describe(self) -> str:
        if self.name == "reference":
            return ("the reference's test.py: images normalised with 0.5 per channel, captions filtered by the "
                    "comparison charset, label length = mean length of the adapted predictions")
        return "the pipeline's reading: the model's processor and caption charset, label length = mean label length"


PROTOCOLS = {
    "reference": BenchmarkProtocol("reference", "reference-test", True, "mean_prediction_length"),
    "pipeline": BenchmarkProtocol("pipeline", None, False, "mean_label_length"),
}
PROTOCOL_CHOICES = ("auto", *PROTOCOLS)


def resolve_protocol(name: str | BenchmarkProtocol, model) -> BenchmarkProtocol:
    """The protocol `name` stands for; `"auto"` is the model's `config.benchmark_protocol` ("pipeline" when the model
    records none, as models saved before it existed)."""
    if isinstance(name, BenchmarkProtocol):
        return name
    if name == "auto":
        name = getattr(getattr(model, "config", None), "benchmark_protocol", None) or "pipeline"
    if name not in PROTOCOLS:
        raise ValueError(f"Unknown benchmark protocol {name!r}; choose one of {', '.join(PROTOCOL_CHOICES)}.")
    return PROTOCOLS[name]


def processor_for(protocol: BenchmarkProtocol, processor):
    """`processor`, or a copy of it whose image processor normalises as `protocol` asks (the original is untouched)."""
    if protocol.normalization is None:
        return processor
    mean, std = normalization_values(protocol.normalization)
    processor = copy.copy(processor)
    processor.image_processor = copy.deepcopy(processor.image_processor)
    processor.image_processor.image_mean, processor.image_processor.image_std = mean, std
    return processor


@contextmanager
def captions_for(protocol: BenchmarkProtocol, model, comparison_charset: str) -> Iterator[None]:
    """While inside, `model` (PyTorch or ONNX Runtime) filters its captions as `protocol` asks; restored after."""
    config = getattr(model, "config", None)
    previous = getattr(config, "caption_charset", None)
    if not protocol.captions_follow_comparison or previous is None or previous == comparison_charset:
        yield
        return
    if dataclasses.is_dataclass(config):  # the ONNX reader's settings are frozen
        model.config = dataclasses.replace(config, caption_charset=comparison_charset)
    else:
        config.caption_charset = comparison_charset
    try:
        yield
    finally:
        if dataclasses.is_dataclass(config):
            model.config = config
        else:
            config.caption_charset = previous


def protocol_record(protocol: BenchmarkProtocol, processor, caption_charset: str | None) -> dict:
    """What the results' `protocol` entry records of the reading: name, mean and std, caption charset, length column
    (`None` for what a stand-in model or processor does not have)."""
    image_processor = getattr(processor, "image_processor", None)

    def values(name):
        found = getattr(image_processor, name, None)
        return None if found is None else [float(value) for value in found]

    return {
        "name": protocol.name,
        "image_mean": values("image_mean"),
        "image_std": values("image_std"),
        "caption_charset": caption_charset,
        "length_column": protocol.length_column,
    }


__all__ = [
    "PROTOCOLS",
    "PROTOCOL_CHOICES",
    "BenchmarkProtocol",
    "captions_for",
    "processor_for",
    "protocol_record",
    "resolve_protocol",
]
