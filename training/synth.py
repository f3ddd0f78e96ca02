"""Synthetic word images for the offline demos: rendered words as a Hugging Face (parquet) dataset (the command line of
the `training.synthesis` package).

Words come from a built-in generator (random strings over the charset, pronounceable pseudo-words, or Vietnamese
syllables with their tones: [`WORD_KINDS`]) or from a file of words, and are rendered with the TrueType fonts that
ship inside the matplotlib package (DejaVu, STIX, Computer Modern; nothing is downloaded) or with font files given
by the user (a CJK font for Chinese). A word is only drawn with a font that covers all its characters
([`~training.synthesis.fonts.font_coverage`]). The test words are drawn first and never used for training, in any letter case:
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

    from training.synthesis import generate_dataset, render_word, available_fonts
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
from collections.abc import Sequence

from training.synthesis import COLOR_MODES, LANGUAGES, LAYOUTS, STYLES, WORD_KINDS, generate_dataset
from training.synthesis.fonts import LAYOUT_ENGINES


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
                        help="the language of the words: classic style, en draws --words over --charset (default "
                             "mixed), vi made-up Vietnamese syllables (default --words vi); --words real draws the "
                             "language's frequency list (both styles)")
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
                             "matplotlib's fonts), or `collection`: the realistic style's open-licence collection "
                             "(pretix-fontpack-free and matplotlib). Each word is drawn only with fonts that cover "
                             "all its characters.")
    parser.add_argument("--test-fonts", nargs="+", default=None, metavar="FONT",
                        help="render the test split with these fonts instead (as --fonts; e.g. the families "
                             "--exclude-fonts keeps out of training): held-out words in unseen faces")
    parser.add_argument("--exclude-fonts", nargs="+", default=None, metavar="NAME",
                        help="leave out fonts whose family or file name contains one of these (any case), e.g. "
                             "families held out to measure reading in unseen faces")
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
    try:
        summary = generate_dataset(
            args.out_dir, args.num_train, args.num_test, charset=args.charset, min_len=args.min_len,
            max_len=args.max_len, seed=args.seed, image_height=args.image_height, image_width=args.image_width,
            words=words, num_train_words=args.num_train_words, augment=args.augment,
            test_augment=args.test_augment, layout=args.layout, colors=args.colors, fonts=args.fonts,
            exclude_fonts=args.exclude_fonts, test_fonts=args.test_fonts,
            workers=args.workers, verbose=True, words_file=args.words_file, layout_engine=args.layout_engine,
            style=args.style, language=args.language, min_contrast=args.min_contrast,
        )
    except (ValueError, OSError) as error:
        parser.error(str(error))
    print(f"Wrote {args.num_train} train / {args.num_test} test images to {args.out_dir} "
          f"in {summary['seconds']:.1f}s ({len(summary['fonts'])} fonts; see its README.md).")
    return summary


if __name__ == "__main__":
    main()
