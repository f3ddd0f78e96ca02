"""The STR comparison protocol (`training/evaluation/protocol.py`) and the `str_accuracy` evaluate metric, on hand-made cases."""

from __future__ import annotations

import math

import pytest

from conftest import REPO
from training.evaluation.protocol import (
    CHARSET_36,
    CHARSET_62,
    CHARSET_94,
    METRIC_DIR,
    STRScoreAccumulator,
    compute_str_metrics,
    edit_distance,
    normalize_for_protocol,
    normalized_edit_distance,
    protocol_charset,
)

# --------------------------------------------------------------------------------------------------------------------
# Plain functions
# --------------------------------------------------------------------------------------------------------------------


def test_charsets():
    assert CHARSET_36 == "0123456789abcdefghijklmnopqrstuvwxyz"
    assert len(CHARSET_62) == 62 and CHARSET_62.startswith(CHARSET_36)
    assert len(CHARSET_94) == 94 and CHARSET_94.startswith(CHARSET_62)
    assert protocol_charset() == CHARSET_36
    assert protocol_charset(cased=True) == CHARSET_62
    assert protocol_charset(cased=True, punctuation=True) == CHARSET_94
    assert protocol_charset(punctuation=True) == CHARSET_36 + CHARSET_94[62:]
    assert protocol_charset("abc") == "abc"
    # The model's released 94-character charset is the same set as the cased + punctuation protocol.
    from modeling_clip4str import CHARSET_94 as MODEL_CHARSET_94

    assert set(MODEL_CHARSET_94) == set(CHARSET_94)


def test_protocol_charset_rejects_ambiguous_options():
    with pytest.raises(ValueError, match="not both"):
        protocol_charset("abc", cased=True)
    with pytest.raises(ValueError, match="non-empty"):
        protocol_charset("")


@pytest.mark.parametrize(
    "text, charset, expected",
    [
        ("Hello, World!", CHARSET_36, "helloworld"),
        ("Hello, World!", CHARSET_62, "HelloWorld"),
        ("Hello, World!", CHARSET_94, "Hello,World!"),
        ("Hello, World!", protocol_charset(punctuation=True), "hello,world!"),
        ("café 42", CHARSET_36, "caf42"),  # no NFKD here: accents are the loaders' job
        ("abc", "ABC", "ABC"),  # an upper-case-only charset upper-cases, as the reference's adapter does
        ("?!", CHARSET_36, ""),
        ("", CHARSET_36, ""),
    ],
)
def test_normalize_for_protocol(text, charset, expected):
    assert normalize_for_protocol(text, charset) == expected


def test_normalize_for_protocol_agrees_with_the_label_rule():
    """The metric script keeps its own copy of the label rule's case adaptation and charset filter (it must stay
    self-contained for `evaluate.load`); both must give the same text for every string and charset."""
    import random
    import string

    from modeling_clip4str.labels_clip4str import adapt_to_charset

    vietnamese = "aăâbcdđeêghiklmnoôơpqrstuưvxyáàảãạếềểễệ"
    charsets = [
        CHARSET_36, CHARSET_62, CHARSET_94, protocol_charset(punctuation=True), "ABC", "abcABC", "0123",
        "你好世界abcé", vietnamese, vietnamese.upper(), vietnamese + vietnamese.upper(), "ß" + string.ascii_lowercase,
        "İIıi", "Σσς", string.punctuation,
    ]
    alphabet = string.printable + "éÉèÈçÇßẞİıΣσςĳǅǆǄ你好世界ăĂâÂđĐêÊôÔơƠưƯếẾệỆ\u0301\u0323\u00a0\u2163ﬁ"
    rng = random.Random(0)
    texts = ["", "Hello, World!", "café", "CAFÉ", "Straße", "ǅemal", "İstanbul", "ΣΟΦΟΣ", "tiếng Việt"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20))) for _ in range(500)]
    for charset in charsets:
        for text in texts:
            assert normalize_for_protocol(text, charset) == adapt_to_charset(text, charset), (text, charset)


def test_normalize_for_protocol_rejects_non_strings():
    with pytest.raises(TypeError, match="Expected a string"):
        normalize_for_protocol(None)


@pytest.mark.parametrize(
    "a, b, distance",
    [
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("ab", "ba", 2),  # plain Levenshtein: a transposition costs two edits
        ("", "abc", 3),
        ("abc", "", 3),
        ("", "", 0),
        ("same", "same", 0),
        ("a", "b", 1),
        ("intention", "execution", 5),
    ],
)
def test_edit_distance(a, b, distance):
    assert edit_distance(a, b) == distance
    assert edit_distance(b, a) == distance


def test_normalized_edit_distance_conventions():
    assert normalized_edit_distance("", "") == 0.0  # both empty: a perfect match
    assert normalized_edit_distance("", "abc") == 1.0
    assert normalized_edit_distance("abc", "") == 1.0
    assert normalized_edit_distance("abcd", "abce") == 0.25


def test_compute_str_metrics_default_protocol():
    # hello == hello, world == world after lowercasing and dropping "!"; abc vs abd is one substitution out of 3.
    result = compute_str_metrics(["Hello", "WORLD!", "abc"], ["hello", "world", "abd"])
    assert result["num_samples"] == 3
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["one_minus_ned"] == pytest.approx(1 - (0 + 0 + 1 / 3) / 3)
    assert result["mean_label_length"] == pytest.approx((5 + 5 + 3) / 3)
    assert "mean_confidence" not in result


def test_compute_str_metrics_empty_strings():
    # Empty prediction vs "abc": miss, NED 1. "!!!" adapts to empty, vs "ab": miss, NED 1.
    result = compute_str_metrics(["", "!!!"], ["abc", "ab"])
    assert (result["accuracy"], result["one_minus_ned"]) == (0.0, 0.0)
    assert result["mean_label_length"] == 2.5
    # Empty (or fully filtered) label vs a prediction: miss, NED 1; label length 0.
    result = compute_str_metrics(["ab", "xy"], ["", "%%"])
    assert (result["accuracy"], result["one_minus_ned"], result["mean_label_length"]) == (0.0, 0.0, 0.0)
    # Both empty, also after adaptation: a match with NED 0.
    result = compute_str_metrics(["", "?"], ["", "-"])
    assert (result["accuracy"], result["one_minus_ned"]) == (1.0, 1.0)
    # Mixed: one perfect, one empty prediction for a 4-char label, one both-empty.
    result = compute_str_metrics(["abc", "", ""], ["abc", "abcd", ""])
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["one_minus_ned"] == pytest.approx(2 / 3)
    assert result["mean_label_length"] == pytest.approx(7 / 3)


def test_compute_str_metrics_case_and_punctuation():
    predictions, references = ["Hello", "it's", "IT'S"], ["hello", "its", "it's"]
    default = compute_str_metrics(predictions, references)
    assert default["accuracy"] == 1.0  # case and the apostrophe are ignored

    cased = compute_str_metrics(predictions, references, cased=True)
    # Hello/hello: 1 of 5; its/its: match; ITS/its: 3 of 3.
    assert cased["accuracy"] == pytest.approx(1 / 3)
    assert cased["one_minus_ned"] == pytest.approx(1 - (1 / 5 + 0 + 3 / 3) / 3)

    punctuation = compute_str_metrics(predictions, references, punctuation=True)
    # hello/hello: match; it's/its: 1 of 4; it's/it's (lowercased): match.
    assert punctuation["accuracy"] == pytest.approx(2 / 3)
    assert punctuation["one_minus_ned"] == pytest.approx(1 - (1 / 4) / 3)
    assert punctuation["mean_label_length"] == pytest.approx((5 + 3 + 4) / 3)

    both = compute_str_metrics(predictions, references, cased=True, punctuation=True)
    # Hello/hello: 1 of 5; it's/its: 1 of 4; IT'S/it's: 3 of 4.
    assert both["accuracy"] == 0.0
    assert both["one_minus_ned"] == pytest.approx(1 - (1 / 5 + 1 / 4 + 3 / 4) / 3)

    explicit = compute_str_metrics(["a1b2"], ["ab"], charset="ab")
    assert explicit["accuracy"] == 1.0


def test_compute_str_metrics_confidences():
    result = compute_str_metrics(["a", "b", "c", "d"], ["a", "b", "x", "d"], confidences=[1.0, 0.5, 0.25, 0.25])
    assert result["mean_confidence"] == pytest.approx(0.5)
    assert result["accuracy"] == 0.75


def test_compute_str_metrics_errors():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        compute_str_metrics(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="1 confidences for 2 predictions"):
        compute_str_metrics(["a", "b"], ["a", "b"], confidences=[0.5])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        compute_str_metrics(["a"], ["a"], confidences=[1.5])
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        compute_str_metrics(["a"], ["a"], confidences=[math.nan])
    with pytest.raises(ValueError, match="Nothing to score"):
        compute_str_metrics([], [])
    with pytest.raises(TypeError, match="Expected a string"):
        compute_str_metrics([None], ["a"])


def test_accumulator_batches_and_merge_match_one_pass():
    predictions = ["abc", "", "Hello", "w0rld", "x"]
    references = ["abc", "abcd", "hello", "world", ""]
    confidences = [0.9, 0.1, 0.8, 0.7, 0.2]
    one_pass = compute_str_metrics(predictions, references, confidences)

    first, second = STRScoreAccumulator(), STRScoreAccumulator()
    first.update(predictions[:2], references[:2], confidences[:2])
    second.update(predictions[2:4], references[2:4], confidences[2:4])
    second.update(predictions[4:], references[4:], confidences[4:])
    merged = first.merge(second).compute()
    assert merged.keys() == one_pass.keys()
    for key in one_pass:
        assert merged[key] == pytest.approx(one_pass[key])

    empty = STRScoreAccumulator().compute()
    assert empty == {"accuracy": None, "one_minus_ned": None, "num_samples": 0, "mean_label_length": None,
                     "mean_prediction_length": None}
    with pytest.raises(ValueError, match="different comparison charsets"):
        STRScoreAccumulator().merge(STRScoreAccumulator(cased=True))


def test_mean_confidence_needs_every_sample():
    scores = STRScoreAccumulator()
    scores.update(["a"], ["a"], confidences=[0.5])
    scores.update(["b"], ["b"])  # no confidence for this one: a mean over part of the samples would mislead
    assert "mean_confidence" not in scores.compute()


# --------------------------------------------------------------------------------------------------------------------
# evaluate.load
# --------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluate_module():
    evaluate = pytest.importorskip("evaluate")
    return evaluate


def test_metric_loads_offline_by_relative_and_absolute_path(evaluate_module, monkeypatch):
    predictions, references = ["Hello", "WORLD!", "abc"], ["hello", "world", "abd"]
    expected = compute_str_metrics(predictions, references, confidences=[0.5, 1.0, 0.0])

    monkeypatch.chdir(REPO)
    relative = evaluate_module.load("training/evaluation/metrics/str_accuracy", keep_in_memory=True)
    absolute = evaluate_module.load(str(METRIC_DIR), keep_in_memory=True)
    script = evaluate_module.load(str(METRIC_DIR / "str_accuracy.py"), keep_in_memory=True)
    for metric in (relative, absolute, script):
        assert metric.name == "str_accuracy"
        result = metric.compute(predictions=predictions, references=references, confidences=[0.5, 1.0, 0.0])
        assert result == pytest.approx(expected)
        assert result["mean_confidence"] == 0.5


def test_metric_options_at_load_and_at_compute(evaluate_module):
    predictions, references = ["Hello", "it's"], ["hello", "its"]
    cased = evaluate_module.load(str(METRIC_DIR), keep_in_memory=True, cased=True)
    assert cased.compute(predictions=predictions, references=references)["accuracy"] == 0.5
    # Options given to compute define the protocol for that call (here: case-insensitive with punctuation).
    result = cased.compute(predictions=predictions, references=references, punctuation=True)
    assert result == pytest.approx(compute_str_metrics(predictions, references, punctuation=True))
    assert result["accuracy"] == 0.5
    explicit = cased.compute(predictions=["a1b2"], references=["ab"], charset="ab")
    assert explicit["accuracy"] == 1.0
    with pytest.raises(ValueError, match="not both"):
        evaluate_module.load(str(METRIC_DIR), keep_in_memory=True, charset="abc", cased=True)


def test_metric_add_batch_accumulates(evaluate_module):
    metric = evaluate_module.load(str(METRIC_DIR), keep_in_memory=True)
    metric.add_batch(predictions=["abc", ""], references=["ABC", ""])
    metric.add_batch(predictions=["ab"], references=["abcd"])
    result = metric.compute()
    assert result["num_samples"] == 3
    assert result["accuracy"] == pytest.approx(2 / 3)
    assert result["one_minus_ned"] == pytest.approx(1 - (2 / 4) / 3)
    assert result["mean_label_length"] == pytest.approx(7 / 3)


def test_metric_script_is_self_contained():
    # evaluate copies the script alone into its cache: it may import installed libraries only, not repo siblings.
    source = (METRIC_DIR / "str_accuracy.py").read_text(encoding="utf-8")
    imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
    assert imports and all(not line.startswith("from .") for line in imports)
    assert not any("training" in line or "modeling_clip4str" in line for line in imports)
    assert (METRIC_DIR / "README.md").is_file()
