"""A synthetic word dataset on disk: [`generate_dataset`] draws the words, picks the fonts, renders both splits and
writes the parquet shards, `synth_config.json` and the data card ([`dataset_card`])."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .classic import STYLES
from .fonts import (
    DEFAULT_CHARSET,
    OPEN_LICENCES,
    bundled_fonts,
    default_layout_engine,
    exclude_fonts as without_fonts,
    font_family,
    realistic_fonts,
    resolve_fonts,
)
from .vietnamese import VIETNAMESE_CHARSET
from .words import (
    LANGUAGES,
    PRINTABLE_ASCII,
    PUNCTUATION,
    WORD_KINDS,
    WORD_LIST_SIZE,
    frequency_words,
    read_words_file,
    sample_split_words,
    split_word_list,
)
from .writing import FontPlan, _render_all, _version_of, _write_split, rendering_versions

SHARD_ROWS = 20_000


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
    exclude_fonts: Sequence[str] | None = None,
    test_fonts: Sequence[str] | None = None,
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
    words it can write). `fonts`: see [`~training.synthesis.fonts.resolve_fonts`]; `exclude_fonts`: families left out ([`~training.synthesis.fonts.exclude_fonts`]). `layout_engine`: Pillow's text layout,
    "basic" or "raqm" (default: Pillow's own choice, recorded in the summary). `chunk_size`: words per task of a worker
    process (the images do not depend on it, nor on `workers`).

    `style`: "classic" (the default, and what the demos' recipes measured) or "realistic" (see [`render_word`]): its
    words default to "real" ([`real_word`]: `language`'s frequency list from `wordfreq`, numbers, punctuation, random
    strings; up to 25 characters of [`default_charset`]), its fonts to [`~training.synthesis.fonts.realistic_fonts`] (a word is
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
    kept = without_fonts(candidates, exclude_fonts)
    excluded, candidates = [font for font in candidates if font not in kept], kept
    if not candidates:
        raise ValueError(f"--exclude-fonts {' '.join(exclude_fonts)} leaves no font to draw with.")
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
    test_plan = plan if not test_fonts else _test_font_plan(test_fonts, charset, realistic or word_list is not None)
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
        "layout_engine": layout_engine, "exclude_fonts": list(exclude_fonts or []),
        "fonts": [Path(f).name for f in plan.fonts],
        "test_fonts": [Path(f).name for f in test_plan.fonts],
        "characters": characters,
        "font_coverage": plan.describe(),
        "fonts_left_out": {**{Path(font).name: "excluded (--exclude-fonts)" for font in excluded},
                           **{Path(font).name: reason for font, reason in plan.left_out.items()}},
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
        split_plan = test_plan if split == "test" else plan
        eligible = [split_plan.eligible(word) for word in split_words]
        rendered = _render_all(split_words, eligible, seed, split_id, split_plan.fonts, style, workers, chunk_size,
                               font_weights if split_plan is plan else None, progress=split if verbose else None)
        font_names = [Path(split_plan.fonts[index]).name for _, index in rendered]
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


def _test_font_plan(test_fonts: Sequence[str], charset: str, unsupported: bool) -> FontPlan:
    """The fonts of the test split when they differ from training's (`test_fonts`, e.g. families excluded from
    training): each must draw the whole charset, as the classic style's generated words need."""
    if unsupported:
        raise ValueError("--test-fonts works with the classic style's generated words (not with --style realistic "
                         "or --words-file).")
    plan = FontPlan.for_charset(resolve_fonts(test_fonts), charset)
    if not plan.fonts:
        raise ValueError(f"None of the test fonts {list(test_fonts)} can render the charset.")
    return plan


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
