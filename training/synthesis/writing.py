"""Rendering many words in parallel and writing them as parquet shards: every image has its own generator, seeded
by (seed, split, position), so the bytes do not depend on the number of processes or the chunk size; which fonts
may draw which word ([`FontPlan`]); the versions of what renders the images."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from .classic import render_word
from .fonts import FONT_PACKAGE, font_coverage, font_family, font_licence, font_name


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
