"""Fonts for synthetic word images: which characters a font really draws, and finding font files.

A word is only ever drawn with a font that covers every one of its characters ([`font_coverage`]): the character
map must hold the character, the glyph must be named after it where the font names glyphs, and it must leave ink.
Symbol fonts (which map ASCII codes to other glyphs) and placeholder fonts (LastResort) cover nothing. Fonts come
from matplotlib's package by default (DejaVu, STIX, Computer Modern: nothing is downloaded), from font files or
directories, or from installed families found by matplotlib's font manager ([`resolve_fonts`]).

The realistic synthesis style draws from a larger collection ([`realistic_fonts`]): the TrueType fonts of the
`pretix-fontpack-free` package (Roboto, Lato, Montserrat, Fira Sans, Noto Sans, Droid Serif, Vollkorn, Oswald,
Titillium, Space Mono, Poppins, Ubuntu, ...) and matplotlib's DejaVu faces, each kept only when its licence is a known
open font licence ([`font_licence`]: SIL OFL 1.1, Apache 2.0, Ubuntu Font Licence 1.0, Bitstream Vera).
"""

from __future__ import annotations

import functools
import importlib.metadata
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
# `--fonts collection`: the open-licence collection (the realistic style's default), for any style.
FONT_COLLECTION = "collection"
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


def resolve_fonts(names: Sequence[str] | None, bundled: Sequence[str] | None = None) -> tuple[str, ...]:
    """Font files for `--fonts`: paths of font files (.ttf, .otf, .ttc) or of directories holding them, file names or
    name fragments of the bundled font files (default: matplotlib's: "DejaVuSans.ttf", "DejaVu", "DejaVuSansMono"; the
    realistic style passes [`realistic_fonts`], so "Roboto" or "Lato" work there), or family names of installed
    fonts ("Noto Sans CJK SC", looked up with matplotlib's font manager), or "collection": the open-licence
    collection of [`realistic_fonts`]. A name fragment no bundled file has is looked up in that collection
    ("Montserrat", "Vollkorn"). Default: every bundled font file."""
    if bundled is None:
        bundled = sorted(str(path) for path in matplotlib_font_dir().glob("*.ttf"))
    bundled = list(bundled)
    if not names:
        return tuple(bundled)
    found = []
    for name in names:
        path = Path(name).expanduser()
        if name == FONT_COLLECTION:
            found += realistic_fonts()
        elif path.is_file():
            found.append(str(path))
        elif path.is_dir():
            found += sorted(str(file) for file in path.rglob("*") if file.suffix.lower() in FONT_SUFFIXES)
        else:
            matches = _fragment_matches(name, bundled) or _fragment_matches(name, realistic_fonts())
            matches = matches or _installed_family(name)
            if not matches:
                raise ValueError(
                    f"No font matches {name!r}: give a font file (.ttf, .otf, .ttc), a directory of them, a name "
                    f"fragment of matplotlib's fonts ({', '.join(Path(font).stem for font in bundled[:4])}, ...) or "
                    "the family name of an installed font."
                )
            found += matches
    return tuple(dict.fromkeys(found))


def _fragment_matches(name: str, fonts: Sequence[str]) -> list[str]:
    return [font for font in fonts if name in Path(font).stem or name == Path(font).name]


def exclude_fonts(fonts: Sequence[str], names: Sequence[str] | None) -> tuple[str, ...]:
    """`fonts` without those whose family name ([`font_family`]) or file name contains one of `names` (any case):
    e.g. families held out of training to measure reading in faces never seen."""
    if not names:
        return tuple(fonts)
    wanted = [name.casefold() for name in names]
    return tuple(font for font in fonts
                 if not any(name in font_family(font).casefold() or name in Path(font).name.casefold()
                            for name in wanted))


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



# --- the realistic style's font collection, and what each font may be used under -----------------------------------
FONT_PACKAGE = "pretix-fontpack-free"
"""The PyPI package whose TrueType files the realistic style draws with (its import name is `pretix_fontpackfree`)."""
_FONT_PACKAGE_MODULE = "pretix_fontpackfree"

OPEN_LICENCES = {
    "OFL-1.1": "SIL Open Font License 1.1",
    "Apache-2.0": "Apache License 2.0",
    "UFL-1.0": "Ubuntu Font Licence 1.0",
    "Bitstream-Vera": "Bitstream Vera Fonts licence (DejaVu's changes are in the public domain)",
}
"""The licences (SPDX identifiers) under which the realistic style uses a font by default."""

# What a licence statement says, as SPDX identifiers (checked in this order).
_LICENCE_PATTERNS = (
    (re.compile(r"open\s*font\s*licen[cs]e|scripts\.sil\.org/ofl|openfontlicense\.org|\bofl\b", re.I), "OFL-1.1"),
    (re.compile(r"apache\s+licen[cs]e|apache\.org/licenses", re.I), "Apache-2.0"),
    (re.compile(r"ubuntu\s+font\s+licen[cs]e", re.I), "UFL-1.0"),
    (re.compile(r"bitstream|dejavu", re.I), "Bitstream-Vera"),
)
_LICENCE_FILES = {
    "OFL-1.1": "SIL Open Font License.txt",
    "UFL-1.0": "Ubuntu Font Licence 1.0.txt",
}
_LICENCE_URLS = {
    "OFL-1.1": "https://openfontlicense.org",
    "Apache-2.0": "https://www.apache.org/licenses/LICENSE-2.0",
    "UFL-1.0": "https://ubuntu.com/legal/font-licence",
    "Bitstream-Vera": "https://dejavu-fonts.github.io/License.html",
}


@functools.lru_cache(maxsize=1)
def package_font_dir() -> Path | None:
    """The folder of `pretix-fontpack-free`'s TrueType files, or `None` when the package is not installed."""
    try:
        import importlib.resources

        root = Path(str(importlib.resources.files(_FONT_PACKAGE_MODULE)))
    except (ImportError, TypeError):
        return None
    return root if root.is_dir() else None


def package_fonts() -> tuple[str, ...]:
    """Paths of the TrueType fonts `pretix-fontpack-free` ships (sorted; empty when it is not installed)."""
    root = package_font_dir()
    if root is None:
        return ()
    return tuple(sorted(str(path) for path in root.rglob("*.ttf")))


@functools.lru_cache(maxsize=8)
def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def _package_font_list() -> tuple[tuple[str, str], ...]:
    """(family, licence statement) pairs from the font package's own description ("* Roboto, ..., Apache License
    2.0"), for fonts whose files do not state their licence."""
    try:
        description = importlib.metadata.metadata(FONT_PACKAGE).get_payload() or ""
    except importlib.metadata.PackageNotFoundError:
        return ()
    entries = []
    for line in description.splitlines():
        if line.startswith("* ") and "," in line:
            family, statement = line[2:].split(",", 1)
            entries.append((family.strip(), statement.strip()))
    return tuple(entries)


def _spdx(statement: str | None) -> str | None:
    if not statement:
        return None
    for pattern, identifier in _LICENCE_PATTERNS:
        if pattern.search(statement):
            return identifier
    return None


def _name_record(names, name_id: int) -> str:
    try:
        return (names.getDebugName(name_id) or "").strip()
    except Exception:
        return ""


@functools.lru_cache(maxsize=1024)
def font_licence(path: str | os.PathLike) -> dict:
    """What a font file may be used under, and where that was read.

    Returns a dict: ``licence`` (an SPDX identifier from [`OPEN_LICENCES`], or ``"unknown"``), ``evidence`` (which
    statement said so: the font's licence-description, licence-URL or copyright name record, or the font package's
    own list of its fonts), ``source`` (the package and version the file comes from, or ``"file"``), ``licence_text``
    (the licence file shipped beside the font, else the licence's URL) and ``copyright`` (the font's copyright
    notice)."""
    path = str(path)
    try:
        names = _open_font_tables(path)["name"]
    except Exception:
        names = None
    records = {} if names is None else {key: _name_record(names, key) for key in (0, 1, 13, 14, 16)}
    licence, evidence = None, None
    for name_id, label in ((13, "licence description (name ID 13)"), (14, "licence URL (name ID 14)"),
                           (0, "copyright notice (name ID 0)")):
        licence = _spdx(records.get(name_id))
        if licence:
            evidence = f"font file: {label}"
            break
    package_dir = package_font_dir()
    in_package = package_dir is not None and Path(path).resolve().is_relative_to(package_dir.resolve())
    in_matplotlib = Path(path).resolve().is_relative_to(matplotlib_font_dir().resolve())
    if licence is None and in_package:
        family = (records.get(16) or records.get(1) or "").casefold()
        for listed, statement in _package_font_list():
            if family.startswith(listed.casefold()) and _spdx(statement):
                licence, evidence = _spdx(statement), f"{FONT_PACKAGE}'s font list: {listed}, {statement}"
                break
    if in_package:
        source = f"{FONT_PACKAGE} {_package_version(FONT_PACKAGE)}"
    elif in_matplotlib:
        source = f"matplotlib {_package_version('matplotlib')}"
    else:
        source = "file"
    # The licence text: the file shipped beside the font (named from the site-packages folder), else its URL.
    licence_text = _LICENCE_URLS.get(licence)
    if in_package and licence in _LICENCE_FILES and (package_dir / _LICENCE_FILES[licence]).is_file():
        licence_text = f"{_FONT_PACKAGE_MODULE}/{_LICENCE_FILES[licence]}"
    elif in_matplotlib and licence is not None:
        # matplotlib ships the licences of its DejaVu and STIX (OFL 1.1) fonts beside them.
        shipped = "LICENSE_STIX" if Path(path).name.startswith("STIX") else "LICENSE_DEJAVU"
        matches = (licence == "Bitstream-Vera") == (shipped == "LICENSE_DEJAVU")
        if matches and (matplotlib_font_dir() / shipped).is_file():
            licence_text = f"matplotlib/mpl-data/fonts/ttf/{shipped}"
    return {"licence": licence or "unknown", "evidence": evidence or "no licence statement found",
            "source": source, "licence_text": licence_text, "copyright": " ".join(records.get(0, "").split())[:160]}


def font_family(path: str | os.PathLike) -> str:
    """The design a font file belongs to, for drawing each design about as often as the others: its typographic
    family name, with the script-specific Noto Sans fonts (Noto Sans Arabic, Noto Sans JP, ...) counted as Noto Sans,
    whose Latin letters they share."""
    try:
        names = _open_font_tables(str(path))["name"]
        family = _name_record(names, 16) or _name_record(names, 1)
    except Exception:
        family = ""
    family = family or Path(path).stem
    if family.startswith("Noto Sans"):
        return "Noto Sans"
    return family


def realistic_fonts() -> tuple[str, ...]:
    """The default fonts of the realistic style: every TrueType file of `pretix-fontpack-free` and of matplotlib whose
    licence is one of [`OPEN_LICENCES`] and that draws all ASCII letters and digits (package files first, each group
    sorted by path). Whether a font may draw a word is decided per word, by its coverage ([`font_coverage`])."""
    return _realistic_fonts()


@functools.lru_cache(maxsize=1)
def _realistic_fonts() -> tuple[str, ...]:
    # Text faces only: a font's character map must hold every ASCII letter and digit (math-symbol fonts lack them;
    # whether the glyphs are real is checked per word, by `font_coverage`). The package's Chinese, Japanese and
    # Korean Noto faces (its only files over 4 MB) are left out: their Latin letters are Noto Sans's, and reading
    # their character maps takes seconds; give them with --fonts for CJK words.
    return tuple(font for font in bundled_fonts()
                 if os.path.getsize(font) <= _LARGEST_DEFAULT_FONT and font_licence(font)["licence"] in OPEN_LICENCES
                 and _maps_all(font, _PROBE))


_LARGEST_DEFAULT_FONT = 4_000_000


def bundled_fonts() -> tuple[str, ...]:
    """Every TrueType file of `pretix-fontpack-free` and of matplotlib (what `--fonts` name fragments match in the
    realistic style)."""
    return (*package_fonts(), *sorted(str(path) for path in matplotlib_font_dir().glob("*.ttf")))


def _maps_all(path: str, characters: str) -> bool:
    try:
        cmap = _open_font_tables(path).getBestCmap() or {}
    except Exception:
        return False
    return all(ord(char) in cmap for char in characters)


__all__ = [
    "DEFAULT_CHARSET",
    "FONT_PACKAGE",
    "LAYOUT_ENGINES",
    "OPEN_LICENCES",
    "available_fonts",
    "bundled_fonts",
    "default_layout_engine",
    "font_coverage",
    "font_covers",
    "font_family",
    "font_licence",
    "font_name",
    "load_font",
    "matplotlib_font_dir",
    "package_font_dir",
    "package_fonts",
    "realistic_fonts",
    "resolve_fonts",
]
