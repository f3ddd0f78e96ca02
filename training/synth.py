"""Synthetic word images for the offline demo: rendered words as a Hugging Face (parquet) dataset.

Words are drawn at random (random strings over the charset and/or pronounceable pseudo-words) and rendered with the
TrueType fonts that ship inside the matplotlib package (DejaVu, STIX, Computer Modern), so nothing is downloaded.
The test words are drawn first and never used for training: the test split measures reading of *unseen* words.

Command line::

    python -m training.synth OUT_DIR --num-train 60000 --num-test 1000 [--charset ...] [--min-len 3 --max-len 10]
        [--seed 0] [--image-height 32 --image-width 128] [--words random|pseudo|mixed] [--workers N]

writes ``OUT_DIR/train/train-00000-of-000NN.parquet`` ... and ``OUT_DIR/test/...`` (columns ``image``, a
``datasets.Image`` holding PNG bytes, and ``text``) plus ``OUT_DIR/synth_config.json``. Load it with
``datasets.load_dataset("parquet", data_dir=OUT_DIR)`` (splits ``train`` and ``test``) or
``load_dataset("parquet", data_files={"train": f"{OUT_DIR}/train/*.parquet", "test": f"{OUT_DIR}/test/*.parquet"})``.

Python::

    from training.synth import generate_dataset, render_word, available_fonts
    image = render_word("hello", seed=0)                      # PIL RGB image, 128x32
    generate_dataset("data/synth", num_train=60000, num_test=1000, seed=0)

Everything is deterministic given the seed (and the same matplotlib fonts / Pillow's FreeType), whatever the number
of worker processes.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import os
import time
from collections.abc import Sequence
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DEFAULT_CHARSET = "0123456789abcdefghijklmnopqrstuvwxyz"
SHARD_ROWS = 20_000
LAYOUTS = ("tight", "left", "free")
COLOR_MODES = ("random", "dark-on-light", "plain")

# Adobe glyph names of ASCII characters whose name is not the character itself.
_ASCII_GLYPH_NAMES = {
    "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven",
    "8": "eight", "9": "nine", "!": "exclam", '"': "quotedbl", "#": "numbersign", "$": "dollar", "%": "percent",
    "&": "ampersand", "'": "quotesingle", "(": "parenleft", ")": "parenright", "*": "asterisk", "+": "plus",
    ",": "comma", "-": "hyphen", ".": "period", "/": "slash", ":": "colon", ";": "semicolon", "<": "less",
    "=": "equal", ">": "greater", "?": "question", "@": "at", "[": "bracketleft", "\\": "backslash",
    "]": "bracketright", "^": "asciicircum", "_": "underscore", "`": "grave", "{": "braceleft", "|": "bar",
    "}": "braceright", "~": "asciitilde",
}


# --- fonts ------------------------------------------------------------------------------------------------------------
def matplotlib_font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.__file__).resolve().parent / "mpl-data" / "fonts" / "ttf"


def _expected_glyph_names(char: str) -> tuple[str, ...]:
    if char in _ASCII_GLYPH_NAMES:
        return (_ASCII_GLYPH_NAMES[char],)
    if char.isascii() and char.isalpha():
        return (char,)
    code = ord(char)
    names = [f"uni{code:04X}", f"u{code:04X}", f"u{code:05X}"]
    try:
        from fontTools import agl

        if code in agl.UV2AGL:
            names.insert(0, agl.UV2AGL[code])
    except ImportError:  # pragma: no cover - fontTools ships with matplotlib
        pass
    return tuple(names)


def font_covers(path: str | os.PathLike, charset: str) -> bool:
    """Whether the font really draws every character of `charset` as that character.

    Three checks: the character map has every character; the glyph each one maps to carries the character's standard
    name (this rejects symbol fonts such as cmsy10/cmex10, which map ASCII codes to math symbols, and LastResort,
    which maps everything to placeholder boxes); and the rendered glyphs leave ink and are (almost all) distinct.
    """
    from fontTools.ttLib import TTFont

    try:
        font = TTFont(str(path), lazy=True)
        cmap = font.getBestCmap() or {}
    except Exception:
        return False
    for char in charset:
        name = cmap.get(ord(char))
        if name is None:
            return False
        expected = _expected_glyph_names(char)
        # Variant suffixes like "a.alt" are fine; "zerooldstyle" (cmmi10's old-style digits, whose 0 is an o) is not.
        if not any(name == e or name.startswith(e + ".") for e in expected):
            return False
    try:
        pil_font = ImageFont.truetype(str(path), 24)
    except OSError:
        return False
    bitmaps = set()
    for char in charset:
        canvas = Image.new("L", (48, 48), 0)
        ImageDraw.Draw(canvas).text((8, 4), char, font=pil_font, fill=255)
        pixels = np.asarray(canvas)
        if pixels.max() < 128:
            return False
        bitmaps.add(pixels.tobytes())
    return len(bitmaps) >= 0.9 * len(set(charset))


def available_fonts(charset: str = DEFAULT_CHARSET, font_dir: str | None = None) -> tuple[str, ...]:
    """Paths of the TrueType fonts in `font_dir` (default: matplotlib's) that can render every character of
    `charset`, sorted by name (so a seed picks the same fonts everywhere)."""
    return _available_fonts(charset, str(font_dir) if font_dir else None)


@functools.lru_cache(maxsize=16)
def _available_fonts(charset: str, font_dir: str | None) -> tuple[str, ...]:
    directory = Path(font_dir) if font_dir else matplotlib_font_dir()
    fonts = tuple(str(path) for path in sorted(directory.glob("*.ttf")) if font_covers(path, charset))
    if not fonts:
        raise RuntimeError(f"No font in {directory} can render the charset {charset!r}.")
    return fonts


@functools.lru_cache(maxsize=512)
def _load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


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
    length = int(rng.integers(min_len, max_len + 1))
    if kind == "mixed":
        kind = "pseudo" if rng.random() < 0.5 else "random"
    if kind == "random":
        return random_string(rng, charset, length)
    if kind == "pseudo":
        return pseudo_word(rng, charset, length)
    raise ValueError(f"Unknown word kind {kind!r}; use 'random', 'pseudo' or 'mixed'.")


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
        if word not in seen:
            seen.add(word)
            test.append(word)
        elif attempts > 100 * (num_test + 10):
            raise ValueError("Cannot draw that many distinct test words with this charset and these lengths.")
    held_out = frozenset(test)

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
        if word in held_out or (distinct and word in pool_seen):
            continue
        pool_seen.add(word)
        pool.append(word)
    if num_train_words is None:
        train = pool
    else:
        order = np.random.default_rng([seed, 3]).permutation(num_train) % max(pool_size, 1)
        train = [pool[i] for i in order] if pool else []
    assert not held_out.intersection(train)
    return train, test


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
) -> Image.Image:
    """Render `text` as an RGB word crop of `image_width` x `image_height`.

    The style is drawn from `rng` (or a generator seeded with `seed`): a font among `fonts` (default: every matplotlib
    font that covers the text's characters) or the given `font`, font size, text and background colours (luminance
    difference >= `min_contrast`), an optional gradient, outline or shadow, a small rotation and shear, random
    padding (the word is cropped to its ink, padded and resized to the output size, as real crops are), blur,
    JPEG-like softness and Gaussian noise. `augment` in [0, 1] scales the strength of the geometric and noise
    distortions (0 gives clean, upright renderings).
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
    pil_font = _load_font(font, size)
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


def _render_chunk(job) -> list[bytes]:
    words, seed, split_id, start, fonts, style = job
    out = []
    for offset, word in enumerate(words):
        rng = np.random.default_rng([seed, split_id, start + offset])
        out.append(_png_bytes(render_word(word, rng=rng, fonts=fonts, **style)))
    return out


def _render_all(words, seed, split_id, fonts, style, workers, chunk=500):
    jobs = [(words[i:i + chunk], seed, split_id, i, fonts, style) for i in range(0, len(words), chunk)]
    if workers <= 1 or len(jobs) <= 1:
        results = [_render_chunk(job) for job in jobs]
    else:
        with get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
            results = pool.map(_render_chunk, jobs, chunksize=1)
    return [png for chunk_result in results for png in chunk_result]


def _write_split(directory: Path, split: str, images: list[bytes], texts: list[str], shard_rows: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Features, Image as ImageFeature, Value

    features = Features({"image": ImageFeature(), "text": Value("string")})
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
            },
            schema=schema,
        )
        path = split_dir / f"{split}-{shard:05d}-of-{num_shards:05d}.parquet"
        pq.write_table(table, path)
        paths.append(str(path))
    return paths


def generate_dataset(
    out_dir: str | os.PathLike,
    num_train: int,
    num_test: int,
    charset: str = DEFAULT_CHARSET,
    min_len: int = 3,
    max_len: int = 10,
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
) -> dict:
    """Render the train and test splits into `out_dir` (see the module docstring). Returns a summary dict (also
    written to `out_dir/synth_config.json`) with the settings, counts and the time it took."""
    if min_len < 1 or max_len < min_len:
        raise ValueError(f"Need 1 <= min_len <= max_len, got {min_len}, {max_len}.")
    if len(set(charset)) != len(charset):
        raise ValueError("The charset lists a character more than once.")
    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    usable = available_fonts(charset)
    if fonts:
        # Names or name fragments ("DejaVuSans", "Mono"), or paths of other TrueType fonts.
        chosen = [path for path in usable if any(f in Path(path).stem for f in fonts if not os.path.isfile(f))]
        chosen += [f for f in fonts if os.path.isfile(f) and font_covers(f, charset)]
        if not chosen:
            raise ValueError(f"None of the fonts {list(fonts)} can render the charset.")
        usable = tuple(sorted(set(chosen)))
    fonts = usable
    train_words, test_words = sample_split_words(
        num_train, num_test, charset, min_len, max_len, seed, words, num_train_words
    )
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    test_augment = augment if test_augment is None else test_augment
    summary = {
        "num_train": num_train, "num_test": num_test, "charset": charset, "min_len": min_len, "max_len": max_len,
        "seed": seed, "image_height": image_height, "image_width": image_width, "words": words,
        "num_train_words": num_train_words, "distinct_train_words": len(set(train_words)),
        "augment": augment, "test_augment": test_augment, "layout": layout, "colors": colors,
        "fonts": [Path(f).name for f in fonts],
    }
    for split_id, (split, split_words, split_augment) in enumerate(
        (("train", train_words, augment), ("test", test_words, test_augment))
    ):
        if not split_words:
            continue
        t0 = time.perf_counter()
        style = dict(image_height=image_height, image_width=image_width, augment=split_augment, layout=layout,
                     colors=colors)
        images = _render_all(split_words, seed, split_id, fonts, style, workers)
        summary[f"{split}_files"] = [Path(p).name for p in _write_split(out, split, images, split_words, shard_rows)]
        if verbose:
            print(f"{split}: {len(split_words)} images in {time.perf_counter() - t0:.1f}s", flush=True)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    with open(out / "synth_config.json", "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
    return summary


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--num-train", type=int, required=True)
    parser.add_argument("--num-test", type=int, required=True)
    parser.add_argument("--charset", default=DEFAULT_CHARSET)
    parser.add_argument("--min-len", type=int, default=3)
    parser.add_argument("--max-len", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-height", type=int, default=32)
    parser.add_argument("--image-width", type=int, default=128)
    parser.add_argument("--words", choices=("random", "pseudo", "mixed"), default="mixed",
                        help="random strings, pronounceable pseudo-words, or half of each")
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
                        help="restrict to these fonts (names or name fragments of matplotlib's fonts, or .ttf paths)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU count)")
    args = parser.parse_args(argv)
    summary = generate_dataset(
        args.out_dir, args.num_train, args.num_test, charset=args.charset, min_len=args.min_len,
        max_len=args.max_len, seed=args.seed, image_height=args.image_height, image_width=args.image_width,
        words=args.words, num_train_words=args.num_train_words, augment=args.augment,
        test_augment=args.test_augment, layout=args.layout, colors=args.colors, fonts=args.fonts,
        workers=args.workers, verbose=True,
    )
    print(f"Wrote {args.num_train} train / {args.num_test} test images to {args.out_dir} "
          f"in {summary['seconds']:.1f}s ({len(summary['fonts'])} fonts).")
    return summary


if __name__ == "__main__":
    main()
