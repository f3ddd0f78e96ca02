"""Synthetic word images for the offline demos (`python -m training.synth` is the command line, whose docstring says
what the two styles draw and what the files hold):

- `words`: the words (generators, real words of a frequency list, test/train split, word files);
- `fonts`, `vietnamese`: the fonts and what they cover, the Vietnamese letters and syllables;
- `classic`: [`render_word`], the classic style; `realistic` and `scenes`: the realistic style and its backgrounds,
  colours and effects;
- `writing`: parallel rendering, font plans and parquet shards; `dataset`: [`generate_dataset`] and the data card.

Every image has its own random generator, seeded by (seed, split, position): a seed gives the same bytes whatever
the number of processes.
"""

from .classic import COLOR_MODES, LAYOUTS, STYLES, render_word
from .dataset import dataset_card, default_charset, generate_dataset
from .fonts import DEFAULT_CHARSET, available_fonts, font_covers, matplotlib_font_dir, realistic_fonts
from .words import (
    LANGUAGES,
    PRINTABLE_ASCII,
    PUNCTUATION,
    WORD_KINDS,
    frequency_words,
    read_words_file,
    real_word,
    sample_split_words,
    sample_word,
    split_word_list,
    word_key,
)
from .writing import FontPlan, rendering_versions

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
    "available_fonts",
    "dataset_card",
    "default_charset",
    "font_covers",
    "frequency_words",
    "generate_dataset",
    "matplotlib_font_dir",
    "read_words_file",
    "real_word",
    "realistic_fonts",
    "render_word",
    "rendering_versions",
    "sample_split_words",
    "sample_word",
    "split_word_list",
    "word_key",
]
