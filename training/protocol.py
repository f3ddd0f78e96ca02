"""The STR benchmark comparison protocol, shared by the Trainer's `compute_metrics` and `training/evaluate_str.py`.

The implementation lives in the `evaluate` metric script `training/metrics/str_accuracy/str_accuracy.py`, which must
stay self-contained because `evaluate.load` copies it into its own cache before importing it. This module imports that
script by file path and re-exports its plain functions, so there is exactly one implementation of the protocol.

    >>> from training.protocol import compute_str_metrics
    >>> compute_str_metrics(["hello"], ["Hello!"])["accuracy"]
    1.0
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

METRIC_DIR = Path(__file__).resolve().parent / "metrics" / "str_accuracy"
"""Pass this (or the relative path `training/metrics/str_accuracy`) to `evaluate.load`."""

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
    "load_metric",
    "normalize_for_protocol",
    "normalized_edit_distance",
    "protocol_charset",
]
