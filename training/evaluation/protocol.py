"""The STR benchmark comparison protocol, shared by the Trainer's `compute_metrics` and `training/evaluate_str.py`.

The implementation lives in the `evaluate` metric script `training/evaluation/metrics/str_accuracy/str_accuracy.py`, which must
stay self-contained because `evaluate.load` copies it into its own cache before importing it. This module imports that
script by file path and re-exports its plain functions, so there is exactly one implementation of the protocol.

    >>> from training.evaluation.protocol import compute_str_metrics
    >>> compute_str_metrics(["hello"], ["Hello!"])["accuracy"]
    1.0
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

METRIC_DIR = Path(__file__).resolve().parent / "metrics" / "str_accuracy"
"""Pass this (or the relative path `training/evaluation/metrics/str_accuracy`) to `evaluate.load`."""

_MODULE_NAME = "training._str_accuracy_metric"


def _load_metric_script():
    if _MODULE_NAME in sys.modules:
        return sys.modules[_MODULE_NAME]
    script = METRIC_DIR / "str_accuracy.py"
    if not script.is_file():
        raise ImportError(f"The str_accuracy metric script is missing: expected it at {script}.")
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, script)
    module = importlib.util.module_from_spec(spec)
    # Registered before execution so that classes defined in the script can be pickled and introspected.
    sys.modules[_MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[_MODULE_NAME]
        raise
    return module


_metric = _load_metric_script()

CHARSET_36 = _metric.CHARSET_36
CHARSET_62 = _metric.CHARSET_62
CHARSET_94 = _metric.CHARSET_94
STRScoreAccumulator = _metric.STRScoreAccumulator
compute_str_metrics = _metric.compute_str_metrics
edit_distance = _metric.edit_distance
normalize_for_protocol = _metric.normalize_for_protocol
normalized_edit_distance = _metric.normalized_edit_distance
protocol_charset = _metric.protocol_charset


def evaluation_charset(model_charset: str | None, charset: str | None = None, cased: bool = False,
                       punctuation: bool = False) -> tuple[str, str]:
    """The comparison charset of an evaluation and where it comes from, for evaluation during training and
    `evaluate_str` alike: `charset` as given (`"explicit"`); a model charset that is not ASCII (Vietnamese, Chinese,
    ...) when neither `cased` nor `punctuation` asks for the benchmark's (`"model"`); else the 36-character benchmark
    protocol, widened by `cased` and `punctuation` (`"benchmark"`)."""
    if charset is not None:
        return protocol_charset(charset, cased, punctuation), "explicit"
    if not cased and not punctuation and isinstance(model_charset, str) and not model_charset.isascii():
        return model_charset, "model"
    return protocol_charset(None, cased, punctuation), "benchmark"


def scorable_pairs(predictions, references, charset: str) -> tuple[list[str], list[str]]:
    """The (prediction, reference) pairs whose reference keeps a character under `charset`: a label with none left
    is not scored (the label rule's "empty label", which `evaluate_str` skips too), rather than counted as a match
    for an empty prediction."""
    from modeling_clip4str.labels_clip4str import LabelCleaner

    cleaner = LabelCleaner(charset, max_label_length=None, remove_whitespace=False)
    kept = [(prediction, reference) for prediction, reference in zip(predictions, references)
            if cleaner(reference).text is not None]
    return [prediction for prediction, _ in kept], [reference for _, reference in kept]


def load_metric(**kwargs):
    """`evaluate.load` of the repository's `str_accuracy` metric (offline; `kwargs` go to `evaluate.load`)."""
    import evaluate

    return evaluate.load(str(METRIC_DIR), **kwargs)


__all__ = [
    "CHARSET_36",
    "CHARSET_62",
    "CHARSET_94",
    "METRIC_DIR",
    "STRScoreAccumulator",
    "compute_str_metrics",
    "edit_distance",
    "evaluation_charset",
    "load_metric",
    "normalize_for_protocol",
    "normalized_edit_distance",
    "protocol_charset",
    "scorable_pairs",
]
