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

Every image has its own random generator, seeded by (seed, split, position), so the data is byte-for-byte the same
for a seed whatever the number of worker processes. Across machines it also needs the same fonts (matplotlib
version), the same Pillow (its bundled FreeType rasterises the glyphs) and the same text layout engine: Pillow uses
raqm when it finds libraqm and FriBiDi at run time, else its basic layout, and the two place glyphs differently;
`--layout-engine` pins it (the engine used is recorded in ``synth_config.json``).
"""

from __future__ import annotations

import argparse
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
    LAYOUT_ENGINES,
    available_fonts,
    default_layout_engine,
    font_coverage,
    font_covers,
    font_name,
    load_font,
    matplotlib_font_dir,
    resolve_fonts,
)
from training.vietnamese import VIETNAMESE_CHARSET, vietnamese_word

SHARD_ROWS = 20_000
LAYOUTS = ("tight", "left", "free")
WORD_KINDS = ("random", "pseudo", "mixed", "vi")
"""Built-in word generators: random strings over the charset, pronounceable pseudo-words, half of each, or
Vietnamese syllables ([`~training.vietnamese.vietnamese_word`])."""
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


def sample_word(rng: np.random.Generator, charset: str, min_len: int, max_len: int, kind: str = "mixed") -> str:
    """One word of `kind` (see [`WORD_KINDS`]) of `min_len` to `max_len` characters."""
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
) -> tuple[list[str], list[str]]:
    """The words of each image: `num_test` distinct test words, and `num_train` training words none of which is a
    test word. With `num_train_words`, that many distinct training words are drawn and the images cycle through them
    (several renderings per word); by default every training image draws a fresh word."""
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
        word = sample_word(rng, charset, min_len, max_len, kind)
        attempts += 1
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
        word = sample_word(rng, charset, min_len, max_len, kind)
        attempts += 1
        if attempts > 100 * (pool_size + 10):
            raise ValueError("Cannot draw enough training words that are not test words.")
        if word_key(word) in held_out or (distinct and word in pool_seen):
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
) -> Image.Image:
    """Render `text` as an RGB word crop of `image_width` x `image_height`.

    The style is drawn from `rng` (or a generator seeded with `seed`): a font among `fonts` (default: every matplotlib
    font that covers the text's characters) or the given `font`, font size, text and background colours (luminance
    difference >= `min_contrast`), an optional gradient, outline or shadow, a small rotation and shear, random
    padding (the word is cropped to its ink, padded and resized to the output size, as real crops are), blur,
    JPEG-like softness and Gaussian noise. `augment` in [0, 1] scales the strength of the geometric and noise
    distortions (0 gives clean, upright renderings). `layout_engine`: Pillow's text layout, "basic" or "raqm" (default:
    Pillow's choice, see [`~training.fonts.default_layout_engine`]).

    `fonts` and `font` are used as given: [`generate_dataset`] passes for each word only the fonts that cover it.
    """
    if not text:
        raise ValueError("Cannot render an empty word.")
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}.")
    if rng is None:
        rng = np.random.default_rng(seed)
    if font is None:
        if not fonts:
            needed = DEFAULT_CHARSET if set(text) <= set(DEFAULT_CHARSET) else "".join(sorted(set(text)))
            fonts = available_fonts(needed)
        font = fonts[int(rng.integers(len(fonts)))]
    if colors not in COLOR_MODES:
        raise ValueError(f"Unknown colors {colors!r}; use one of {', '.join(COLOR_MODES)}.")
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


# --- datasets --------------------------------------------------------------------------------------------------------
def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _render_chunk(job) -> list[tuple[bytes, int]]:
    """PNG bytes and font index of each word of a chunk. Every image has its own generator, seeded by its position
    in the split, so the output does not depend on how the words are cut into chunks or spread over processes."""
    words, eligible_fonts, seed, split_id, start, fonts, style = job
    out = []
    for offset, (word, eligible) in enumerate(zip(words, eligible_fonts)):
        rng = np.random.default_rng([seed, split_id, start + offset])
        # The first draw of `render_word` when it picks the font itself: the same image either way.
        index = eligible[int(rng.integers(len(eligible)))]
        out.append((_png_bytes(render_word(word, rng=rng, font=fonts[index], **style)), index))
    return out


def rendering_versions() -> dict:
    """Versions of what renders the images: matplotlib (its DejaVu font files), Pillow and its FreeType, numpy."""
    import matplotlib
    import PIL
    from PIL import features

    return {"matplotlib": matplotlib.__version__, "pillow": PIL.__version__,
            "freetype": features.version("freetype2"), "numpy": np.__version__}


def _render_all(words, eligible_fonts, seed, split_id, fonts, style, workers, chunk_size=500):
    jobs = [(words[i:i + chunk_size], eligible_fonts[i:i + chunk_size], seed, split_id, i, fonts, style)
            for i in range(0, len(words), chunk_size)]
    if workers <= 1 or len(jobs) <= 1:
        results = [_render_chunk(job) for job in jobs]
    else:
        with get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
            results = pool.map(_render_chunk, jobs, chunksize=1)
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
    def for_words(cls, candidates: Sequence[str], words: Sequence[str]) -> FontPlan:
        needed = frozenset(char for word in words for char in word if not char.isspace())
        characters = "".join(sorted(needed))
        coverage = {font: font_coverage(font, characters) for font in candidates}
        fonts = sorted(font for font in candidates if coverage[font])
        left_out = {font: "covers none of the characters" for font in candidates if font not in fonts}
        return cls(fonts, {font: coverage[font] for font in fonts}, left_out, needed)

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
            described[Path(font).name] = {"name": font_name(font), "path": font, "missing": _missing(missing)}
        return described


def _missing(characters) -> str:
    return "".join(sorted(characters))


def _lacks(missing, needed) -> str:
    if missing == needed:
        return "draws none of the characters"
    listed = f": {_missing(missing)}" if len(missing) <= 24 else ""
    return f"lacks {len(missing)} of the {len(needed)} characters{listed}"


def _resolve_words(words: str, words_file, charset: str | None, min_len: int | None, max_len: int | None):
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
        charset = VIETNAMESE_CHARSET if words == "vi" else DEFAULT_CHARSET
    default_min, default_max = (1, 14) if words == "vi" else (3, 10)
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
    words: str = "mixed",
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
) -> dict:
    """Render the train and test splits into `out_dir` (see the module docstring). Returns a summary dict (also
    written to `out_dir/synth_config.json`, and described in `out_dir/README.md`) with the settings, counts, the
    fonts and what they covered, and the time it took.

    `words`: a built-in generator (see [`WORD_KINDS`]; `charset` defaults to its alphabet, the lengths to 3-10, or
    1-14 for Vietnamese), unless `words_file` gives the words (one per line; `charset`, if given, keeps only the
    words it can write). `fonts`: see [`~training.fonts.resolve_fonts`]. `layout_engine`: Pillow's text layout,
    "basic" or "raqm" (default: Pillow's own choice, recorded in the summary). `chunk_size`: words per task of a worker
    process (the images do not depend on it, nor on `workers`).
    """
    charset, min_len, max_len, word_list = _resolve_words(words, words_file, charset, min_len, max_len)
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
    candidates = resolve_fonts(fonts)
    dropped_words: list[str] = []
    if word_list is None:
        plan = FontPlan.for_charset(candidates, charset)
        if not plan.fonts:
            raise ValueError(f"None of the fonts {list(fonts or ['(matplotlib)'])} can render the charset.")
        train_words, test_words = sample_split_words(
            num_train, num_test, charset, min_len, max_len, seed, words, num_train_words
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
        "versions": rendering_versions(),
        "augment": augment, "test_augment": test_augment, "layout": layout, "colors": colors,
        "layout_engine": layout_engine,
        "fonts": [Path(f).name for f in plan.fonts],
        "characters": characters,
        "font_coverage": plan.describe(),
        "fonts_left_out": {Path(font).name: reason for font, reason in plan.left_out.items()},
        "words_without_font": {"count": len(dropped_words), "examples": dropped_words[:20]},
        "images_per_font": {},
    }
    for split_id, (split, split_words, split_augment) in enumerate(
        (("train", train_words, augment), ("test", test_words, test_augment))
    ):
        if not split_words:
            continue
        t0 = time.perf_counter()
        style = dict(image_height=image_height, image_width=image_width, augment=split_augment, layout=layout,
                     colors=colors, layout_engine=layout_engine)
        eligible = [plan.eligible(word) for word in split_words]
        rendered = _render_all(split_words, eligible, seed, split_id, plan.fonts, style, workers, chunk_size)
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
        "| font file | font | train images | test images | data characters it lacks |",
        "|---|---|---:|---:|---|",
    ]
    per_font = summary["images_per_font"]
    for file_name, info in summary["font_coverage"].items():
        counts = [per_font.get(split, {}).get(file_name, 0) for split in ("train", "test")]
        lacks = f"`{info['missing']}`" if info["missing"] else "none"
        lines.append(f"| {file_name} | {info['name']} | {counts[0]} | {counts[1]} | {lacks} |")
    if summary["fonts_left_out"]:
        lines += ["", "Fonts left out:", ""]
        lines += [f"- {name}: {reason}" for name, reason in summary["fonts_left_out"].items()]
    dropped = summary["words_without_font"]
    if dropped["count"]:
        lines += ["", f"{dropped['count']} distinct words were left out because no font covers them, e.g. "
                  + ", ".join(dropped["examples"][:10]) + "."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--num-train", type=int, required=True)
    parser.add_argument("--num-test", type=int, required=True)
    parser.add_argument("--language", choices=("en", "vi"), default="en",
                        help="en: the --words generator over --charset; vi: Vietnamese syllables (same as --words vi)")
    parser.add_argument("--words", choices=WORD_KINDS, default="mixed",
                        help="random strings, pronounceable pseudo-words, half of each, or Vietnamese words")
    parser.add_argument(
        "--words-file", default=None, metavar="FILE",
        help="draw the words from this UTF-8 file (one word per line) instead of a generator")
    parser.add_argument("--charset", default=None,
                        help="characters of generated words (default: 0-9a-z, or every Vietnamese letter with "
                             "--language vi); with --words-file, keep only the words it can write")
    parser.add_argument("--min-len", type=int, default=None, help="shortest word (default 3; 1 for Vietnamese)")
    parser.add_argument("--max-len", type=int, default=None, help="longest word (default 10; 14 for Vietnamese)")
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
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 8)")
    args = parser.parse_args(argv)
    words = "vi" if args.language == "vi" else args.words
    try:
        summary = generate_dataset(
            args.out_dir, args.num_train, args.num_test, charset=args.charset, min_len=args.min_len,
            max_len=args.max_len, seed=args.seed, image_height=args.image_height, image_width=args.image_width,
            words=words, num_train_words=args.num_train_words, augment=args.augment,
            test_augment=args.test_augment, layout=args.layout, colors=args.colors, fonts=args.fonts,
            workers=args.workers, verbose=True, words_file=args.words_file, layout_engine=args.layout_engine,
        )
    except (ValueError, OSError) as error:
        parser.error(str(error))
    print(f"Wrote {args.num_train} train / {args.num_test} test images to {args.out_dir} "
          f"in {summary['seconds']:.1f}s ({len(summary['fonts'])} fonts; see its README.md).")
    return summary


__all__ = [
    "COLOR_MODES",
    "DEFAULT_CHARSET",
    "LAYOUTS",
    "WORD_KINDS",
    "FontPlan",
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
