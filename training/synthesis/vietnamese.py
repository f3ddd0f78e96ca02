"""Vietnamese words for synthetic data, and what the marks on a Vietnamese letter mean.

Vietnamese is written one syllable at a time: an optional initial consonant, a vowel nucleus (one to three vowel
letters, some carrying a vowel-quality mark: breve, circumflex or horn), an optional final consonant, and exactly one
of six tones, written as a mark on one vowel of the nucleus (the level tone has no mark). [`vietnamese_word`] draws
made-up but well-formed words from that structure, following the spelling rules a reader expects (``k``/``gh``/
``ngh`` before front vowels, ``qu`` for the rounded ``k``, ``iê`` after a consonant but ``yê`` without one, only the
rising and the heavy tone on syllables closed by ``c``, ``ch``, ``p``, ``t``, the tone on the vowel that carries a
vowel-quality mark, else on the last vowel before a final consonant, else the first of two / middle of three
vowels: ``hòa``, ``khoái``, ``tiếng``, ``người``).

    >>> import numpy as np
    >>> word = vietnamese_word(np.random.default_rng(0))
    >>> set(word) <= set(VIETNAMESE_CHARSET)
    True

Words are NFC (precomposed characters), as the label rule wants them for a non-ASCII charset.
"""

from __future__ import annotations

import unicodedata

import numpy as np

TONE_MARKS = {
    "\u0300": "huyền (grave)",
    "\u0301": "sắc (acute)",
    "\u0309": "hỏi (hook above)",
    "\u0303": "ngã (tilde)",
    "\u0323": "nặng (dot below)",
}
"""The combining marks of the five marked tones (the sixth, ngang, is unmarked)."""

VOWEL_MARKS = {"\u0306": "breve (ă)", "\u0302": "circumflex (â ê ô)", "\u031b": "horn (ơ ư)"}
"""Combining marks that change the vowel itself rather than the tone."""

_VOWELS = "aăâeêioôơuưy"
_CONSONANTS = "bcdđghklmnpqrstvx"
_TONES = ("", *TONE_MARKS)  # ngang, then the five marked tones

# Initial consonants as sounds; "k", "g" and "ng" are spelled by the vowel that follows (see `_spell_initial`).
_INITIALS = ("", "b", "k", "ch", "d", "đ", "g", "gi", "h", "kh", "l", "m", "n", "ng", "nh", "ph", "qu", "r", "s", "t",
             "th", "tr", "v", "x")
_FINALS = ("c", "ch", "m", "n", "ng", "nh", "p", "t")
_CHECKED_FINALS = frozenset({"c", "ch", "p", "t"})
_CHECKED_TONES = ("\u0301", "\u0323")  # a syllable closed by a stop takes the rising or the heavy tone only

# Vowel nuclei: (spelling, final): "none" (ends in a glide, takes no final consonant), "required", or "optional".
_NUCLEI = (
    ("a", "optional"), ("ă", "required"), ("â", "required"), ("e", "optional"), ("ê", "optional"),
    ("i", "optional"), ("o", "optional"), ("ô", "optional"), ("ơ", "optional"), ("u", "optional"),
    ("ư", "optional"), ("y", "none"),
    ("ai", "none"), ("ao", "none"), ("au", "none"), ("ay", "none"), ("âu", "none"), ("ây", "none"), ("eo", "none"),
    ("êu", "none"), ("ia", "none"), ("iu", "none"), ("oi", "none"), ("ôi", "none"), ("ơi", "none"), ("ua", "none"),
    ("ui", "none"), ("ưa", "none"), ("ưi", "none"), ("ưu", "none"),
    ("iê", "required"), ("yê", "required"), ("uô", "required"), ("ươ", "required"), ("oă", "required"),
    ("uâ", "required"), ("uyê", "required"),
    ("oa", "optional"), ("oe", "optional"), ("uê", "optional"), ("uy", "optional"),
    ("oai", "none"), ("oay", "none"), ("uây", "none"), ("uôi", "none"), ("ươi", "none"), ("ươu", "none"),
    ("iêu", "none"), ("yêu", "none"), ("uya", "none"), ("oeo", "none"),
)
# After "qu" the rounding is already written: these nuclei follow it ("quê", "quyết", "quạt").
_AFTER_QU = frozenset({"a", "ă", "â", "e", "ê", "y", "ơ", "ai", "ay", "ây", "yê"})
# Nuclei that start with a rounding glide cannot follow a plain "k" sound (that is written "qu" + the rest).
_ROUNDED = frozenset({"oa", "oă", "oe", "uâ", "uê", "uy", "uyê", "oai", "oay", "uây", "uya", "oeo"})
_FRONT = "ieêy"


def _spell_initial(initial: str, nucleus: str) -> str:
    """`k`, `g`, `ng` as written before `nucleus`: c/k, g/gh, ng/ngh."""
    front = nucleus[0] in _FRONT
    if initial == "k":
        return "k" if front else "c"
    if initial == "g":
        return "gh" if front else "g"
    if initial == "ng":
        return "ngh" if front else "ng"
    return initial


def _tone_position(nucleus: str, has_final: bool) -> int:
    """Index of the vowel of `nucleus` that carries the tone mark (traditional placement: "hòa", "thủy")."""
    marked = [index for index, char in enumerate(nucleus) if char in "ăâêôơư"]
    if marked:
        return marked[-1]  # "ươ" -> ơ, "uyê" -> ê
    if has_final or len(nucleus) == 1:
        return len(nucleus) - 1  # "toán", "quét"
    return 0 if len(nucleus) == 2 else 1  # "hòa", "mái", "khoái"


def _allowed(initial: str, nucleus: str) -> bool:
    if initial == "qu":
        return nucleus in _AFTER_QU
    if nucleus.startswith("y") and len(nucleus) > 1:
        return initial == ""  # "yêu", "yên": a written y starts the syllable
    if nucleus.startswith("iê"):
        return initial not in ("", "gi")  # "tiên", but "yên" and "giêng" are spelled otherwise
    if nucleus == "uya":
        return initial in ("kh", "ng")  # "khuya", "nguya"
    if initial == "k" and nucleus in _ROUNDED:
        return False  # written "qu..."
    if initial == "gi" and nucleus[0] in "iy":
        return False
    return True


def _allowed_final(nucleus: str, final: str) -> bool:
    if final in ("ch", "nh"):
        return nucleus in ("a", "ê", "i", "oa", "uê", "uy")  # "sách", "bệnh", "tính", "hoạch", "huỳnh"
    if final in ("c", "ng"):
        return nucleus[-1] not in "iêy" or nucleus in ("iê", "yê", "uyê")  # "ich"/"inh" instead of "ic"/"ing"
    return True


def vietnamese_syllable(rng: np.random.Generator) -> str:
    """One lower-case syllable, NFC: initial consonant, vowel nucleus with one of the six tones, final consonant."""
    while True:
        initial = _INITIALS[rng.integers(len(_INITIALS))]
        nucleus, final_rule = _NUCLEI[rng.integers(len(_NUCLEI))]
        if not _allowed(initial, nucleus):
            continue
        if final_rule == "required" or (final_rule == "optional" and rng.random() < 0.5):
            final = _FINALS[rng.integers(len(_FINALS))]
            if not _allowed_final(nucleus, final):
                continue
        else:
            final = ""
        tones = _CHECKED_TONES if final in _CHECKED_FINALS else _TONES
        tone = tones[rng.integers(len(tones))]
        position = _tone_position(nucleus, bool(final))
        vowels = nucleus[:position] + unicodedata.normalize("NFC", nucleus[position] + tone) + nucleus[position + 1:]
        return _spell_initial(initial, nucleus) + vowels + final


def vietnamese_word(rng: np.random.Generator, two_syllables: float = 0.45, upper: float = 0.15,
                    capitalized: float = 0.25) -> str:
    """A made-up word of one syllable, or two written together (as in names and compounds: "Hàlội"), in lower case,
    capitalised or upper case."""
    word = vietnamese_syllable(rng)
    if rng.random() < two_syllables:
        word += vietnamese_syllable(rng)
    case = rng.random()
    if case < upper:
        return word.upper()
    if case < upper + capitalized:
        return word[0].upper() + word[1:]
    return word


def _all_letters() -> str:
    lower = set(_CONSONANTS)
    for vowel in _VOWELS:
        lower.update(unicodedata.normalize("NFC", vowel + tone) for tone in _TONES)
    lower = sorted(lower)
    return "".join(lower) + "".join(char.upper() for char in lower)


VIETNAMESE_CHARSET = _all_letters()
"""Every letter the generator can write (lower then upper case, each by code point): 89 + 89 characters."""


__all__ = ["TONE_MARKS", "VIETNAMESE_CHARSET", "VOWEL_MARKS", "vietnamese_syllable", "vietnamese_word"]
