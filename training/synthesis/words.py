"""The words to render: random strings over a charset, pronounceable pseudo-words, Vietnamese syllables, and real
words of a language's frequency list mixed with numbers, punctuation and random strings; the split into test words
(drawn first) and training words that never repeat a test word in any letter case; word files."""

from __future__ import annotations

import functools
import os
import unicodedata
from collections.abc import Sequence

import numpy as np

from .fonts import DEFAULT_CHARSET
from .vietnamese import vietnamese_word

WORD_KINDS = ("random", "pseudo", "mixed", "vi", "real")
"""Built-in word generators: random strings over the charset, pronounceable pseudo-words, half of each, Vietnamese
syllables ([`~training.synthesis.vietnamese.vietnamese_word`]), or real words of a language's frequency list mixed with numbers,
punctuation and random strings ([`real_word`], the realistic style's default)."""

# --- words -----------------------------------------------------------------------------------------------------------
_ONSETS = ["b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
           "bl", "br", "ch", "cl", "cr", "dr", "fl", "fr", "gr", "pl", "pr", "sh", "sk", "sl", "sp", "st", "th",
           "tr", "qu", "wh", "x", "y"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou", "y", "ie", "oa"]
_CODAS = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "nt", "st", "ck", "ng", "x", "rt", "ll", "sh"]


def random_string(rng: np.random.Generator, charset: str, length: int) -> str:
    return "".join(charset[i] for i in rng.integers(0, len(charset), size=length))


def pseudo_word(rng: np.random.Generator, charset: str, length: int) -> str:
    """A pronounceable made-up word of exactly `length` characters (syllables, sometimes digits), restricted to
    `charset` (random characters of `charset` fill in where the syllables use characters it lacks)."""
    allowed = set(charset)
    digits = [c for c in "0123456789" if c in allowed]
    text = ""
    while len(text) < length:
        if digits and rng.random() < 0.08:
            text += "".join(digits[i] for i in rng.integers(0, len(digits), size=int(rng.integers(1, 4))))
        else:
            text += _ONSETS[rng.integers(len(_ONSETS))] if rng.random() < 0.85 else ""
            text += _VOWELS[rng.integers(len(_VOWELS))]
            text += _CODAS[rng.integers(len(_CODAS))]
    text = text[:length]
    if rng.random() < 0.1 and text[0].upper() in allowed and text[0].isalpha():
        text = text[0].upper() + text[1:]
    return "".join(c if c in allowed else charset[rng.integers(len(charset))] for c in text)


def sample_word(rng: np.random.Generator, charset: str, min_len: int, max_len: int, kind: str = "mixed",
                language: str = "en") -> str:
    """One word of `kind` (see [`WORD_KINDS`]) of `min_len` to `max_len` characters (`language`: the frequency list
    of "real" words)."""
    if kind == "real":
        return real_word(rng, charset, min_len, max_len, language)
    if kind == "vi":
        # Vietnamese words have the lengths their syllables give them: draw until one fits.
        for _ in range(1000):
            word = vietnamese_word(rng)
            if min_len <= len(word) <= max_len:
                return word
        raise ValueError(f"Vietnamese words of {min_len} to {max_len} characters are too rare; widen the range.")
    length = int(rng.integers(min_len, max_len + 1))
    if kind == "mixed":
        kind = "pseudo" if rng.random() < 0.5 else "random"
    if kind == "random":
        return random_string(rng, charset, length)
    if kind == "pseudo":
        return pseudo_word(rng, charset, length)
    raise ValueError(f"Unknown word kind {kind!r}; use one of {', '.join(WORD_KINDS)}.")


# --- real words (the realistic style) ---------------------------------------------------------------------------------
PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
PRINTABLE_ASCII = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" + PUNCTUATION
"""The 94 printable ASCII characters (the released checkpoints' charset): the realistic style's English default."""
LANGUAGES = ("en", "vi")
WORD_LIST_SIZE = 50_000


@functools.lru_cache(maxsize=4)
def frequency_words(language: str = "en", count: int = WORD_LIST_SIZE) -> tuple[str, ...]:
    """The `count` most frequent words of `language` by `wordfreq` (most frequent first; NFC, lower case as wordfreq
    gives them), keeping words of letters with at most inner apostrophes, hyphens and periods ("don't", "e-mail"):
    wordfreq writes every digit as 0 and splits Vietnamese into syllables, so numbers and joined syllables are made
    by [`real_word`] instead."""
    try:
        import wordfreq
    except ImportError as error:  # pragma: no cover - a training dependency
        raise ImportError("Real words need the `wordfreq` package: pip install -e '.[training]'.") from error
    words = []
    for word in wordfreq.top_n_list(language, count):
        word = unicodedata.normalize("NFC", word)
        if not (word and word[0].isalpha() and word[-1].isalpha() and all(c.isalpha() or c in "'-." for c in word)):
            continue
        # Vietnamese pages quote many English words: keep a plain-ASCII one only if Vietnamese uses it more.
        if language != "en" and word.isascii() and (
                wordfreq.word_frequency(word, language) < wordfreq.word_frequency(word, "en")):
            continue
        words.append(word)
    if not words:
        raise ValueError(f"wordfreq has no words for language {language!r}.")
    return tuple(words)


def _fold_case(word: str, charset: str) -> str:
    """The word as a model with `charset` reads it: lower case when the charset has no upper case, upper case when
    it has no lower case (the label rule of `modeling_clip4str`)."""
    if charset == charset.lower():
        return word.lower()
    if charset == charset.upper():
        return word.upper()
    return word


def _fits(word: str, charset: str, min_len: int, max_len: int) -> bool:
    return min_len <= len(word) <= max_len and set(_fold_case(word, charset)) <= set(charset)


def _cased(rng: np.random.Generator, word: str) -> str:
    """Lower case (half the time), capitalised or upper case, as words appear on signs, labels and pages."""
    draw = rng.random()
    if draw < 0.5:
        return word
    if draw < 0.75:
        return word[:1].upper() + word[1:]
    return word.upper()


def _dictionary_word(rng: np.random.Generator, language: str) -> str:
    """A word of the frequency list, frequent words more often (the rank is N * u^2: the top word about 1 in 200)."""
    words = frequency_words(language)
    return words[int(len(words) * rng.random() ** 2)]


def _digits(rng: np.random.Generator, low: int, high: int) -> str:
    return "".join(str(d) for d in rng.integers(0, 10, size=int(rng.integers(low, high + 1))))


def _number(rng: np.random.Generator) -> str:
    """A number as printed in the world: counts, prices, times, dates, phone numbers, codes, percentages."""
    kind = int(rng.integers(10))
    if kind == 0:
        return str(int(rng.integers(1, 10))) + _digits(rng, 0, 4)
    if kind == 1:
        return ("$" if rng.random() < 0.5 else "") + str(int(rng.integers(1, 1000))) + "." + _digits(rng, 2, 2)
    if kind == 2:
        return f"{int(rng.integers(0, 24))}:{int(rng.integers(0, 60)):02d}"
    if kind == 3:
        separator = "/-."[int(rng.integers(3))]
        return separator.join([f"{int(rng.integers(1, 29)):02d}", f"{int(rng.integers(1, 13)):02d}",
                               str(int(rng.integers(1950, 2040)))])
    if kind == 4:
        return f"{_digits(rng, 3, 4)}-{_digits(rng, 3, 4)}" + (f"-{_digits(rng, 4, 4)}" if rng.random() < 0.4 else "")
    if kind == 5:
        return str(int(rng.integers(1, 100))) + "%"
    if kind == 6:
        return "#" + str(int(rng.integers(1, 1000)))
    if kind == 7:  # a code: letters and digits
        letters = "".join(chr(ord("A") + int(i)) for i in rng.integers(0, 26, size=int(rng.integers(1, 4))))
        return letters + ("-" if rng.random() < 0.4 else "") + _digits(rng, 1, 4)
    if kind == 8:
        return "+" + _digits(rng, 1, 3) + _digits(rng, 6, 10)
    return str(int(rng.integers(1, 10))) + "," + _digits(rng, 3, 3) + ("." + _digits(rng, 2, 2) if rng.random() < 0.3
                                                                      else "")


def _affixed(rng: np.random.Generator, word: str) -> str:
    """A word with the punctuation it often carries: a full stop, comma, quotes, brackets, a hashtag, 's."""
    kind = int(rng.integers(8))
    if kind == 0:
        return word + ".,:;!?"[int(rng.integers(6))]
    if kind == 1:
        return "(" + word + ")"
    if kind == 2:
        return '"' + word + '"'
    if kind == 3:
        return word + "'s"
    if kind == 4:
        return "#" + word
    if kind == 5:
        return "@" + word
    if kind == 6:
        return word + "..."
    return "'" + word + "'"


def _compound(rng: np.random.Generator, language: str) -> str:
    """Words written together: "www.name.com", "one-way", "AT&T"-like pairs, "in/out"."""
    first, second = _dictionary_word(rng, language), _dictionary_word(rng, language)
    kind = int(rng.integers(6))
    if kind == 0:
        return f"www.{first}{second}.com" if rng.random() < 0.5 else f"{first}.{'com' if rng.random() < .5 else 'org'}"
    if kind == 1:
        return f"{first}@{second}.com"
    return first + "-/&_"[kind - 2] + second


def real_word(rng: np.random.Generator, charset: str, min_len: int, max_len: int, language: str = "en") -> str:
    """A word as the world writes it, of `min_len` to `max_len` characters that `charset` can write (up to the case
    folding of [`_fold_case`]): a word of `language`'s frequency list (lower, capitalised or upper case), two words
    written together, a number (price, time, date, phone number, code), a word with punctuation, a made-up Vietnamese
    word (for Vietnamese), or a random string of the charset. Kinds whose characters the charset lacks are not drawn
    (no digits without digits in the charset)."""
    if language not in LANGUAGES:
        raise ValueError(f"Unknown language {language!r}; use one of {', '.join(LANGUAGES)}.")
    has_digits = any(c.isdigit() for c in charset)
    has_punctuation = any(c in PUNCTUATION for c in charset)
    has_alnum = any(c.isalnum() for c in charset)
    for _ in range(1000):
        draw = rng.random()
        if draw < 0.5:
            word = _cased(rng, _dictionary_word(rng, language))
        elif draw < 0.6 and language == "vi":
            word = vietnamese_word(rng)
        elif draw < 0.66:
            word = _cased(rng, _compound(rng, language) if has_punctuation else
                          _dictionary_word(rng, language) + _dictionary_word(rng, language))
        elif draw < 0.76 and has_digits:
            word = _number(rng)
        elif draw < 0.84 and has_punctuation:
            word = _affixed(rng, _cased(rng, _dictionary_word(rng, language)))
        elif draw >= 0.84:
            # Random strings: short ones are the most common, as in the world's codes and abbreviations.
            length = min(max_len, min_len + int(rng.exponential(4.0)))
            pool = charset if rng.random() < 0.5 else "".join(c for c in charset if c.isalnum()) or charset
            word = random_string(rng, pool, length)
        else:
            continue
        # A crop of punctuation alone ("." or "~") is no word of the world: some letter or digit is required.
        if _fits(word, charset, min_len, max_len) and (has_alnum is False or any(c.isalnum() for c in word)):
            return word
    raise ValueError(f"Cannot draw words of {min_len} to {max_len} characters of this charset; widen the range.")


def word_key(word: str) -> str:
    """What makes two words the same word for holding out: case and Unicode form do not ("Việt" is "VIỆT")."""
    return unicodedata.normalize("NFC", word).casefold()


def sample_split_words(
    num_train: int,
    num_test: int,
    charset: str = DEFAULT_CHARSET,
    min_len: int = 3,
    max_len: int = 10,
    seed: int = 0,
    kind: str = "mixed",
    num_train_words: int | None = None,
    language: str = "en",
    accept=None,
) -> tuple[list[str], list[str]]:
    """The words of each image: `num_test` distinct test words, and `num_train` training words none of which is a
    test word. With `num_train_words`, that many distinct training words are drawn and the images cycle through them
    (several renderings per word); by default every training image draws a fresh word. `language`: the word list of
    the "real" kind. `accept`: a test a word must pass to be kept (e.g. that some font covers it)."""
    if kind == "random":
        possible = sum(len(set(charset)) ** length for length in range(min_len, max_len + 1))
        if num_test > possible or (num_train and num_test >= possible):
            raise ValueError(f"Only {possible} words exist with this charset and these lengths: cannot hold out "
                             f"{num_test} test words and still train.")
    rng = np.random.default_rng([seed, 1])
    test: list[str] = []
    seen: set[str] = set()
    attempts = 0
    while len(test) < num_test:
        word = sample_word(rng, charset, min_len, max_len, kind, language)
        attempts += 1
        if accept is not None and not accept(word):
            continue
        if word_key(word) not in seen:
            seen.add(word_key(word))
            test.append(word)
        elif attempts > 100 * (num_test + 10):
            raise ValueError("Cannot draw that many distinct test words with this charset and these lengths.")
    held_out = frozenset(seen)

    rng = np.random.default_rng([seed, 2])
    pool_size = num_train if num_train_words is None else num_train_words
    pool: list[str] = []
    distinct = num_train_words is not None
    pool_seen: set[str] = set()
    attempts = 0
    while len(pool) < pool_size:
        word = sample_word(rng, charset, min_len, max_len, kind, language)
        attempts += 1
        if attempts > 100 * (pool_size + 10):
            raise ValueError("Cannot draw enough training words that are not test words.")
        if word_key(word) in held_out or (distinct and word in pool_seen) or (accept is not None and not accept(word)):
            continue
        pool_seen.add(word)
        pool.append(word)
    if num_train_words is None:
        train = pool
    else:
        order = np.random.default_rng([seed, 3]).permutation(num_train) % max(pool_size, 1)
        train = [pool[i] for i in order] if pool else []
    assert not held_out.intersection(map(word_key, train))
    return train, test


def read_words_file(path: str | os.PathLike) -> list[str]:
    """The words of a UTF-8 file, one per line: NFC, surrounding whitespace stripped, empty lines skipped."""
    with open(path, encoding="utf-8-sig") as handle:
        words = [unicodedata.normalize("NFC", line.strip()) for line in handle]
    words = [word for word in words if word]
    if not words:
        raise ValueError(f"{path} holds no words: expected one word per line (UTF-8).")
    return words


def split_word_list(words: Sequence[str], num_train: int, num_test: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Test and training words from a given list: `num_test` distinct words (see [`word_key`]) are held out, and the
    `num_train` training images draw (with replacement, uniformly) from the words that are left."""
    spellings: dict[str, str] = {}
    for word in words:
        spellings.setdefault(word_key(word), word)
    keys = list(spellings)
    if num_test > len(keys) - (1 if num_train else 0):
        raise ValueError(f"The list has {len(keys)} distinct words: cannot hold out {num_test} test words and still "
                         "train. Give more words or a smaller --num-test.")
    held_out = set(np.random.default_rng([seed, 1]).choice(len(keys), size=num_test, replace=False).tolist())
    test = [spellings[keys[index]] for index in sorted(held_out)]
    held_keys = {keys[index] for index in held_out}
    pool = [word for word in words if word_key(word) not in held_keys]
    draws = np.random.default_rng([seed, 2]).integers(len(pool), size=num_train) if num_train else []
    return [pool[index] for index in draws], test
