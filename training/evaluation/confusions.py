"""Which characters a model confuses: predictions aligned with their labels by edit distance, and each character error
classified by what differs (a base letter, a tone mark, another diacritic, letter case, a missing or extra character).

    >>> confusions = CharacterConfusions()
    >>> confusions.update("tiêng", "tiếng")
    >>> confusions.kinds
    Counter({'tone mark': 1})

Diacritics are told apart with Unicode NFD: "ế" decomposes to e + circumflex + acute, "é" to e + acute, so the pair
(ế, é) shares its base letter and differs by the circumflex, a vowel mark. Vietnamese tone marks are the five of
[`~training.synthesis.vietnamese.TONE_MARKS`]; every other combining mark (breve, circumflex, horn, and the stroke of đ, which
has no decomposition) counts as another diacritic.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

from training.synthesis.vietnamese import TONE_MARKS

ERROR_KINDS = ("base letter", "tone mark", "other diacritic", "tone mark and other diacritic", "case", "missing",
               "extra")
"""How [`classify_confusion`] names an error."""

# Letters whose mark is part of the code point and not a combining character (NFD leaves them whole).
_STROKED = {"đ": ("d", "stroke"), "Đ": ("D", "stroke")}


def align(prediction: str, label: str) -> list[tuple[str | None, str | None]]:
    """The pairs `(label character, predicted character)` of a shortest edit script from `label` to `prediction`:
    matches and substitutions pair two characters, a character the model missed is `(char, None)`, an extra one
    `(None, char)`. Ties go to substitutions, then to missed characters, so the alignment is deterministic.

    >>> align("hallo", "hello")
    [('h', 'h'), ('e', 'a'), ('l', 'l'), ('l', 'l'), ('o', 'o')]
    """
    rows, cols = len(label) + 1, len(prediction) + 1
    cost = [[0] * cols for _ in range(rows)]
    for i in range(rows):
        cost[i][0] = i
    for j in range(cols):
        cost[0][j] = j
    for i in range(1, rows):
        for j in range(1, cols):
            cost[i][j] = min(cost[i - 1][j - 1] + (label[i - 1] != prediction[j - 1]), cost[i - 1][j] + 1,
                             cost[i][j - 1] + 1)
    pairs = []
    i, j = len(label), len(prediction)
    while i or j:
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (label[i - 1] != prediction[j - 1]):
            pairs.append((label[i - 1], prediction[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append((label[i - 1], None))
            i -= 1
        else:
            pairs.append((None, prediction[j - 1]))
            j -= 1
    return pairs[::-1]


def decompose(char: str) -> tuple[str, frozenset[str]]:
    """The base letter and the set of marks of a character (NFD; đ is d with a stroke)."""
    if char in _STROKED:
        base, mark = _STROKED[char]
        return base, frozenset({mark})
    parts = unicodedata.normalize("NFD", char)
    base = "".join(part for part in parts if not unicodedata.combining(part))
    return base, frozenset(part for part in parts if unicodedata.combining(part))


def classify_confusion(label_char: str | None, predicted_char: str | None) -> str:
    """What differs between a label character and the character read in its place (one of [`ERROR_KINDS`])."""
    if predicted_char is None:
        return "missing"
    if label_char is None:
        return "extra"
    label_base, label_marks = decompose(label_char)
    predicted_base, predicted_marks = decompose(predicted_char)
    if label_base.casefold() != predicted_base.casefold():
        return "base letter"
    differing = label_marks ^ predicted_marks
    if not differing:
        return "case"
    tone = any(mark in TONE_MARKS for mark in differing)
    other = any(mark not in TONE_MARKS for mark in differing)
    if tone and other:
        return "tone mark and other diacritic"
    return "tone mark" if tone else "other diacritic"


class CharacterConfusions:
    """Counts of the character errors of predictions against labels (see [`align`] and [`classify_confusion`]).

    Attributes:
        pairs: `(label character or None, predicted character or None)` -> count, errors only.
        kinds: error kind -> count.
        num_words, num_wrong_words: pairs seen, and how many of them differ.
    """

    def __init__(self):
        self.pairs: Counter = Counter()
        self.kinds: Counter = Counter()
        self.num_words = 0
        self.num_wrong_words = 0

    def update(self, prediction: str, label: str) -> None:
        self.num_words += 1
        if prediction == label:
            return
        self.num_wrong_words += 1
        for pair in align(prediction, label):
            if pair[0] != pair[1]:
                self.pairs[pair] += 1
                self.kinds[classify_confusion(*pair)] += 1

    def merge(self, other: CharacterConfusions) -> CharacterConfusions:
        self.pairs.update(other.pairs)
        self.kinds.update(other.kinds)
        self.num_words += other.num_words
        self.num_wrong_words += other.num_wrong_words
        return self

    def summary(self, top: int) -> dict:
        """The `top` most frequent confusions (ties by characters) and the error counts by kind."""
        ranked = sorted(self.pairs.items(), key=lambda item: (-item[1], item[0][0] or "", item[0][1] or ""))
        return {
            "num_errors": sum(self.pairs.values()),
            "num_words": self.num_words,
            "num_wrong_words": self.num_wrong_words,
            "kinds": {kind: self.kinds[kind] for kind in ERROR_KINDS if self.kinds[kind]},
            "pairs": [
                {"label": label, "prediction": prediction, "count": count,
                 "kind": classify_confusion(label, prediction)}
                for (label, prediction), count in ranked[:top]
            ],
        }


def format_confusions(summary: dict) -> str:
    """The summary of [`CharacterConfusions.summary`] as text (Markdown-friendly)."""
    total = summary["num_errors"]
    if not total:
        return f"No character errors in {summary['num_words']} words."
    lines = [
        f"{total} character errors in {summary['num_wrong_words']} wrong words (of {summary['num_words']}); by kind: "
        + ", ".join(f"{kind} {count} ({100 * count / total:.1f}%)" for kind, count in summary["kinds"].items()) + ".",
        "",
        "| count | label | read as | kind |",
        "|---:|:---:|:---:|---|",
    ]
    for pair in summary["pairs"]:
        label = "∅" if pair["label"] is None else pair["label"]
        prediction = "∅" if pair["prediction"] is None else pair["prediction"]
        lines.append(f"| {pair['count']} | {label} | {prediction} | {pair['kind']} |")
    return "\n".join(lines)


__all__ = ["ERROR_KINDS", "CharacterConfusions", "align", "classify_confusion", "decompose", "format_confusions"]
