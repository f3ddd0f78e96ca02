"""Synthetic word images for the offline demos: rendered words as a Hugging Face (parquet) dataset.

Words come from a built-in generator (random strings over the charset, pronounceable pseudo-words, or Vietnamese
syllables with their tones: [`WORD_KINDS`]) or from a file of words, and are rendered with the TrueType fonts that
ship inside the matplotlib package (DejaVu, STIX, Computer Modern; nothing is downloaded) or with font files given
by the user (a CJK font for Chinese). A word is only drawn with a font that covers all its characters
([`~training.fonts.font_coverage`]). The test words are drawn first and never used for training, in any letter case:
the test split measures reading of *unseen* words.

Command line::

    python -m training.synth OUT_DIR --num-train 60000 --num-test 1000 [--charset ...] [--min-len 3 --max-len 10]
        [--seed 0] [--image-height 32 --image-width 128] [--words random|pseudo|mixed|vi] [--workers N]
    python -m training.synth OUT_DIR --num-train 80000 --num-test 1000 --language vi --fonts DejaVuSans DejaVuSerif
    python -m training.synth OUT_DIR --num-train 80000 --num-test 1000 --words-file words.txt --fonts NotoSansSC.otf

writes ``OUT_DIR/train/train-00000-of-000NN.parquet`` ... and ``OUT_DIR/test/...`` (columns ``image``, a
``datasets.Image`` holding PNG bytes, ``text`` and ``font``, the file name of the font it was drawn with), plus
``OUT_DIR/synth_config.json`` (settings, counts, fonts) and ``OUT_DIR/README.md`` (which fonts covered what). Load it
with ``datasets.load_dataset("parquet", data_dir=OUT_DIR)`` (splits ``train`` and ``test``) or
``load_dataset("parquet", data_files={"train": f"{OUT_DIR}/train/*.parquet", "test": f"{OUT_DIR}/test/*.parquet"})``.

Python::

    from training.synth import generate_dataset, render_word, available_fonts
    image = render_word("hello", seed=0)                      # PIL RGB image, 128x32
    generate_dataset("data/synth", num_train=60000, num_test=1000, seed=0)

Two styles. ``--style classic`` (``style="classic"``, the default of the command line and of the functions) is the
look the demos were measured on: plain, gradient or near-white backgrounds, mild distortions. The default stays
classic because `training/demo.py` relies on the command line's defaults for what it does not pass: its data, and so
its measured accuracies, stay byte-for-byte the same for a seed. ``--style realistic`` (``style="realistic"``) renders
word crops that look photographed:

- light text on a dark background as often as dark on light, vivid or grey colours; outlines, drop shadows, colour
  gradients and translucency in the text;
- textured photo-like backgrounds: gradients, fractal noise, soft blotches, strokes and edges, big glyphs of other
  text, and sometimes the edge of the panel with another rendered scene beyond it;
- fragments of neighbouring lines and words at the crop's edges; curved text (arc, wave), rotation, shear,
  perspective, crops that sometimes cut a little into the ink; uneven light, contrast changes, down-and-up scaling,
  Gaussian or motion blur, noise and JPEG;
- real words: `wordfreq`'s frequency list of the language (``--language en|vi``) in lower, title and upper case,
  mixed with numbers (prices, times, dates, phone numbers, codes), punctuation, web addresses, random strings of the
  charset and, for Vietnamese, made-up syllables; 1 to 25 characters (the model's default ``max_label_length``) of
  the 94 printable ASCII characters, or of the Vietnamese letters with digits and ASCII punctuation;
- the fonts of the `pretix-fontpack-free` package and matplotlib's DejaVu and STIX faces (about 140 TrueType files,
  each kept only under a known open licence: SIL OFL 1.1, Apache 2.0, Ubuntu Font Licence, Bitstream Vera), each
  design family about as often as any other, a word only with a font that covers all its characters; each font's
  licence is recorded in ``synth_config.json`` and the data's ``README.md``.

    python -m training.synth OUT_DIR --style realistic --num-train 100000 --num-test 1000 [--language vi]

Every image has its own random generator, seeded by (seed, split, position), so the data is byte-for-byte the same
for a seed whatever the number of worker processes (rendered in parallel, ``--workers``, with a progress bar). Across machines it also needs the same fonts (matplotlib
version), the same Pillow (its bundled FreeType rasterises the glyphs) and the same text layout engine: Pillow uses
raqm when it finds libraqm and FriBiDi at run time, else its basic layout, and the two place glyphs differently;
`--layout-engine` pins it (the engine used is recorded in ``synth_config.json``). The realistic style also depends on
the versions of the font package, of wordfreq and of Pillow's libjpeg, recorded there too.
"""

from __future__ import annotations

import argparse
import colorsys
import functools
import io
import json
import math
import os
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from training.fonts import (
    DEFAULT_CHARSET,
    FONT_PACKAGE,
    LAYOUT_ENGINES,
    OPEN_LICENCES,
    available_fonts,
    bundled_fonts,
    default_layout_engine,
    font_coverage,
    font_covers,
    font_name,
    load_font,
    font_family,
    font_licence,
    matplotlib_font_dir,
    realistic_fonts,
    resolve_fonts,
)
from training.vietnamese import VIETNAMESE_CHARSET, vietnamese_word

SHARD_ROWS = 20_000
LAYOUTS = ("tight", "left", "free")
WORD_KINDS = ("random", "pseudo", "mixed", "vi", "real")
"""Built-in word generators: random strings over the charset, pronounceable pseudo-words, half of each, Vietnamese
syllables ([`~training.vietnamese.vietnamese_word`]), or real words of a language's frequency list mixed with numbers,
punctuation and random strings ([`real_word`], the realistic style's default)."""
STYLES = ("classic", "realistic")
"""How images look: "classic" (the demos' recipe: plain or gradient backgrounds, mild distortions) or "realistic"
(textured photo-like scenes, either polarity, outlines, shadows, perspective, curves, JPEG: [`render_word`])."""
COLOR_MODES = ("random", "dark-on-light", "plain")

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


# --- rendering -------------------------------------------------------------------------------------------------------
def _luminance(color) -> float:
    r, g, b = (c / 255.0 for c in color[:3])
    return 0.299 * r + 0.587 * g + 0.114 * b


def _contrasting_colors(rng: np.random.Generator, min_contrast: float, colors: str = "random"):
    """Background and text colours whose luminances differ by at least `min_contrast` (0..1).

    `colors`: "random" (any hues, either polarity), "dark-on-light" (any hues, text darker than the background),
    "plain" (near-black text on a near-white background)."""
    if colors == "plain":
        return (int(rng.integers(225, 256)),) * 3, (int(rng.integers(0, 40)),) * 3
    for _ in range(100):
        background = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if rng.random() < 0.3:  # plenty of plain light / dark backgrounds too
            grey = int(rng.integers(0, 50)) if rng.random() < 0.3 else int(rng.integers(200, 256))
            background = (grey, grey, grey)
        foreground = tuple(int(v) for v in rng.integers(0, 256, size=3))
        if colors == "dark-on-light" and _luminance(foreground) > _luminance(background):
            background, foreground = foreground, background
        if abs(_luminance(background) - _luminance(foreground)) >= min_contrast:
            return background, foreground
    lum = _luminance(background)
    return background, ((0, 0, 0) if lum > 0.5 else (255, 255, 255))


def _background(rng: np.random.Generator, size, color, gradients: bool = True) -> Image.Image:
    width, height = size
    base = np.empty((height, width, 3), dtype=np.float32)
    base[:] = color
    if gradients and rng.random() < 0.4:  # a soft linear gradient
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-6
        ys, xs = np.mgrid[0:height, 0:width]
        ramp = (xs / max(width - 1, 1) - 0.5) * direction[0] + (ys / max(height - 1, 1) - 0.5) * direction[1]
        base += ramp[..., None] * rng.uniform(-40, 40, size=3)
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")


def render_word(
    text: str,
    seed: int | Sequence[int] | None = None,
    *,
    rng: np.random.Generator | None = None,
    fonts: Sequence[str] | None = None,
    font: str | None = None,
    image_height: int = 32,
    image_width: int = 128,
    augment: float = 1.0,
    min_contrast: float = 0.35,
    layout: str = "tight",
    colors: str = "random",
    layout_engine: str | None = None,
    style: str = "classic",
    return_mask: bool = False,
):
    """Render `text` as an RGB word crop of `image_width` x `image_height`.

    The style is drawn from `rng` (or a generator seeded with `seed`): a font among `fonts` (default: every matplotlib
    font that covers the text's characters) or the given `font`, font size, text and background colours (luminance
    difference >= `min_contrast`), an optional gradient, outline or shadow, a small rotation and shear, random
    padding (the word is cropped to its ink, padded and resized to the output size, as real crops are), blur,
    JPEG-like softness and Gaussian noise. `augment` in [0, 1] scales the strength of the geometric and noise
    distortions (0 gives clean, upright renderings). `layout_engine`: Pillow's text layout, "basic" or "raqm" (default:
    Pillow's choice, see [`~training.fonts.default_layout_engine`]).

    `style="realistic"` draws a scene instead of a clean rendering: light text on a dark background as often as dark
    on light (with `colors="random"`), vivid or grey colours, a textured photo-like background (gradient, fractal
    noise, blotches, strokes and edges, big glyphs of other text, sometimes the edge of the panel with another scene
    beyond), outlines, drop shadows, colour gradients and translucency in the text, fragments of neighbouring lines
    and words at the crop's edges, curved text (arc or wave), rotation, shear and perspective, crops that sometimes
    cut into the ink, uneven light, contrast changes, down-and-up scaling, Gaussian or motion blur, noise and JPEG
    compression; `augment` scales the geometry and the camera effects (its default font pool is
    [`~training.fonts.realistic_fonts`]). `return_mask`: return `(image, mask)`, the mask (L, output size) being
    where the text's fill lies before the camera effects, e.g. to measure the text's and the background's colours.

    `fonts` and `font` are used as given: [`generate_dataset`] passes for each word only the fonts that cover it.
    """
    if not text:
        raise ValueError("Cannot render an empty word.")
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}.")
    if style not in STYLES:
        raise ValueError(f"Unknown style {style!r}; use one of {', '.join(STYLES)}.")
    if rng is None:
        rng = np.random.default_rng(seed)
    if font is None:
        if not fonts:
            if style == "realistic":
                fonts = tuple(f for f in realistic_fonts() if set(text) - {" "} <= font_coverage(f, text))
            else:
                needed = DEFAULT_CHARSET if set(text) <= set(DEFAULT_CHARSET) else "".join(sorted(set(text)))
                fonts = available_fonts(needed)
        if not fonts:
            raise ValueError(f"No font covers every character of {text!r}.")
        font = fonts[int(rng.integers(len(fonts)))]
    if colors not in COLOR_MODES:
        raise ValueError(f"Unknown colors {colors!r}; use one of {', '.join(COLOR_MODES)}.")
    if style == "realistic":
        image, mask = _render_realistic(text, rng, font, image_height, image_width, augment, min_contrast, layout,
                                        colors, layout_engine)
        return (image, mask) if return_mask else image
    if return_mask:
        raise ValueError("return_mask is only available with style='realistic'.")
    background, foreground = _contrasting_colors(rng, min_contrast, colors)

    # Draw large on a roomy canvas, then crop to the ink: the output resolution comes from the final resize.
    size = int(rng.integers(30, 46))
    pil_font = load_font(font, size, layout_engine)
    spacing = float(rng.uniform(-0.04, 0.12)) * size if rng.random() < 0.3 else 0.0
    left, top, right, bottom = pil_font.getbbox(text)
    text_width = right - left + int(max(spacing, 0) * len(text)) + 2
    margin_x, margin_y = size // 3 + 4, size // 3 + 4 + text_width // 8  # room for shear and rotation
    canvas_size = (text_width + 2 * margin_x, (bottom - top) + 2 * margin_y)
    mask = Image.new("L", canvas_size, 0)
    draw = ImageDraw.Draw(mask)
    stroke = int(rng.integers(1, 3)) if rng.random() < 0.1 else 0
    if spacing:
        x = margin_x - left
        for char in text:
            draw.text((x, margin_y - top), char, font=pil_font, fill=255, stroke_width=stroke, stroke_fill=255)
            x += pil_font.getlength(char) + spacing
    else:
        draw.text((margin_x - left, margin_y - top), text, font=pil_font, fill=255, stroke_width=stroke,
                  stroke_fill=255)

    # Small rotation and shear of the text mask.
    angle = float(rng.normal(0, 2.5)) * augment
    shear = float(rng.normal(0, 0.12)) * augment if rng.random() < 0.5 else 0.0
    if shear:
        mask = mask.transform(mask.size, Image.Transform.AFFINE,
                              (1, shear, -shear * mask.size[1] / 2, 0, 1, 0), resample=Image.Resampling.BILINEAR)
    if abs(angle) > 0.05:
        mask = mask.rotate(angle, resample=Image.Resampling.BILINEAR, expand=False)

    box = mask.getbbox() or (0, 0, mask.size[0], mask.size[1])
    if layout != "tight":
        # Vertical extent from the font's ascender-to-descender height, not the word's ink, so that every word of a
        # font is drawn at the same scale whatever letters it has.
        _, ref_top, _, ref_bottom = pil_font.getbbox("bdfhklgjpqy0")
        box = (box[0], min(box[1], margin_y - top + ref_top), box[2], max(box[3], margin_y - top + ref_bottom))
    ink_w, ink_h = box[2] - box[0], box[3] - box[1]
    # Random padding around the ink (fractions of the ink height), more on the long side for short words.
    pad = lambda low, high: int(round(rng.uniform(low, high) * ink_h))  # noqa: E731
    pad_top, pad_bottom = pad(0.02, 0.3 * augment + 0.05), pad(0.02, 0.3 * augment + 0.05)
    pad_left, pad_right = pad(0.02, 0.4 * augment + 0.05), pad(0.02, 0.4 * augment + 0.05)
    crop_h = ink_h + pad_top + pad_bottom
    target_aspect = image_width / image_height
    crop_w = ink_w + pad_left + pad_right
    if crop_w < target_aspect * crop_h:
        # Short word. "tight": widen by a random part of the gap (the rest is stretched), word anywhere;
        # "left": fill the whole gap on the right (no stretching, the word starts near the left edge);
        # "free": fill the whole gap, the word anywhere.
        gap = target_aspect * crop_h - crop_w
        extra = int(gap * rng.uniform(0.0, 1.0)) if layout == "tight" else int(round(gap))
        share = 0.0 if layout == "left" else rng.uniform()
        pad_left += int(extra * share)
        pad_right += extra - int(extra * share)
    crop = (box[0] - pad_left, box[1] - pad_top, box[2] + pad_right, box[3] + pad_bottom)
    mask = mask.crop(crop)

    plain = colors == "plain"
    image = _background(rng, mask.size, background, gradients=not plain)
    ink = Image.new("RGB", mask.size, foreground)
    if not plain and rng.random() < 0.15:  # a shadow or outline in a third colour
        shadow_color = tuple(int(v) for v in rng.integers(0, 256, size=3))
        offset = int(rng.integers(1, 4))
        shadow = mask.transform(mask.size, Image.Transform.AFFINE, (1, 0, -offset, 0, 1, -offset))
        image.paste(Image.new("RGB", mask.size, shadow_color), (0, 0), shadow)
    image.paste(ink, (0, 0), mask)

    image = image.resize((image_width, image_height), Image.Resampling.BILINEAR)
    if rng.random() < 0.4 * augment:
        image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.0))))
    if rng.random() < 0.5 * augment:
        pixels = np.asarray(image, dtype=np.float32)
        pixels = pixels + rng.normal(0, rng.uniform(2, 12), size=pixels.shape)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    return image


# --- rendering: the realistic style ----------------------------------------------------------------------------------
def _color_of_luminance(rng: np.random.Generator, luminance: float, saturated: float) -> tuple[int, int, int]:
    """A colour of the given luminance (0..1): a random hue, vivid with probability `saturated`, else near grey."""
    hue = rng.random()
    saturation = rng.uniform(0.35, 1.0) if rng.random() < saturated else rng.uniform(0.0, 0.12)
    pure = np.array(colorsys.hsv_to_rgb(hue, saturation, 1.0))
    base = float(pure @ _LUMA)
    if luminance <= base:
        rgb = pure * (luminance / base)
    else:  # lighter than the pure hue can be: mix in white
        rgb = pure + (1.0 - pure) * (luminance - base) / max(1.0 - base, 1e-6)
    return tuple(int(round(v)) for v in np.clip(rgb * 255.0, 0, 255))


_LUMA = np.array([0.299, 0.587, 0.114])


def _polarity_colors(rng: np.random.Generator, min_contrast: float, colors: str):
    """(background, text, light_text): light text on a dark background as often as dark text on a light one (with
    `colors="random"`), a luminance gap of at least `min_contrast`, vivid colours about half the time."""
    if colors == "plain":
        return (int(rng.integers(215, 256)),) * 3, (int(rng.integers(0, 45)),) * 3, False
    light_text = colors == "random" and rng.random() < 0.5
    gap = float(rng.uniform(min_contrast, max(min_contrast, 0.9)))
    low = float(rng.uniform(0.0, 1.0 - gap))
    high = float(rng.uniform(low + gap, 1.0))
    dark, light = (low, high)
    background_lum, text_lum = (dark, light) if light_text else (light, dark)
    background = _color_of_luminance(rng, background_lum, 0.45)
    text = _color_of_luminance(rng, text_lum, 0.5)
    return background, text, light_text


def _value_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1] at `height` x `width`: a coarse random grid (`cells` across the height) upsampled."""
    grid_h = max(2, cells)
    grid_w = max(2, int(round(cells * width / max(height, 1))))
    grid = Image.fromarray(rng.random((grid_h, grid_w), dtype=np.float32), "F")
    return np.asarray(grid.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)


def _scene(rng: np.random.Generator, height: int, width: int, color, amplitude: float, font, glyphs: str,
           layout_engine, busy: bool = False) -> np.ndarray:
    """A photo-like background, float RGB: a base colour under a gradient, fractal noise, soft blotches, strokes and
    edges, and large out-of-focus glyphs (parts of other text), each with some probability (`busy`: strokes and
    glyphs always, for the other scenes seen beyond a panel's edge). `amplitude` (0..255) bounds how far the texture
    strays from the base colour, so the text keeps its contrast."""
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:] = color
    if rng.random() < 0.6:  # a gradient: light falling across the surface
        direction = rng.normal(size=2)
        direction /= np.linalg.norm(direction) + 1e-6
        ys = np.linspace(-0.5, 0.5, height, dtype=np.float32)[:, None]
        xs = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :] * (width / max(height, 1)) * 0.25
        ramp = xs * direction[0] + ys * direction[1]
        image += ramp[..., None] * (rng.uniform(-1.0, 1.0, size=3).astype(np.float32) * amplitude * 1.5)
    if rng.random() < 0.65:  # fractal noise: paper, concrete, wood, foliage
        noise = np.zeros((height, width), dtype=np.float32)
        weight_sum = 0.0
        for octave in range(int(rng.integers(1, 4))):
            weight = 0.5 ** octave
            noise += weight * _value_noise(rng, height, width, int(rng.integers(2, 6)) * 2 ** octave)
            weight_sum += weight
        noise = noise / weight_sum - 0.5
        tint = rng.uniform(0.5, 1.0, size=3).astype(np.float32) if rng.random() < 0.5 else np.ones(3, np.float32)
        image += noise[..., None] * tint * (amplitude * 2.0 * rng.uniform(0.4, 1.0))
    layer = None
    if rng.random() < 0.3:  # soft blotches: stains, leaves, light spots
        layer = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(layer)
        for _ in range(int(rng.integers(1, 5))):
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            rx, ry = rng.uniform(2, height * 1.2), rng.uniform(2, height * 0.8)
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=int(rng.integers(80, 256)))
        layer = layer.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.0, 4.0))))
        shade = np.asarray(layer, dtype=np.float32)[..., None] / 255.0
        image += shade * (rng.uniform(-1.0, 1.0, size=3).astype(np.float32) * amplitude * 1.5)
    if busy or rng.random() < 0.3:  # strokes and edges: cables, frames, the border of a panel
        layer = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(layer)
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.5:  # a straight edge near the top or bottom
                y = float(rng.uniform(0, height * 0.2) if rng.random() < 0.5 else rng.uniform(height * 0.8, height))
                points = [(0, y + rng.normal(0, 1.5)), (width, y + rng.normal(0, 1.5))]
            else:
                points = [(float(rng.uniform(-10, width + 10)), float(rng.uniform(-10, height + 10)))
                          for _ in range(int(rng.integers(2, 4)))]
            draw.line(points, fill=int(rng.integers(120, 256)), width=int(rng.integers(1, 4)))
        stroke = np.asarray(layer, dtype=np.float32)[..., None] / 255.0
        stroke_color = np.asarray(_color_of_luminance(rng, rng.random(), 0.4), dtype=np.float32)
        strength = rng.uniform(0.3, 1.0) * min(1.0, amplitude / 60.0 + 0.3)
        image = image * (1 - stroke * strength) + stroke_color * stroke * strength
    if glyphs and (busy or rng.random() < 0.2):  # big glyphs of other text, low contrast
        layer = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(layer)
        for _ in range(int(rng.integers(1, 3))):
            size = int(rng.integers(max(8, height), max(9, int(height * 2.5))))
            char = glyphs[int(rng.integers(len(glyphs)))]
            draw.text((float(rng.uniform(-size * 0.5, width)), float(rng.uniform(-size * 0.8, height * 0.5))), char,
                      font=load_font(font, size, layout_engine), fill=int(rng.integers(100, 256)))
        layer = layer.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.5))))
        glyph = np.asarray(layer, dtype=np.float32)[..., None] / 255.0
        image += glyph * (rng.uniform(-1.0, 1.0, size=3).astype(np.float32) * amplitude)
    return image


def _solve_homography(source, target) -> tuple[float, ...]:
    """The 8 coefficients PIL's perspective transform wants: the map from each `target` corner back to its `source`
    corner (PIL asks, for each output pixel, where to read)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(target, source):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    return tuple(float(c) for c in np.linalg.solve(np.asarray(rows, dtype=np.float64), np.asarray(rhs)))


def _map_points(coefficients, points) -> np.ndarray:
    """Points through a perspective map given as PIL's 8 coefficients."""
    a, b, c, d, e, f, g, h = coefficients
    points = np.asarray(points, dtype=np.float64)
    x, y = points[:, 0], points[:, 1]
    denominator = g * x + h * y + 1.0
    return np.stack([(a * x + b * y + c) / denominator, (d * x + e * y + f) / denominator], axis=1)


def _curve(image: Image.Image, rng: np.random.Generator, amount: float) -> Image.Image:
    """Bend the text along an arc or a wave (vertical offsets per column), as on bottles, badges and flags."""
    width, height = image.size
    strips = 16
    arc = rng.random() < 0.6
    phase = rng.uniform(0, 2 * np.pi)
    periods = rng.uniform(0.5, 1.5)

    def offset(x):
        t = x / max(width, 1)
        return amount * ((2 * t - 1) ** 2 - 0.5) if arc else amount * np.sin(2 * np.pi * periods * t + phase)

    mesh = []
    for i in range(strips):
        x0, x1 = int(round(i * width / strips)), int(round((i + 1) * width / strips))
        d0, d1 = offset(x0), offset(x1)
        # output box -> input quad (upper-left, lower-left, lower-right, upper-right)
        mesh.append(((x0, 0, x1, height), (x0, d0, x0, height + d0, x1, height + d1, x1, d1)))
    return image.transform(image.size, Image.Transform.MESH, mesh, resample=Image.Resampling.BILINEAR)


def _shifted(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = mask[ys, xs]
    return out


def _neighbour_text(rng: np.random.Generator, text: str) -> str:
    """Other text of the same sign or page, made of the word's own characters (so the font surely draws them)."""
    characters = [c for c in text if not c.isspace()] or ["x"]
    length = int(rng.integers(3, 16))
    return "".join(characters[int(i)] for i in rng.integers(0, len(characters), size=length))


def _render_realistic(text, rng, font, image_height, image_width, augment, min_contrast, layout, colors,
                      layout_engine):
    """The realistic style (see [`render_word`]). Returns the image and the text's coverage mask (L, output size)."""
    background, foreground, light_text = _polarity_colors(rng, min_contrast, colors)
    gap = abs(_luminance(background) - _luminance(foreground))

    # --- the text and its neighbours, large, as masks packed in one RGB image: R fill, G outline, B neighbours ---
    size = int(rng.integers(24, 42))
    pil_font = load_font(font, size, layout_engine)
    spacing = float(rng.uniform(-0.03, 0.25)) * size if rng.random() < 0.25 else 0.0
    left, top, right, bottom = pil_font.getbbox(text)
    ascent, descent = pil_font.getmetrics()
    line_height = ascent + descent
    text_width = right - left + int(max(spacing, 0.0) * len(text)) + 2
    # Room for the neighbours' edges only: the crop is mapped from the canvas, and what lies outside it is blank.
    margin_x, margin_y = int(line_height * 0.8), int(line_height * 0.7)
    canvas = (text_width + 2 * margin_x, (bottom - top) + 2 * margin_y)
    origin = (margin_x - left, margin_y - top)
    outline = int(rng.integers(1, max(2, size // 12) + 1)) if rng.random() < 0.2 else 0
    bold = 1 if rng.random() < 0.1 else 0
    channels = [Image.new("L", canvas, 0) for _ in range(3)]
    fill_draw, outline_draw = ImageDraw.Draw(channels[0]), ImageDraw.Draw(channels[1])

    def draw_word(draw, stroke):
        if spacing:
            x = origin[0]
            for char in text:
                draw.text((x, origin[1]), char, font=pil_font, fill=255, stroke_width=stroke, stroke_fill=255)
                x += pil_font.getlength(char) + spacing
        else:
            draw.text(origin, text, font=pil_font, fill=255, stroke_width=stroke, stroke_fill=255)

    draw_word(fill_draw, bold)
    if outline:
        draw_word(outline_draw, bold + outline)
    neighbours = rng.random() < 0.35
    side_gaps = {}  # side -> distance (canvas pixels) from the word's ink to a neighbouring word's
    if neighbours:  # lines above and below, words to the left and right: their edges show in a real crop
        draw = ImageDraw.Draw(channels[2])
        ink = channels[0].getbbox() or (0, 0, canvas[0], canvas[1])
        for side in ("above", "below", "left", "right"):
            if rng.random() < 0.5:
                continue
            other = _neighbour_text(rng, text)
            if side in ("above", "below"):
                step = line_height * rng.uniform(1.0, 1.45) * (-1 if side == "above" else 1)
                position = (origin[0] + rng.uniform(-0.5, 0.5) * text_width, origin[1] + step)
            else:
                space = pil_font.getlength(" ") * rng.uniform(0.8, 2.0) + 1
                other_left, _, other_right, _ = pil_font.getbbox(other)
                x = ink[0] - space - other_right if side == "left" else ink[2] + space - other_left
                position = (x, origin[1])
                side_gaps[side] = space
            draw.text(position, other, font=pil_font, fill=255)
    packed = Image.merge("RGB", channels)

    # --- geometry: a curve, then one perspective map for rotation, shear and perspective ---
    if rng.random() < 0.15 * augment:
        packed = _curve(packed, rng, float(rng.uniform(0.1, 0.35)) * line_height * augment)
    width, height = packed.size
    ink = packed.getchannel(1 if outline else 0).getbbox() or (0, 0, width, height)
    text_w, text_h = max(ink[2] - ink[0], 1), max(ink[3] - ink[1], 1)
    angle = np.deg2rad(rng.normal(0, 3.0) if rng.random() < 0.85 else rng.uniform(-15, 15)) * augment
    # A long word turns less: its slant across the crop stays within 1.5 text heights (else the crop's height is
    # mostly slant, and the letters come out a few pixels high).
    limit_angle = max(np.deg2rad(2.0), float(np.arctan(1.5 * text_h / text_w)))
    angle = float(np.clip(angle, -limit_angle, limit_angle))
    shear = float(rng.normal(0, 0.15)) * augment if rng.random() < 0.4 else 0.0
    corners = np.array([(0, 0), (width, 0), (width, height), (0, height)], dtype=np.float64)
    moved = corners - corners.mean(axis=0)
    moved[:, 0] += shear * moved[:, 1]
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = moved @ rotation.T
    if rng.random() < 0.5 * augment:  # perspective: each corner moves by up to a fraction of the text height
        moved += rng.uniform(-1, 1, size=(4, 2)) * (bottom - top) * 0.35 * augment
    to_scene = _solve_homography(moved, corners)  # canvas -> the warped plane
    to_canvas = _solve_homography(corners, moved)  # and back

    # --- the crop, in the warped plane: the word's ink, padded (sometimes cut a little), wider for short words ---
    quad = _map_points(to_scene, [(ink[0], ink[1]), (ink[2], ink[1]), (ink[2], ink[3]), (ink[0], ink[3])])
    box = (*quad.min(axis=0), *quad.max(axis=0))
    ink_w, ink_h = box[2] - box[0], box[3] - box[1]

    def pad(low, high, cut):  # fractions of the text's own height, not of the slanted box's
        if rng.random() < cut:
            return -rng.uniform(0.0, low) * text_h
        return rng.uniform(0.02, high) * text_h

    # Cuts stay within 5% of the ink height: a descender's tip or an accent's edge, never a full stop.
    pad_top, pad_bottom = pad(0.05, 0.05 + 0.3 * augment, 0.08 * augment), pad(0.05, 0.05 + 0.3 * augment,
                                                                                0.08 * augment)
    char_w = text_w / max(len(text), 1)
    cut = min(0.1, 0.25 * char_w / text_h)
    pad_left = pad(cut, 0.05 + 0.5 * augment, 0.05 * augment)
    pad_right = pad(cut, 0.05 + 0.5 * augment, 0.05 * augment)
    # A neighbouring word shows only in part: the crop ends within a third of a character past the space.
    limit = {side: gap_px + 0.3 * char_w for side, gap_px in side_gaps.items()}
    pad_left, pad_right = min(pad_left, limit.get("left", pad_left)), min(pad_right, limit.get("right", pad_right))
    crop_h = ink_h + pad_top + pad_bottom
    crop_w = ink_w + pad_left + pad_right
    target_aspect = image_width / image_height
    if crop_w < target_aspect * crop_h:
        gap_w = target_aspect * crop_h - crop_w
        extra = gap_w * rng.uniform(0.0, 1.0) if layout == "tight" else gap_w
        share = 0.0 if layout == "left" else rng.uniform()
        if side_gaps:  # widen only where no neighbour would come in whole
            room_left = limit.get("left", 1e9) - pad_left
            room_right = limit.get("right", 1e9) - pad_right
            extra = min(extra, room_left + room_right)
            share = min(1.0, room_left / max(extra, 1)) if room_right < extra else min(share, room_left / max(extra, 1))
        pad_left += extra * share
        pad_right += extra * (1.0 - share)
        crop_w = ink_w + pad_left + pad_right
    x0, y0, x1, y1 = box[0] - pad_left, box[1] - pad_top, box[2] + pad_right, box[3] + pad_bottom
    # One perspective map from the output straight back to the canvas: only the crop's pixels are computed, at about
    # the crop's own resolution (at most 4x the output's), then scaled down to the output with filtering.
    work = (int(np.clip(round(x1 - x0), image_width, 4 * image_width)),
            int(np.clip(round(y1 - y0), image_height, 3 * image_height)))
    source = _map_points(to_canvas, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    target = [(0, 0), (work[0], 0), (work[0], work[1]), (0, work[1])]
    masks = packed.transform(work, Image.Transform.PERSPECTIVE, _solve_homography(source, target),
                             resample=Image.Resampling.BILINEAR)
    if work != (image_width, image_height):
        masks = masks.resize((image_width, image_height), Image.Resampling.BILINEAR)
    masks = np.asarray(masks, dtype=np.float32) / 255.0
    fill, ring, others = masks[..., 0:1], masks[..., 1:2], masks[..., 2:3]

    # --- the scene behind the text ---
    amplitude = 255.0 * gap * float(rng.uniform(0.1, 0.45)) * (0.3 + 0.7 * augment)
    glyphs = "".join(c for c in text if not c.isspace())
    image = _scene(rng, image_height, image_width, background, amplitude, font, glyphs, layout_engine)
    if rng.random() < 0.12:  # the sign's edge: outside a panel around the text lies a crop of another scene
        other_color = _color_of_luminance(rng, rng.random(), 0.5)
        other = _scene(rng, image_height, image_width, other_color, 255.0 * rng.uniform(0.1, 0.4), font, glyphs,
                       layout_engine, busy=True)
        ys, xs = np.nonzero(fill[..., 0] > 0.3)
        if len(xs):
            panel = Image.new("L", (image_width, image_height), 0)
            margin_x_out = rng.uniform(0.05, 1.5, size=2) * image_height
            margin_y_out = rng.uniform(0.02, 0.6, size=2) * image_height
            ImageDraw.Draw(panel).rounded_rectangle(
                (xs.min() - margin_x_out[0], ys.min() - margin_y_out[0], xs.max() + margin_x_out[1],
                 ys.max() + margin_y_out[1]), radius=int(rng.integers(0, image_height // 3 + 1)), fill=255)
            inside = np.asarray(panel.filter(ImageFilter.GaussianBlur(0.7)), dtype=np.float32)[..., None] / 255.0
            image = image * inside + other * (1.0 - inside)

    # --- the text: shadow, neighbours, outline, fill ---
    text_color = np.asarray(foreground, dtype=np.float32)
    if rng.random() < 0.2:  # a vertical gradient between two colours of about the same luminance
        second = np.asarray(_color_of_luminance(rng, _luminance(foreground), 0.6), dtype=np.float32)
        ramp = np.linspace(0.0, 1.0, image_height, dtype=np.float32)[:, None, None]
        text_color = text_color + (second - text_color) * ramp
    body = np.maximum(fill, ring)
    if rng.random() < 0.2:  # a drop shadow (soft or hard) or an extrusion
        dx, dy = (int(v) for v in rng.integers(-2, 3, size=2))
        dx, dy = (dx or 1), (dy or 1)
        shadow = _shifted(body[..., 0], dx, dy)
        if rng.random() < 0.5:
            shadow_image = Image.fromarray((shadow * 255).astype(np.uint8), "L")
            shadow = np.asarray(shadow_image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.5)))),
                                dtype=np.float32) / 255.0
        shadow_lum = _luminance(foreground) - 0.6 if light_text else _luminance(background) - 0.5
        shadow_color = np.asarray(_color_of_luminance(rng, float(np.clip(shadow_lum, 0.0, 1.0)), 0.3), np.float32)
        strength = float(rng.uniform(0.5, 1.0))
        image = image + (shadow_color - image) * (shadow[..., None] * strength)
    if neighbours:
        neighbour_color = text_color if rng.random() < 0.7 else np.asarray(
            _color_of_luminance(rng, _luminance(foreground), 0.5), dtype=np.float32)
        image = image + (neighbour_color - image) * others
    if outline:
        outline_lum = (_luminance(foreground) + (0.5 if not light_text else -0.5)) if rng.random() < 0.5 else (
            _luminance(background) + (-0.45 if not light_text else 0.45))
        outline_color = np.asarray(_color_of_luminance(rng, float(np.clip(outline_lum, 0, 1)), 0.5), np.float32)
        image = image + (outline_color - image) * ring
    opacity = float(rng.uniform(0.75, 1.0)) if rng.random() < 0.2 else 1.0
    image = image + (text_color - image) * (fill * opacity)

    # --- light and camera: illumination, contrast, resolution, blur, noise, JPEG ---
    if rng.random() < 0.4 * augment:
        light = 1.0 + (_value_noise(rng, image_height, image_width, 2) - 0.5) * rng.uniform(0.2, 0.6)
        image = image * light[..., None]
    if rng.random() < 0.3 * augment:  # washed out or harsh
        contrast = rng.uniform(0.6, 1.25)
        image = (image - 128.0) * contrast + 128.0 + rng.uniform(-20, 20)
    result = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")
    # At most two of the three strong losses (resolution, blur, JPEG), so that the word stays legible.
    losses = rng.random(3) < np.array([0.3, 0.35, 0.45]) * augment
    if losses.all():
        losses[int(rng.integers(3))] = False
    if losses[0]:  # low resolution: down and back up
        factor = rng.uniform(0.45, 0.85)
        small = (max(4, int(image_width * factor)), max(4, int(image_height * factor)))
        result = result.resize(small, Image.Resampling.BILINEAR).resize(
            (image_width, image_height), Image.Resampling.BILINEAR if rng.random() < 0.7 else Image.Resampling.NEAREST)
    if losses[1]:
        if rng.random() < 0.3:  # motion blur along a short horizontal or vertical line
            kernel = [0.0] * 9
            for index in ((3, 4, 5) if rng.random() < 0.6 else (1, 4, 7)):
                kernel[index] = 1.0
            result = result.filter(ImageFilter.Kernel((3, 3), kernel, scale=3))
        else:
            result = result.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    if rng.random() < 0.6 * augment:
        pixels = np.asarray(result, dtype=np.float32)
        sigma = rng.uniform(2, 10) * augment
        shape = pixels.shape[:2] + ((1,) if rng.random() < 0.5 else (3,))
        pixels = pixels + rng.normal(0, sigma, size=shape).astype(np.float32)
        result = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if losses[2]:
        buffer = io.BytesIO()
        result.save(buffer, format="JPEG", quality=int(rng.integers(15, 80)))
        result = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    mask = Image.fromarray((np.clip(fill[..., 0], 0, 1) * 255).astype(np.uint8), "L")
    return result, mask


# --- datasets --------------------------------------------------------------------------------------------------------
def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _render_chunk(job) -> list[tuple[bytes, int]]:
    """PNG bytes and font index of each word of a chunk. Every image has its own generator, seeded by its position
    in the split, so the output does not depend on how the words are cut into chunks or spread over processes."""
    words, eligible_fonts, seed, split_id, start, fonts, style, font_weights = job
    out = []
    for offset, (word, eligible) in enumerate(zip(words, eligible_fonts)):
        rng = np.random.default_rng([seed, split_id, start + offset])
        if font_weights is None:
            # The first draw of `render_word` when it picks the font itself: the same image either way.
            index = eligible[int(rng.integers(len(eligible)))]
        else:  # each design about as often as any other (a family's faces share its weight)
            weights = np.cumsum([font_weights[i] for i in eligible])
            index = eligible[min(int(np.searchsorted(weights, rng.random() * weights[-1], side="right")),
                                 len(eligible) - 1)]
        out.append((_png_bytes(render_word(word, rng=rng, font=fonts[index], **style)), index))
    return out


def rendering_versions(style: str = "classic") -> dict:
    """Versions of what renders the images: matplotlib (its DejaVu font files), Pillow and its FreeType, numpy; for
    the realistic style also the font package, wordfreq (the words) and Pillow's libjpeg (the JPEG losses)."""
    import matplotlib
    import PIL
    from PIL import features

    versions = {"matplotlib": matplotlib.__version__, "pillow": PIL.__version__,
                "freetype": features.version("freetype2"), "numpy": np.__version__}
    if style == "realistic":
        versions.update({FONT_PACKAGE: _version_of(FONT_PACKAGE), "wordfreq": _version_of("wordfreq"),
                         "libjpeg": features.version("jpg")})
    return versions


def _version_of(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _render_all(words, eligible_fonts, seed, split_id, fonts, style, workers, chunk_size=500, font_weights=None,
                progress: str | None = None):
    """Render every word, in `workers` processes, with a progress bar titled `progress` (none when `None`)."""
    from tqdm.auto import tqdm

    jobs = [(words[i:i + chunk_size], eligible_fonts[i:i + chunk_size], seed, split_id, i, fonts, style,
             font_weights) for i in range(0, len(words), chunk_size)]
    results = []
    with tqdm(total=len(words), desc=progress, disable=progress is None, mininterval=1.0) as bar:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(_render_chunk(job))
                bar.update(len(job[0]))
        else:
            with get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
                for chunk_result in pool.imap(_render_chunk, jobs, chunksize=1):  # in order: the same files
                    results.append(chunk_result)
                    bar.update(len(chunk_result))
    return [item for chunk_result in results for item in chunk_result]


def _write_split(directory: Path, split: str, images: list[bytes], texts: list[str], font_names: list[str],
                 shard_rows: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Features, Image as ImageFeature, Value

    features = Features({"image": ImageFeature(), "text": Value("string"), "font": Value("string")})
    schema = features.arrow_schema
    split_dir = directory / split
    split_dir.mkdir(parents=True, exist_ok=True)
    for old in split_dir.glob("*.parquet"):
        old.unlink()
    num_shards = max(1, math.ceil(len(texts) / shard_rows))
    paths = []
    for shard in range(num_shards):
        rows = slice(shard * shard_rows, (shard + 1) * shard_rows)
        table = pa.table(
            {
                "image": [{"bytes": png, "path": None} for png in images[rows]],
                "text": texts[rows],
                "font": font_names[rows],
            },
            schema=schema,
        )
        path = split_dir / f"{split}-{shard:05d}-of-{num_shards:05d}.parquet"
        pq.write_table(table, path)
        paths.append(str(path))
    return paths


class FontPlan:
    """Which fonts may draw which word: a font is used for a word only if it covers every character of it.

    Built-in generators write any character of their charset, so only fonts covering the whole charset are kept
    ([`for_charset`]); words from a list are matched font by font ([`for_words`]), and a word that no font covers is
    left out.

    Attributes:
        fonts: the font files kept, sorted by path.
        coverage: font file -> the characters of the data it draws.
        left_out: font file -> why it was not kept.
        needed: the characters the words may hold.
    """

    def __init__(self, fonts, coverage, left_out, needed):
        self.fonts = tuple(fonts)
        self.coverage = coverage
        self.left_out = left_out
        self.needed = needed
        self._eligible_cache: dict[frozenset, tuple[int, ...]] = {}

    @classmethod
    def for_charset(cls, candidates: Sequence[str], charset: str) -> FontPlan:
        needed = frozenset(charset)
        coverage = {font: font_coverage(font, charset) & needed for font in candidates}
        fonts = sorted(font for font in candidates if coverage[font] == needed)
        left_out = {font: _lacks(needed - coverage[font], needed) for font in candidates if font not in fonts}
        return cls(fonts, {font: coverage[font] for font in fonts}, left_out, needed)

    @classmethod
    def for_words(cls, candidates: Sequence[str], words: Sequence[str], require: str = "") -> FontPlan:
        """Fonts that cover any character of `words` (and all of `require`: the realistic style requires the
        charset's ASCII letters and digits, which leaves out symbol fonts that only draw brackets)."""
        needed = frozenset(char for word in words for char in word if not char.isspace())
        characters = "".join(sorted(needed | set(require)))
        coverage = {font: font_coverage(font, characters) for font in candidates}
        required = frozenset(require)
        fonts = sorted(font for font in candidates if coverage[font] and required <= coverage[font])
        left_out = {font: "covers none of the characters" if not coverage[font] else
                    _lacks(required - coverage[font], required) + " it must draw"
                    for font in candidates if font not in fonts}
        return cls(fonts, {font: coverage[font] & needed for font in fonts}, left_out, needed)

    def eligible(self, word: str) -> tuple[int, ...]:
        """Indices (into `fonts`) of the fonts that draw every character of `word` (whitespace needs no glyph)."""
        characters = frozenset(char for char in word if not char.isspace())
        cached = self._eligible_cache.get(characters)
        if cached is None:
            cached = self._eligible_cache[characters] = tuple(
                index for index, font in enumerate(self.fonts) if characters <= self.coverage[font]
            )
        return cached

    def describe(self) -> dict:
        """File name -> what the font covers of the data's characters, for the summary and the README."""
        described = {}
        for font in self.fonts:
            missing = self.needed - self.coverage[font]
            licence = font_licence(font)
            described[Path(font).name] = {"name": font_name(font), "path": font, "missing": _missing(missing),
                                          "family": font_family(font), **licence}
        return described


def _missing(characters) -> str:
    return "".join(sorted(characters))


def _lacks(missing, needed) -> str:
    if missing == needed:
        return "draws none of the characters"
    listed = f": {_missing(missing)}" if len(missing) <= 24 else ""
    return f"lacks {len(missing)} of the {len(needed)} characters{listed}"


def default_charset(words: str, style: str = "classic", language: str = "en") -> str:
    """The charset a built-in word source writes by default: 0-9a-z, or the Vietnamese letters for `words="vi"`;
    real words (the realistic style's default) get the 94 printable ASCII characters in English, the Vietnamese
    letters with digits and ASCII punctuation in Vietnamese."""
    if words == "real":
        return PRINTABLE_ASCII if language == "en" else VIETNAMESE_CHARSET + "0123456789" + PUNCTUATION
    return VIETNAMESE_CHARSET if words == "vi" else DEFAULT_CHARSET


def _resolve_words(words: str, words_file, charset: str | None, min_len: int | None, max_len: int | None,
                   style: str = "classic", language: str = "en"):
    """The charset and length bounds the word source needs, and the word list (or `None`)."""
    if words_file is not None:
        word_list = read_words_file(words_file)
        if charset is not None:
            allowed = set(charset)
            word_list = [word for word in word_list if set("".join(word.split())) <= allowed]
            if not word_list:
                raise ValueError(f"No word of {words_file} uses only characters of the charset.")
        shortest = 1 if min_len is None else min_len
        longest = max(len(word) for word in word_list) if max_len is None else max_len
        word_list = [word for word in word_list if shortest <= len(word) <= longest]
        if not word_list:
            raise ValueError(f"No word of {words_file} has {shortest} to {longest} characters.")
        return charset, shortest, longest, word_list
    if words not in WORD_KINDS:
        raise ValueError(f"Unknown word kind {words!r}; use one of {', '.join(WORD_KINDS)}.")
    if charset is None:
        charset = default_charset(words, style, language)
    # The realistic style: up to the model's default max_label_length (25).
    default_min, default_max = (1, 25) if style == "realistic" else (1, 14) if words == "vi" else (3, 10)
    return charset, default_min if min_len is None else min_len, default_max if max_len is None else max_len, None


def generate_dataset(
    out_dir: str | os.PathLike,
    num_train: int,
    num_test: int,
    charset: str | None = None,
    min_len: int | None = None,
    max_len: int | None = None,
    seed: int = 0,
    image_height: int = 32,
    image_width: int = 128,
    words: str | None = None,
    num_train_words: int | None = None,
    augment: float = 1.0,
    test_augment: float | None = None,
    layout: str = "tight",
    colors: str = "random",
    fonts: Sequence[str] | None = None,
    workers: int | None = None,
    shard_rows: int = SHARD_ROWS,
    verbose: bool = False,
    words_file: str | os.PathLike | None = None,
    layout_engine: str | None = None,
    chunk_size: int = 500,
    style: str = "classic",
    language: str = "en",
    min_contrast: float | None = None,
) -> dict:
    """Render the train and test splits into `out_dir` (see the module docstring). Returns a summary dict (also
    written to `out_dir/synth_config.json`, and described in `out_dir/README.md`) with the settings, counts, the
    fonts and what they covered, and the time it took.

    `words`: a built-in generator (see [`WORD_KINDS`]; `charset` defaults to its alphabet, the lengths to 3-10, or
    1-14 for Vietnamese), unless `words_file` gives the words (one per line; `charset`, if given, keeps only the
    words it can write). `fonts`: see [`~training.fonts.resolve_fonts`]. `layout_engine`: Pillow's text layout,
    "basic" or "raqm" (default: Pillow's own choice, recorded in the summary). `chunk_size`: words per task of a worker
    process (the images do not depend on it, nor on `workers`).

    `style`: "classic" (the default, and what the demos' recipes measured) or "realistic" (see [`render_word`]): its
    words default to "real" ([`real_word`]: `language`'s frequency list from `wordfreq`, numbers, punctuation, random
    strings; up to 25 characters of [`default_charset`]), its fonts to [`~training.fonts.realistic_fonts`] (a word is
    drawn only with a font covering all its characters, each font family about equally often), and each font's
    licence is recorded in the summary and the README. `language` ("en", "vi"): the word list of "real" words, and
    the Vietnamese generator when `words` is not given in the classic style. `min_contrast`: the least luminance gap
    between text and background (default 0.35 classic, 0.3 realistic). With `verbose`, a progress bar per split.
    """
    if style not in STYLES:
        raise ValueError(f"Unknown style {style!r}; use one of {', '.join(STYLES)}.")
    if language not in LANGUAGES:
        raise ValueError(f"Unknown language {language!r}; use one of {', '.join(LANGUAGES)}.")
    if words is None:
        words = "real" if style == "realistic" else "vi" if language == "vi" else "mixed"
    if min_contrast is None:
        min_contrast = 0.3 if style == "realistic" else 0.35
    charset, min_len, max_len, word_list = _resolve_words(words, words_file, charset, min_len, max_len, style,
                                                          language)
    if min_len < 1 or max_len < min_len:
        raise ValueError(f"Need 1 <= min_len <= max_len, got {min_len}, {max_len}.")
    if charset is not None and len(set(charset)) != len(charset):
        raise ValueError("The charset lists a character more than once.")
    if layout_engine is None:
        layout_engine = default_layout_engine()
    elif layout_engine == "raqm" and default_layout_engine() != "raqm":
        raise ValueError("Pillow cannot use the raqm layout here (it needs libraqm and libfribidi at run time): "
                         "install FriBiDi (e.g. `apt install libfribidi0`) or use layout_engine='basic'.")
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    realistic = style == "realistic"
    if realistic:
        candidates = realistic_fonts() if not fonts else resolve_fonts(fonts, bundled=bundled_fonts())
    else:
        candidates = resolve_fonts(fonts)
    dropped_words: list[str] = []
    if word_list is None and realistic:
        # Each word is matched font by font (the charset may hold characters only some fonts draw); words may be
        # drawn in upper or title case even when the charset has one case only (the label rule folds them).
        letters = "".join(dict.fromkeys(charset + charset.upper() + charset.lower()))
        plan = FontPlan.for_words(candidates, [letters], require="".join(
            c for c in letters if c.isascii() and c.isalnum()))
        if not plan.fonts:
            raise ValueError(f"None of the fonts {list(fonts or ['(realistic)'])} draws any character of the charset.")
        train_words, test_words = sample_split_words(
            num_train, num_test, charset, min_len, max_len, seed, words, num_train_words, language=language,
            accept=lambda word: bool(plan.eligible(word)),
        )
    elif word_list is None:
        plan = FontPlan.for_charset(candidates, charset)
        if not plan.fonts:
            raise ValueError(f"None of the fonts {list(fonts or ['(matplotlib)'])} can render the charset.")
        train_words, test_words = sample_split_words(
            num_train, num_test, charset, min_len, max_len, seed, words, num_train_words, language=language
        )
    else:
        plan = FontPlan.for_words(candidates, word_list)
        dropped_words = sorted({word for word in word_list if not plan.eligible(word)})
        usable = [word for word in word_list if plan.eligible(word)]
        if not usable:
            raise ValueError(f"No font among {len(candidates)} covers any word of {words_file}: pass fonts for this "
                             "script with --fonts (font files, directories, or installed family names).")
        train_words, test_words = split_word_list(usable, num_train, num_test, seed)
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    test_augment = augment if test_augment is None else test_augment
    characters = "".join(sorted({char for word in train_words + test_words for char in word}))
    summary = {
        "num_train": num_train, "num_test": num_test, "charset": charset, "min_len": min_len, "max_len": max_len,
        "seed": seed, "image_height": image_height, "image_width": image_width,
        "words": "file" if word_list is not None else words,
        "words_file": None if words_file is None else str(words_file),
        "num_train_words": num_train_words, "distinct_train_words": len(set(train_words)),
        # What else decides the pixels of a seed: the font files, the rasteriser, the random generators.
        "versions": rendering_versions(style),
        "style": style, "language": language, "min_contrast": min_contrast,
        "augment": augment, "test_augment": test_augment, "layout": layout, "colors": colors,
        "layout_engine": layout_engine,
        "fonts": [Path(f).name for f in plan.fonts],
        "characters": characters,
        "font_coverage": plan.describe(),
        "fonts_left_out": {Path(font).name: reason for font, reason in plan.left_out.items()},
        "words_without_font": {"count": len(dropped_words), "examples": dropped_words[:20]},
        "images_per_font": {},
    }
    if realistic:
        summary["font_licences"] = dict(sorted(Counter(
            info["licence"] for info in summary["font_coverage"].values()).items()))
    if word_list is None and words == "real":
        summary["word_source"] = {
            "package": "wordfreq", "version": _version_of("wordfreq"), "language": language,
            "list": f"the {WORD_LIST_SIZE} most frequent words (wordfreq.top_n_list), of which "
                    f"{len(frequency_words(language))} are plain words",
            "licence": "wordfreq's code: Apache-2.0; its word lists: CC-BY-SA-4.0",
        }
    font_weights = None
    if realistic:
        families = Counter(font_family(font) for font in plan.fonts)
        font_weights = tuple(1.0 / families[font_family(font)] for font in plan.fonts)
    for split_id, (split, split_words, split_augment) in enumerate(
        (("train", train_words, augment), ("test", test_words, test_augment))
    ):
        if not split_words:
            continue
        t0 = time.perf_counter()
        style = dict(image_height=image_height, image_width=image_width, augment=split_augment, layout=layout,
                     colors=colors, layout_engine=layout_engine)
        if realistic:  # the classic style's options stay as they were, so that its images do not change
            style.update(style="realistic", min_contrast=min_contrast)
        elif min_contrast != 0.35:
            style.update(min_contrast=min_contrast)
        eligible = [plan.eligible(word) for word in split_words]
        rendered = _render_all(split_words, eligible, seed, split_id, plan.fonts, style, workers, chunk_size,
                               font_weights, progress=split if verbose else None)
        font_names = [Path(plan.fonts[index]).name for _, index in rendered]
        files = _write_split(out, split, [png for png, _ in rendered], split_words, font_names, shard_rows)
        summary[f"{split}_files"] = [Path(p).name for p in files]
        summary["images_per_font"][split] = dict(sorted(Counter(font_names).items()))
        if verbose:
            print(f"{split}: {len(split_words)} images in {time.perf_counter() - t0:.1f}s", flush=True)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    with open(out / "synth_config.json", "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2, ensure_ascii=False)
    (out / "README.md").write_text(dataset_card(summary), encoding="utf-8")
    return summary


def dataset_card(summary: dict) -> str:
    """The data's README: what was rendered, how to load it, and which fonts covered what."""
    source = (f"words from `{summary['words_file']}`" if summary["words"] == "file"
              else f"built-in `{summary['words']}` words of {summary['min_len']} to {summary['max_len']} characters")
    style = summary.get("style", "classic")
    lines = [
        "# Synthetic word images (training/synth.py)",
        "",
        f"{summary['num_train']} training and {summary['num_test']} test images of {source}, "
        f"{summary['image_width']}x{summary['image_height']}, seed {summary['seed']}. No test word occurs in the "
        "training split, in any letter case.",
        "",
        "```python",
        "from datasets import load_dataset",
        "data = load_dataset(\"parquet\", data_dir=\"<this directory>\")  # splits train and test: image, text, font",
        "```",
        "",
        f"Style: `{style}`" + (
            " (textured photo-like backgrounds, light-on-dark as often as dark-on-light, outlines, shadows, "
            "neighbouring text, curves, perspective, blur, down-and-up scaling, noise, JPEG)" if style == "realistic"
            else " (plain or gradient backgrounds, mild distortions)") + ".",
        "",
        f"Characters in the data ({len(summary['characters'])}): `{summary['characters']}`",
        "",
        f"Text layout: Pillow's `{summary['layout_engine']}` engine (the other engine places glyphs differently).",
        "Rendered with " + ", ".join(f"{name} {version}" for name, version in summary.get("versions", {}).items())
        + ": the same seed gives the same images with the same versions.",
        "",
        "## Fonts",
        "",
        "A font draws a word only if it covers every character of the word (its character map holds the character, "
        "the glyph is named after it, and it leaves ink), so no image shows a missing-glyph box.",
        "",
        "| font file | font | train images | test images | data characters it lacks | licence | from |",
        "|---|---|---:|---:|---|---|---|",
    ]
    per_font = summary["images_per_font"]
    for file_name, info in summary["font_coverage"].items():
        counts = [per_font.get(split, {}).get(file_name, 0) for split in ("train", "test")]
        lacks = f"`{info['missing']}`" if info["missing"] else "none"
        lacks = lacks.replace("|", "\\|")
        lines.append(f"| {file_name} | {info['name']} | {counts[0]} | {counts[1]} | {lacks} | "
                     f"{info.get('licence', 'unknown')} | {info.get('source', '')} |")
    if summary["fonts_left_out"]:
        lines += ["", "Fonts left out:", ""]
        lines += [f"- {name}: {reason}" for name, reason in summary["fonts_left_out"].items()]
    dropped = summary["words_without_font"]
    if dropped["count"]:
        lines += ["", f"{dropped['count']} distinct words were left out because no font covers them, e.g. "
                  + ", ".join(dropped["examples"][:10]) + "."]
    licences = Counter(info.get("licence", "unknown") for info in summary["font_coverage"].values())
    lines += ["", "## Font licences", "",
              "Each font's licence as its own name table states it (licence description, licence URL or copyright "
              "notice), else as the font package's list of its fonts states it:", ""]
    for licence, count in sorted(licences.items()):
        texts = sorted({info.get("licence_text") or "" for info in summary["font_coverage"].values()
                        if info.get("licence") == licence} - {""})
        lines.append(f"- {licence} ({OPEN_LICENCES.get(licence, 'not a known open font licence')}): {count} "
                     f"font files; licence text: " + (", ".join(f"`{text}`" for text in texts) or "none found"))
    source = summary.get("word_source")
    if source:
        lines += ["", "## Words", "",
                  f"Real words from `{source['package']}` {source['version']} ({source['language']}): {source['list']}"
                  f"; licence: {source['licence']}. Mixed with numbers, punctuation, random strings of the charset"
                  + (" and made-up Vietnamese words" if source["language"] == "vi" else "") + "."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--num-train", type=int, required=True)
    parser.add_argument("--num-test", type=int, required=True)
    parser.add_argument("--style", choices=STYLES, default="classic",
                        help="classic: the demos' look (plain or gradient backgrounds, mild distortions); realistic: "
                             "photo-like scenes, either polarity, outlines, shadows, neighbouring text, perspective, "
                             "curves, blur, JPEG, with real words and a large font collection (see the module doc)")
    parser.add_argument("--language", choices=LANGUAGES, default="en",
                        help="classic: en uses the --words generator over --charset, vi Vietnamese syllables (same as "
                             "--words vi); realistic: the language of the real words")
    parser.add_argument("--words", choices=WORD_KINDS, default=None,
                        help="random strings, pronounceable pseudo-words, half of each, Vietnamese words, or real "
                             "words with numbers and punctuation (default: mixed, vi with --language vi; real with "
                             "--style realistic)")
    parser.add_argument(
        "--words-file", default=None, metavar="FILE",
        help="draw the words from this UTF-8 file (one word per line) instead of a generator")
    parser.add_argument("--charset", default=None,
                        help="characters of generated words (default: 0-9a-z, or every Vietnamese letter with "
                             "--language vi; realistic: the 94 printable ASCII characters, or the Vietnamese letters, "
                             "digits and ASCII punctuation); with --words-file, keep only the words it can write")
    parser.add_argument("--min-len", type=int, default=None,
                        help="shortest word (default 3; 1 for Vietnamese and the realistic style)")
    parser.add_argument("--max-len", type=int, default=None,
                        help="longest word (default 10; 14 for Vietnamese; 25, the model's max_label_length, for the "
                             "realistic style)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-height", type=int, default=32)
    parser.add_argument("--image-width", type=int, default=128)
    parser.add_argument("--num-train-words", type=int, default=None,
                        help="distinct training words to cycle through (default: a fresh word per image)")
    parser.add_argument("--augment", type=float, default=1.0, help="distortion strength in [0, 1]")
    parser.add_argument("--test-augment", type=float, default=None, help="for the test split (default: --augment)")
    parser.add_argument("--layout", choices=LAYOUTS, default="tight",
                        help="tight: crop to the word (short words partly stretched); left: no stretching, word at "
                             "the left; free: no stretching, word anywhere")
    parser.add_argument("--colors", choices=COLOR_MODES, default="random",
                        help="random hues and polarity; dark text on lighter backgrounds; or near-black on white")
    parser.add_argument("--fonts", nargs="+", default=None,
                        help="fonts to draw with: font files (.ttf, .otf, .ttc) or directories of them, name fragments "
                             "of matplotlib's fonts (DejaVu, DejaVuSansMono), or installed family names (default: "
                             "matplotlib's fonts). Each word is drawn only with fonts that cover all its characters.")
    parser.add_argument("--layout-engine", choices=LAYOUT_ENGINES, default=None,
                        help="Pillow's text layout (default: raqm when Pillow finds it, else basic; recorded in "
                             "synth_config.json). Give it to render the same images on machines that differ.")
    parser.add_argument("--min-contrast", type=float, default=None,
                        help="least luminance gap between text and background (default 0.35; realistic 0.3)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 8)")
    args = parser.parse_args(argv)
    words = args.words
    if words is None and args.style == "classic":
        words = "vi" if args.language == "vi" else "mixed"
    elif args.language == "vi" and args.style == "classic":
        words = "vi"
    try:
        summary = generate_dataset(
            args.out_dir, args.num_train, args.num_test, charset=args.charset, min_len=args.min_len,
            max_len=args.max_len, seed=args.seed, image_height=args.image_height, image_width=args.image_width,
            words=words, num_train_words=args.num_train_words, augment=args.augment,
            test_augment=args.test_augment, layout=args.layout, colors=args.colors, fonts=args.fonts,
            workers=args.workers, verbose=True, words_file=args.words_file, layout_engine=args.layout_engine,
            style=args.style, language=args.language, min_contrast=args.min_contrast,
        )
    except (ValueError, OSError) as error:
        parser.error(str(error))
    print(f"Wrote {args.num_train} train / {args.num_test} test images to {args.out_dir} "
          f"in {summary['seconds']:.1f}s ({len(summary['fonts'])} fonts; see its README.md).")
    return summary


__all__ = [
    "COLOR_MODES",
    "DEFAULT_CHARSET",
    "LANGUAGES",
    "LAYOUTS",
    "PRINTABLE_ASCII",
    "PUNCTUATION",
    "STYLES",
    "WORD_KINDS",
    "FontPlan",
    "default_charset",
    "frequency_words",
    "real_word",
    "realistic_fonts",
    "rendering_versions",
    "available_fonts",  # re-exported from training.fonts, with the two below
    "dataset_card",
    "font_covers",
    "generate_dataset",
    "main",
    "matplotlib_font_dir",
    "read_words_file",
    "render_word",
    "sample_split_words",
    "sample_word",
    "split_word_list",
    "word_key",
]


if __name__ == "__main__":
    main()
