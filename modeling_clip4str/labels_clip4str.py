"""What happens to a label: the one rule that training data, captions and the tokenizer share.

A label (the text shown in a word image) goes through these steps, in this order:

1. whitespace is removed (`remove_whitespace`);
2. Unicode normalisation: for an ASCII charset, NFKD and then everything outside ASCII dropped (accents fold to
   their base letter, as the reference does); for any other charset, NFC, so that a label written with combining
   marks (NFD, common in Vietnamese text) keeps them, composed the way the charset lists them;
3. labels longer than `max_label_length` are dropped (before the charset filter, as the reference does: a long label
   stays dropped even if it would shrink);
4. case adaptation and charset filter ([`adapt_to_charset`]): lower-case when the charset has no upper case,
   upper-case when it has no lower case, then every character outside the charset is removed;
5. labels that end up empty are dropped.

The cross-modal branch turns its visual prediction into a caption with step 4 alone (against the caption charset),
and the STR metric script keeps a self-contained copy of step 4 (`normalize_for_protocol`; a test checks that the two
agree).
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

ASCII_FOLD = "NFKD-ASCII"
"""Unicode handling of ASCII charsets: NFKD, then drop what is not ASCII (`"café"` -> `"cafe"`)."""

REASONS = ("kept", "not_a_string", "too_long", "empty_after_filtering")
"""What [`LabelCleaner`] can say of a label: kept, or why it was dropped."""


def adapt_to_charset(text: str, charset: str) -> str:
    """Case adaptation and charset filter: lower-case `text` when `charset` has no upper case (upper-case it when it
    has no lower case), then drop every character that is not in `charset`.

    >>> adapt_to_charset("Hello, World!", "0123456789abcdefghijklmnopqrstuvwxyz")
    'helloworld'
    """
    if charset == charset.lower():
        text = text.lower()
    elif charset == charset.upper():
        text = text.upper()
    allowed = _allowed_characters(charset)
    return "".join(char for char in text if char in allowed)


_ALLOWED_CACHE: dict[str, frozenset] = {}


def _allowed_characters(charset: str) -> frozenset:
    # Captions are adapted once per decoding pass; building the set each time would cost more than the filter.
    allowed = _ALLOWED_CACHE.get(charset)
    if allowed is None:
        if len(_ALLOWED_CACHE) > 64:
            _ALLOWED_CACHE.clear()
        allowed = _ALLOWED_CACHE[charset] = frozenset(charset)
    return allowed


def default_unicode_normalization(charset: str) -> str:
    """[`ASCII_FOLD`] for an ASCII charset, else `"NFC"`."""
    return ASCII_FOLD if charset.isascii() else "NFC"


class CleanedLabel(NamedTuple):
    """What [`LabelCleaner`] made of one label.

    text: the cleaned label, or `None` when it was dropped; reason: one of [`REASONS`]; removed_characters: how
    many characters the charset filter removed (0 for a dropped label).
    """

    text: str | None
    reason: str
    removed_characters: int


class LabelCleaner:
    r"""
    The label rule (see the module docstring) for one charset.

    Args:
        charset (`str`): the characters the model reads.
        max_label_length (`int`, *optional*): longest label kept; `None` keeps every length.
        remove_whitespace (`bool`, defaults to `True`).
        unicode_normalization (`str`, *optional*): `"NFKD-ASCII"` (fold to ASCII), `"NFC"`, `"NFKC"`, `"NFD"`,
            `"NFKD"` or `"none"`. Default: fold to ASCII for an ASCII charset, NFC otherwise.

    `cleaner(label)` returns a [`CleanedLabel`]; `cleaner.normalize(text)` applies steps 1 and 2 alone.
    """

    def __init__(
        self,
        charset: str,
        max_label_length: int | None = None,
        remove_whitespace: bool = True,
        unicode_normalization: str | None = None,
    ):
        if not isinstance(charset, str) or not charset:
            raise ValueError("`charset` must be a non-empty string of the characters the model reads.")
        if max_label_length is not None and (
            isinstance(max_label_length, bool) or not isinstance(max_label_length, int) or max_label_length < 1
        ):
            raise ValueError(f"`max_label_length` must be a positive integer or None, got {max_label_length!r}.")
        if unicode_normalization is None:
            unicode_normalization = default_unicode_normalization(charset)
        if unicode_normalization not in (ASCII_FOLD, "NFC", "NFKC", "NFD", "NFKD", "none"):
            raise ValueError(
                f"Unknown unicode_normalization {unicode_normalization!r}: use 'NFKD-ASCII', 'NFC', 'NFKC', 'NFD', "
                "'NFKD' or 'none'."
            )
        self.charset = charset
        self.max_label_length = max_label_length
        self.remove_whitespace = bool(remove_whitespace)
        self.unicode_normalization = unicode_normalization

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(charset={self.charset!r}, max_label_length={self.max_label_length}, "
            f"remove_whitespace={self.remove_whitespace}, unicode_normalization={self.unicode_normalization!r})"
        )

    def normalize(self, text: str) -> str:
        """Steps 1 and 2: whitespace removal and Unicode normalisation."""
        if self.remove_whitespace:
            text = "".join(text.split())
        if self.unicode_normalization == ASCII_FOLD:
            return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        if self.unicode_normalization != "none":
            return unicodedata.normalize(self.unicode_normalization, text)
        return text

    def __call__(self, label) -> CleanedLabel:
        if not isinstance(label, str):
            return CleanedLabel(None, "not_a_string", 0)
        text = self.normalize(label)
        if self.max_label_length is not None and len(text) > self.max_label_length:
            return CleanedLabel(None, "too_long", 0)
        adapted = adapt_to_charset(text, self.charset)
        if not adapted:
            return CleanedLabel(None, "empty_after_filtering", 0)
        return CleanedLabel(adapted, "kept", max(0, len(text) - len(adapted)))

    def settings(self) -> dict:
        """The settings, e.g. for fingerprints and logs."""
        return {
            "charset": self.charset,
            "max_label_length": self.max_label_length,
            "remove_whitespace": self.remove_whitespace,
            "unicode_normalization": self.unicode_normalization,
        }


__all__ = ["ASCII_FOLD", "REASONS", "CleanedLabel", "LabelCleaner", "adapt_to_charset", "default_unicode_normalization"]
