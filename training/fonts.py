"""Fonts for synthetic word images: which characters a font really draws, and finding font files.

A word is only ever drawn with a font that covers every one of its characters ([`font_coverage`]): the character
map must hold the character, the glyph must be named after it where the font names glyphs, and it must leave ink.
Symbol fonts (which map ASCII codes to other glyphs) and placeholder fonts (LastResort) cover nothing. Fonts come
from matplotlib's package by default (DejaVu, STIX, Computer Modern: nothing is downloaded), from font files or
directories, or from installed families found by matplotlib's font manager ([`resolve_fonts`]).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

DEFAULT_CHARSET = "0123456789abcdefghijklmnopqrstuvwxyz"

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


FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
_PROBE = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_UNINFORMATIVE_GLYPH_NAME = re.compile(r"^(glyph|cid|gid)\d+$")
_CODE_POINT_NAME = re.compile(r"^(uni|u)[0-9A-Fa-f]{4,6}$")


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


def _names_match(char: str, name: str) -> bool:
    # Variant suffixes like "a.alt" are fine; "zerooldstyle" (cmmi10's old-style digits, whose 0 is an o) is not.
    # Code-point names are compared without regard to the case of their hex digits (DejaVu Serif has "uni1ebe").
    base = name.split(".", 1)[0]
    for expected in _expected_glyph_names(char):
        if base == expected or (expected.startswith("u") and _CODE_POINT_NAME.match(base)
                                and base.lower() == expected.lower()):
            return True
    return False


def _open_font_tables(path: str):
    from fontTools.ttLib import TTFont

    # The first face of a collection (.ttc), as `ImageFont.truetype` opens it by default.
    options = {"fontNumber": 0} if path.lower().endswith((".ttc", ".otc")) else {}
    return TTFont(path, lazy=True, **options)


def font_coverage(path: str | os.PathLike, characters: str) -> frozenset[str]:
    """The characters of `characters` that the font really draws as themselves (an empty set for symbol fonts).

    A character is covered when the font's character map has it, the glyph it maps to is named after it (where the
    font names its glyphs at all: CID-keyed CJK fonts and fonts without a glyph-name table do not), and it leaves ink.
    A font is a symbol font, covering nothing, when it maps an ASCII letter or digit to a glyph named otherwise (cmsy10
    and cmex10 map ASCII codes to math symbols, cmmi10's digits are old-style, LastResort maps every code point to a
    placeholder box), or when fewer than 90% of the glyphs it would cover are distinct (placeholders again).
    """
    return _font_coverage(str(path), "".join(sorted(set(characters))))


@functools.lru_cache(maxsize=256)
def _font_coverage(path: str, characters: str) -> frozenset[str]:
    try:
        font = _open_font_tables(path)
        cmap = font.getBestCmap() or {}
    except Exception:
        return frozenset()
    names = {char: cmap.get(ord(char)) for char in set(characters) | set(_PROBE)}
    informative = [name for name in names.values() if name and not _UNINFORMATIVE_GLYPH_NAME.match(name)]
    named = bool(informative)
    if named and any(name and not _names_match(char, name) for char, name in names.items() if char in _PROBE):
        return frozenset()
    mapped = [char for char in characters if names[char] is not None and (not named or _names_match(char, names[char]))]
    try:
        pil_font = ImageFont.truetype(path, 24)
    except OSError:
        return frozenset()
    covered, bitmaps = [], set()
    for char in mapped:
        canvas = Image.new("L", (48, 48), 0)
        ImageDraw.Draw(canvas).text((8, 4), char, font=pil_font, fill=255)
        pixels = np.asarray(canvas)
        if pixels.max() >= 128:
            covered.append(char)
            bitmaps.add(pixels.tobytes())
    if len(bitmaps) < 0.9 * len(covered):
        return frozenset()
    return frozenset(covered)


def font_covers(path: str | os.PathLike, charset: str) -> bool:
    """Whether the font really draws every character of `charset` as that character (see [`font_coverage`])."""
    return set(charset) <= font_coverage(path, charset)


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


def resolve_fonts(names: Sequence[str] | None) -> tuple[str, ...]:
    """Font files for `--fonts`: paths of font files (.ttf, .otf, .ttc) or of directories holding them, file names or
    name fragments of matplotlib's font files ("DejaVuSans.ttf", "DejaVu", "DejaVuSansMono"), or family names of
    installed fonts ("Noto Sans CJK SC", looked up with matplotlib's font manager). Default: every font file
    matplotlib ships."""
    bundled = sorted(str(path) for path in matplotlib_font_dir().glob("*.ttf"))
    if not names:
        return tuple(bundled)
    found = []
    for name in names:
        path = Path(name).expanduser()
        if path.is_file():
            found.append(str(path))
        elif path.is_dir():
            found += sorted(str(file) for file in path.rglob("*") if file.suffix.lower() in FONT_SUFFIXES)
        else:
            matches = [font for font in bundled if name in Path(font).stem or name == Path(font).name]
            matches = matches or _installed_family(name)
            if not matches:
                raise ValueError(
                    f"No font matches {name!r}: give a font file (.ttf, .otf, .ttc), a directory of them, a name "
                    f"fragment of matplotlib's fonts ({', '.join(Path(font).stem for font in bundled[:4])}, ...) or "
                    "the family name of an installed font."
                )
            found += matches
    return tuple(dict.fromkeys(found))


def _installed_family(family: str) -> list[str]:
    from matplotlib import font_manager

    wanted = family.casefold()
    return sorted({entry.fname for entry in font_manager.fontManager.ttflist if entry.name.casefold() == wanted})


LAYOUT_ENGINES = ("basic", "raqm")


@functools.lru_cache(maxsize=512)
def load_font(path: str, size: int, layout_engine: str | None = None) -> ImageFont.FreeTypeFont:
    """`ImageFont.truetype(path, size)` with the given text layout ("basic", "raqm"; `None`: Pillow's default)."""
    if layout_engine not in (None, *LAYOUT_ENGINES):
        raise ValueError(f"Unknown layout engine {layout_engine!r}; use one of {', '.join(LAYOUT_ENGINES)}.")
    engine = {None: None, "basic": ImageFont.Layout.BASIC, "raqm": ImageFont.Layout.RAQM}[layout_engine]
    return ImageFont.truetype(path, size, layout_engine=engine)


def default_layout_engine() -> str:
    """The text layout Pillow uses by default here: "raqm" (HarfBuzz shaping, kerning) when Pillow finds libraqm and
    its FriBiDi library at run time, else "basic". The two place glyphs differently, so the same seed renders
    different images on machines that differ in this."""
    from PIL import features

    return "raqm" if features.check("raqm") else "basic"


def font_name(path: str | os.PathLike) -> str:
    """The font's full name from its name table ("DejaVu Sans Bold"), else its file name."""
    try:
        name = _open_font_tables(str(path))["name"].getDebugName(4)
    except Exception:
        name = None
    return name or Path(path).name


__all__ = [
    "DEFAULT_CHARSET",
    "LAYOUT_ENGINES",
    "available_fonts",
    "default_layout_engine",
    "font_coverage",
    "font_covers",
    "font_name",
    "load_font",
    "matplotlib_font_dir",
    "resolve_fonts",
]
