"""Scene text recognition accuracy: word accuracy and 1 - normalised edit distance under the benchmark protocol.

This file is the single implementation of the comparison protocol. It is deliberately self-contained (standard
library plus `datasets`/`evaluate`): `evaluate.load` copies a local metric script into its own modules cache before
importing it, so the script cannot import sibling files of the repository. `training/evaluation/protocol.py` loads this file by
path and re-exports its plain functions for the Trainer and `training/evaluate_str.py`.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterable, Sequence

import datasets
import evaluate

CHARSET_36 = string.digits + string.ascii_lowercase
"""The usual benchmark protocol: digits and lowercase letters."""

CHARSET_62 = CHARSET_36 + string.ascii_uppercase
"""Case-sensitive comparison (`cased=True`)."""

CHARSET_94 = CHARSET_62 + string.punctuation
"""Case-sensitive comparison that also keeps the 32 ASCII punctuation characters."""


_DESCRIPTION = """
Word accuracy and 1 - NED (normalised edit distance) of scene text recognition, computed the way the STR benchmarks
(IIIT5k, SVT, IC13, IC15, SVTP, CUTE80, ...) are scored by CLIP4STR and PARSeq.

Before comparing, the prediction and the label are adapted to the comparison charset in the same way: lowercased
when the charset has no upper-case letter (upper-cased when it has upper-case letters but no lower-case ones), then
every character outside the charset is removed. By default the charset is the 36 lowercase alphanumerics, so
"Hello, World!" and "helloworld" are a match.

- `accuracy`: fraction of samples whose adapted prediction equals the adapted label (exact match).
- `one_minus_ned`: mean over samples of 1 - edit_distance(pred, label) / max(len(pred), len(label)) (Levenshtein
  distance, ICDAR 2019 normalisation). Two empty strings count as a perfect match (NED 0).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): recognised texts.
    references (`list` of `str`): ground-truth texts, one per prediction.
    confidences (`list` of `float`, *optional*): word confidences in [0, 1] (e.g. from
        `processor.batch_decode(..., return_confidences=True)`). Give them to `compute`; like `sample_weight` of the
        `accuracy` metric they are not accumulated by `add_batch`.
    charset (`str`, *optional*): the comparison charset. Default: the 36 lowercase alphanumerics, extended by
        `cased` and `punctuation`. Cannot be combined with `cased=True` or `punctuation=True`.
    cased (`bool`, *optional*, defaults to `False`): compare case-sensitively over digits and both cases (62 chars).
    punctuation (`bool`, *optional*, defaults to `False`): also keep the 32 ASCII punctuation characters (94 chars
        with `cased=True`; without it, letters are still lowercased).

    `charset`, `cased` and `punctuation` can also be given to `evaluate.load(...)`. When any of them is given to
    `compute`, the `compute` values (the missing ones at their defaults) define the protocol for that call.

Returns:
    accuracy (`float`): word accuracy (exact match after adaptation), in [0, 1].
    one_minus_ned (`float`): mean of 1 - normalised edit distance, in [0, 1].
    num_samples (`int`): number of scored pairs.
    mean_label_length (`float`): mean length of the adapted references.
    mean_prediction_length (`float`): mean length of the adapted predictions (the reference test.py's "Label Length").
    mean_confidence (`float`): mean of `confidences` (only when they are given).

Empty strings:
    An empty (adapted) prediction against a non-empty label is a miss with 1 - NED = 0. A non-empty prediction
    against an empty label is also a miss with 1 - NED = 0. Both empty is a match with 1 - NED = 1. (The benchmark
    loaders drop samples whose label is empty under the protocol, so the last two cases only arise when scoring raw
    lists.)

Examples:
    >>> str_accuracy = evaluate.load("training/evaluation/metrics/str_accuracy")
    >>> str_accuracy.compute(predictions=["hello", "w0rld"], references=["Hello!", "world"])
    {'accuracy': 0.5, 'one_minus_ned': 0.9, 'num_samples': 2, 'mean_label_length': 5.0, 'mean_prediction_length': 5.0}
"""

_CITATION = """
@article{zhao2023clip4str,
  title={CLIP4STR: A Simple Baseline for Scene Text Recognition with Pre-trained Vision-Language Model},
  author={Zhao, Shuai and Quan, Ruijie and Zhu, Linchao and Yang, Yi},
  journal={IEEE Transactions on Image Processing},
  year={2024}
}
@inproceedings{bautista2022parseq,
  title={Scene Text Recognition with Permuted Autoregressive Sequence Models},
  author={Bautista, Darwin and Atienza, Rowel},
  booktitle={European Conference on Computer Vision},
  year={2022}
}
"""


def protocol_charset(charset: str | None = None, cased: bool = False, punctuation: bool = False) -> str:
    """The comparison charset for the given options.

    Args:
        charset: an explicit charset; when given, `cased` and `punctuation` must be left `False`.
        cased: digits + lowercase + uppercase (62 characters) instead of digits + lowercase (36).
        punctuation: add the 32 ASCII punctuation characters.

    Returns:
        The charset as a string.
    """
    if charset is not None:
        if not isinstance(charset, str) or not charset:
            raise ValueError(f"charset must be a non-empty string, got {charset!r}.")
        if cased or punctuation:
            # Silently ignoring one of them would score under a protocol the caller did not ask for.
            raise ValueError("Give either an explicit `charset` or `cased`/`punctuation`, not both.")
        return charset
    result = CHARSET_36
    if cased:
        result += string.ascii_uppercase
    if punctuation:
        result += string.punctuation
    return result


def normalize_for_protocol(text: str, charset: str = CHARSET_36) -> str:
    """Adapt `text` to a comparison charset, as the benchmark protocol does for predictions and labels alike.

    Lowercase when `charset` has no upper-case letter, upper-case when it has upper-case but no lower-case letters,
    otherwise keep the case; then drop every character that is not in `charset`.

    >>> normalize_for_protocol("Hello, World!")
    'helloworld'
    """
    if not isinstance(text, str):
        raise TypeError(f"Expected a string, got {type(text).__name__}: {text!r}.")
    if charset == charset.lower():
        text = text.lower()
    elif charset == charset.upper():
        text = text.upper()
    allowed = frozenset(charset)
    return "".join(char for char in text if char in allowed)


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance: the fewest single-character insertions, deletions and substitutions turning a into b.

    Plain dynamic programming over two rows, O(len(a) * len(b)) time. Words in STR are short (at most a few dozen
    characters), so this needs no compiled dependency.

    >>> edit_distance("kitten", "sitting")
    3
    """
    if len(a) < len(b):
        a, b = b, a  # keep the row (indexed by b) the shorter one
    if not b:
        return len(a)
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(
                min(
                    previous[j] + 1,  # delete char_a
                    current[j - 1] + 1,  # insert char_b
                    previous[j - 1] + (char_a != char_b),  # substitute (free when equal)
                )
            )
        previous = current
    return previous[-1]


def normalized_edit_distance(prediction: str, label: str) -> float:
    """edit_distance / max(len(prediction), len(label)), in [0, 1]; 0 when both strings are empty."""
    longest = max(len(prediction), len(label))
    if longest == 0:
        return 0.0
    return edit_distance(prediction, label) / longest


class STRScoreAccumulator:
    """Running sums of the protocol's scores, for scoring batch by batch and for combining several test sets.

    Args:
        charset, cased, punctuation: the comparison protocol (see [`protocol_charset`]).

    Example:
        >>> scores = STRScoreAccumulator()
        >>> scores.update(["abc"], ["ABC"], confidences=[0.5])
        >>> scores.compute()["accuracy"]
        1.0
    """

    def __init__(self, charset: str | None = None, cased: bool = False, punctuation: bool = False):
        self.charset = protocol_charset(charset, cased, punctuation)
        self.num_samples = 0
        self.num_correct = 0
        self.ned_sum = 0.0
        self.label_length_sum = 0
        self.prediction_length_sum = 0
        self.confidence_sum = 0.0
        self.num_confidences = 0

    def update(
        self,
        predictions: Sequence[str],
        references: Sequence[str],
        confidences: Sequence[float] | None = None,
    ) -> None:
        """Score one batch of pairs and add it to the sums."""
        predictions, references = list(predictions), list(references)
        if len(predictions) != len(references):
            raise ValueError(f"Got {len(predictions)} predictions but {len(references)} references.")
        if confidences is not None:
            confidences = [_check_confidence(value) for value in confidences]
            if len(confidences) != len(predictions):
                raise ValueError(f"Got {len(confidences)} confidences for {len(predictions)} predictions.")
            self.confidence_sum += math.fsum(confidences)
            self.num_confidences += len(confidences)
        for prediction, reference in zip(predictions, references):
            prediction = normalize_for_protocol(prediction, self.charset)
            reference = normalize_for_protocol(reference, self.charset)
            self.num_correct += prediction == reference
            self.ned_sum += normalized_edit_distance(prediction, reference)
            self.label_length_sum += len(reference)
            self.prediction_length_sum += len(prediction)
        self.num_samples += len(predictions)

    def merge(self, other: STRScoreAccumulator) -> STRScoreAccumulator:
        """Add the sums of `other` (scored under the same charset) to these."""
        if other.charset != self.charset:
            raise ValueError("Cannot merge scores computed under different comparison charsets.")
        self.num_samples += other.num_samples
        self.num_correct += other.num_correct
        self.ned_sum += other.ned_sum
        self.label_length_sum += other.label_length_sum
        self.prediction_length_sum += other.prediction_length_sum
        self.confidence_sum += other.confidence_sum
        self.num_confidences += other.num_confidences
        return self

    def compute(self) -> dict:
        """The metric values so far.

        Returns:
            `accuracy`, `one_minus_ned`, `num_samples`, `mean_label_length`, `mean_prediction_length` (of the
            predictions after the charset rule: what the reference's test.py prints as "Label Length"), and
            `mean_confidence` when every scored sample came with a confidence. The means are `None` while nothing
            has been scored.
        """
        count = self.num_samples
        result = {
            "accuracy": self.num_correct / count if count else None,
            "one_minus_ned": 1.0 - self.ned_sum / count if count else None,
            "num_samples": count,
            "mean_label_length": self.label_length_sum / count if count else None,
            "mean_prediction_length": self.prediction_length_sum / count if count else None,
        }
        if self.num_confidences and self.num_confidences == count:
            result["mean_confidence"] = self.confidence_sum / count
        return result


def _check_confidence(value) -> float:
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"Confidences must be probabilities in [0, 1], got {value}.")
    return value


def compute_str_metrics(
    predictions: Iterable[str],
    references: Iterable[str],
    confidences: Iterable[float] | None = None,
    charset: str | None = None,
    cased: bool = False,
    punctuation: bool = False,
) -> dict:
    """Word accuracy, 1 - NED and friends of `predictions` against `references` under the benchmark protocol.

    Args:
        predictions: recognised texts.
        references: ground-truth texts, one per prediction.
        confidences: optional word confidences in [0, 1], one per prediction.
        charset, cased, punctuation: the comparison protocol (see [`protocol_charset`]); default: 36 lowercase
            alphanumerics.

    Returns:
        A dict with `accuracy`, `one_minus_ned`, `num_samples`, `mean_label_length`, `mean_prediction_length` and,
        with `confidences`, `mean_confidence`. Fractions are in [0, 1].

    >>> compute_str_metrics(["hello", "w0rld"], ["Hello!", "world"])
    {'accuracy': 0.5, 'one_minus_ned': 0.9, 'num_samples': 2, 'mean_label_length': 5.0, 'mean_prediction_length': 5.0}
    """
    predictions, references = list(predictions), list(references)
    if not predictions and not references:
        raise ValueError("Nothing to score: predictions and references are empty.")
    scores = STRScoreAccumulator(charset, cased, punctuation)
    scores.update(predictions, references, None if confidences is None else list(confidences))
    return scores.compute()


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class StrAccuracy(evaluate.Metric):
    """`evaluate` wrapper around [`compute_str_metrics`]; see the module docstrings for inputs and outputs."""

    def __init__(self, charset: str | None = None, cased: bool = False, punctuation: bool = False, **kwargs):
        # Validate now, so that a bad protocol fails at `evaluate.load` rather than at the end of an evaluation.
        protocol_charset(charset, cased, punctuation)
        self.default_charset, self.default_cased, self.default_punctuation = charset, cased, punctuation
        super().__init__(**kwargs)

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=[
                "https://github.com/VamosC/CLIP4STR",
                "https://github.com/baudm/parseq",
                "https://arxiv.org/abs/1909.07741",  # ICDAR 2019 ReCTS: the normalised edit distance used here
            ],
        )

    def _compute(self, predictions, references, confidences=None, charset=None, cased=None, punctuation=None):
        # The protocol is taken as a whole: options given to `compute` replace those given to `evaluate.load`
        # (mixing a load-time charset with a compute-time `cased=True` would be ambiguous).
        if charset is None and cased is None and punctuation is None:
            charset, cased, punctuation = self.default_charset, self.default_cased, self.default_punctuation
        return compute_str_metrics(
            predictions, references, confidences, charset=charset, cased=bool(cased), punctuation=bool(punctuation)
        )


__all__ = [
    "CHARSET_36",
    "CHARSET_62",
    "CHARSET_94",
    "STRScoreAccumulator",
    "StrAccuracy",
    "compute_str_metrics",
    "edit_distance",
    "normalize_for_protocol",
    "normalized_edit_distance",
    "protocol_charset",
]
