"""Build a model's charset from the labels of its training data.

    python -m training.tools.build_charset data/synth-vi --output charset.txt
    python -m training.tools.build_charset data/train/real my-org/street-signs --min-count 5 --output charset.txt \
        --report charset_counts.tsv

Reads the labels of every SOURCE (anything `run_str.py --train_datasets` accepts: Hub dataset ids, local parquet /
arrow / imagefolder directories, LMDB databases or trees of them), only the text column: images are never decoded
(for LMDB, never read). Labels go through the first steps of the label rule of training
([`~modeling_clip4str.labels_clip4str.LabelCleaner`]): whitespace removed and Unicode NFC (so that "ế" written as
e + two combining marks counts as the one character "ế", as training will see it). Invisible characters (control and
format characters such as zero-width spaces) are counted in the report but never put in the charset.

The charset is written on one line (UTF-8), its characters in code-point order: the order does not depend on the
sample (adding data does not reshuffle the ids of the characters already there), and letters with their diacritics
stay next to each other when you read it. `--order frequency` writes the most frequent first instead. Pass the file to
`python -m training.run_str --charset_file FILE`.

The report lists every character with its count and share, and what a `--min-count` cut keeps: the share of all
character occurrences, and the share of labels that can be read in full (a label holding a dropped character loses
it in training).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from modeling_clip4str.labels_clip4str import LabelCleaner

logger = logging.getLogger(__name__)

ORDERS = ("codepoint", "frequency")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})
_ANY_CHARSET = "\ufffd"  # LabelCleaner needs one; only its whitespace and Unicode steps are used here


def source_labels(source: str, split: str = "train", image_column: str = "image", text_column: str = "text",
                  max_samples: int | None = None, **load_kwargs) -> Iterator:
    """The labels of one source, as stored (strings, or whatever the text column holds), without reading images.

    LMDB databases are read with [`~training.data.LmdbDataset`], which reads every label when opened and images only
    on demand; every other source is streamed with [`~training.data.load_str_dataset`] and only its text column is
    read, in batches.
    """
    from training.data import LmdbDataset, find_lmdb_dirs, load_str_dataset

    path = Path(source).expanduser()
    lmdb_dirs = _lmdb_dirs(path, find_lmdb_dirs)
    if lmdb_dirs:
        yield from islice(_lmdb_labels(lmdb_dirs, LmdbDataset), max_samples)
        return
    dataset = load_str_dataset(source, split=split, streaming=True, image_column=image_column,
                               text_column=text_column, **load_kwargs)
    dataset = dataset.select_columns(["text"])
    if max_samples is not None:
        dataset = dataset.take(max_samples)
    for batch in dataset.iter(batch_size=1000):
        yield from batch["text"]


def _lmdb_labels(directories, LmdbDataset) -> Iterator[str]:
    for directory in directories:
        database = LmdbDataset(directory)
        for index in range(len(database)):
            yield database.label(index)


def _lmdb_dirs(path: Path, find_lmdb_dirs) -> list[Path]:
    # The same precedence as load_str_dataset: a local tree holding any data.mdb is read as LMDB.
    if not path.exists():
        return []
    if path.is_file():
        return [path.parent] if path.name == "data.mdb" else []
    try:
        return find_lmdb_dirs(path)
    except FileNotFoundError:
        return []


@dataclass
class CharacterCounts:
    """How often each character occurs in the (normalised) labels.

    Attributes:
        characters: character -> occurrences.
        labels: normalised label -> how many times it occurs (for the share of labels a charset reads in full).
        skipped: why labels were not counted -> how many (`not_a_string`, `empty`, `too_long`).
    """

    characters: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)

    @property
    def num_labels(self) -> int:
        return sum(self.labels.values())

    def visible(self) -> Counter:
        """The counts of the characters that may go into a charset (not control or format characters)."""
        return Counter({char: n for char, n in self.characters.items() if not is_invisible(char)})


def is_invisible(char: str) -> bool:
    """Control, format (zero-width), surrogate, private-use or unassigned characters."""
    return unicodedata.category(char) in _INVISIBLE_CATEGORIES


def count_characters(labels: Iterable, unicode_normalization: str = "NFC", remove_whitespace: bool = True,
                     max_label_length: int | None = None, counts: CharacterCounts | None = None) -> CharacterCounts:
    """Count the characters of `labels` after whitespace removal and Unicode normalisation (the label rule's first
    two steps); labels longer than `max_label_length` are skipped, as training would drop them."""
    normalize = LabelCleaner(_ANY_CHARSET, remove_whitespace=remove_whitespace,
                             unicode_normalization=unicode_normalization).normalize
    counts = counts if counts is not None else CharacterCounts()
    for label in labels:
        if not isinstance(label, str):
            counts.skipped["not_a_string"] += 1
            continue
        text = normalize(label)
        if not text:
            counts.skipped["empty"] += 1
        elif max_label_length is not None and len(text) > max_label_length:
            counts.skipped["too_long"] += 1
        else:
            counts.labels[text] += 1
            counts.characters.update(text)
    return counts


def build_charset(counts: CharacterCounts, min_count: int = 1, order: str = "codepoint") -> str:
    """The visible characters that occur at least `min_count` times, in code-point or frequency order (ties by code
    point)."""
    if order not in ORDERS:
        raise ValueError(f"Unknown order {order!r}; use one of {', '.join(ORDERS)}.")
    kept = [char for char, n in counts.visible().items() if n >= min_count]
    if order == "frequency":
        return "".join(sorted(kept, key=lambda char: (-counts.characters[char], char)))
    return "".join(sorted(kept))


def coverage(counts: CharacterCounts, charset: str) -> dict:
    """What reading `charset` keeps of the counted labels: `occurrences` (share of the occurrences of visible
    characters) and `labels` (share of labels whose every visible character is in the charset). Invisible characters
    are left out of both: training removes them without losing anything one can see."""
    allowed = set(charset)
    visible = counts.visible()
    total = sum(visible.values())
    kept = sum(n for char, n in visible.items() if char in allowed)
    readable = sum(n for label, n in counts.labels.items()
                   if all(char in allowed or is_invisible(char) for char in label))
    return {
        "characters": len(charset),
        "occurrences": kept / total if total else 0.0,
        "labels": readable / counts.num_labels if counts.num_labels else 0.0,
    }


def report_rows(counts: CharacterCounts, charset: str) -> list[dict]:
    """One row per character, most frequent first: the character, its code point and name, count, share,
    cumulative share, and whether it is in the charset."""
    total = sum(counts.characters.values()) or 1
    allowed, cumulative, rows = set(charset), 0, []
    for char, n in sorted(counts.characters.items(), key=lambda item: (-item[1], item[0])):
        cumulative += n
        rows.append({
            "character": char,
            "code_point": f"U+{ord(char):04X}",
            "name": unicodedata.name(char, unicodedata.category(char)),
            "count": n,
            "share": n / total,
            "cumulative": cumulative / total,
            "in_charset": char in allowed,
        })
    return rows


def format_report(counts: CharacterCounts, charset: str, min_count: int, show: int = 60) -> str:
    """The report printed by the command: the most and least frequent characters (all of them when there are at most
    `show`), then the totals and what `min_count` and stricter cuts keep."""
    rows = report_rows(counts, charset)
    numbered = list(enumerate(rows, start=1))
    if len(numbered) > show:
        numbered = numbered[: show - show // 4] + [None] + numbered[len(numbered) - show // 4:]
    lines = [f"{'rank':>5}  {'char':<4} {'code':<9} {'count':>10} {'share':>8} {'cumul.':>8}  name"]
    for item in numbered:
        if item is None:
            lines.append(f"{'...':>5}  ({len(rows) - len(numbered) + 1} more)")
            continue
        rank, row = item
        mark = "" if row["in_charset"] else "  [left out]"
        shown_char = " " if is_invisible(row["character"]) else row["character"]
        lines.append(f"{rank:>5}  {shown_char:<4} {row['code_point']:<9} {row['count']:>10} "
                     f"{100 * row['share']:>7.3f}% {100 * row['cumulative']:>7.2f}%  {row['name']}{mark}")
    kept = coverage(counts, charset)
    visible = counts.visible()
    invisible = len(counts.characters) - len(visible)
    summary = [
        "",
        f"{counts.num_labels} labels, {sum(counts.characters.values())} characters, {len(counts.characters)} distinct"
        + (f" ({invisible} invisible: never in a charset)" if invisible else "") + ".",
    ]
    if counts.skipped:
        summary.append("Not counted: " + ", ".join(f"{n} {reason}" for reason, n in sorted(counts.skipped.items()))
                       + ".")
    summary.append(
        f"--min-count {min_count} keeps {kept['characters']} of {len(visible)} characters: "
        f"{100 * kept['occurrences']:.3f}% of character occurrences, {100 * kept['labels']:.3f}% of labels readable "
        "in full."
    )
    for cut in (2, 5, 10, 50):
        if cut > min_count:
            other = coverage(counts, build_charset(counts, cut))
            summary.append(f"  (--min-count {cut} would keep {other['characters']} characters, "
                           f"{100 * other['occurrences']:.3f}% of occurrences, {100 * other['labels']:.3f}% of labels)")
    return "\n".join(lines + summary)


def write_report(path, counts: CharacterCounts, charset: str) -> None:
    """All rows of [`report_rows`] as a tab-separated file."""
    rows = report_rows(counts, charset)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["character"], delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)


def write_charset_file(path, charset: str) -> None:
    """The charset on one line of UTF-8 text."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(charset + "\n", encoding="utf-8")


def read_charset_file(path) -> str:
    """The charset written by this tool (or by hand): one line of UTF-8 text, every character once, in NFC (the
    form the label rule gives labels of a non-ASCII charset).

    Raises:
        ValueError: an empty file, several lines, a repeated character, or characters that are not NFC.
    """
    text = Path(path).read_text(encoding="utf-8-sig")
    lines = [line for line in text.splitlines() if line]
    if not lines:
        raise ValueError(f"The charset file {path} is empty: build one with `python -m training.tools.build_charset "
                         "SOURCE --output FILE`.")
    if len(lines) > 1:
        raise ValueError(f"The charset file {path} has {len(lines)} lines: write every character on one line.")
    charset = lines[0]
    repeated = sorted({char for char in charset if charset.count(char) > 1})
    if repeated:
        raise ValueError(f"The charset file {path} repeats {''.join(repeated)!r}: list every character once.")
    if not charset.isascii() and unicodedata.normalize("NFC", charset) != charset:
        odd = sorted({char for char in charset if unicodedata.normalize("NFC", char) != char})
        raise ValueError(
            f"The charset file {path} is not in Unicode NFC ({''.join(odd)!r} and/or combining marks that compose "
            "with the character before them). Labels of a non-ASCII charset are NFC-normalised, so these would never "
            "be read: rebuild the file with `python -m training.tools.build_charset`."
        )
    return charset


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.tools.build_charset",
        description="Build a charset (one line, code-point order) from the labels of training data, with a "
                    "per-character count report.",
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE",
                        help="Hub dataset ids, local parquet/arrow/imagefolder directories, LMDB directories or trees.")
    parser.add_argument("--output", "-o", default=None, metavar="FILE",
                        help="Write the charset here (one line, UTF-8); default: print it.")
    parser.add_argument("--min-count", type=int, default=1,
                        help="Keep characters that occur at least this many times (default 1: all).")
    parser.add_argument("--order", choices=ORDERS, default="codepoint",
                        help="Order of the characters (ids follow it): code point (default) or most frequent first.")
    parser.add_argument("--report", default=None, metavar="FILE",
                        help="Write every character's count, share and cumulative share as tab-separated values.")
    parser.add_argument("--split", default="train", help="Split of Hub/local datasets (default: train).")
    parser.add_argument("--image-column", default="image", help="Image column (checked to exist, never read).")
    parser.add_argument("--text-column", default="text", help="Label column.")
    parser.add_argument("--max-samples", type=int, default=None, help="Read at most this many labels per source.")
    parser.add_argument("--max-label-length", type=int, default=None,
                        help="Skip labels longer than this, as training with this --max_label_length would.")
    parser.add_argument("--unicode-normalization", default="NFC", choices=["NFC", "NFKC"],
                        help="Unicode form of the labels (default NFC, as training uses for non-ASCII charsets).")
    parser.add_argument("--keep-whitespace", action="store_true",
                        help="Count whitespace (training removes it by default).")
    parser.add_argument("--show", type=int, default=60, help="Rows of the report to print (default 60).")
    parser.add_argument("--cache-dir", default=None, help="`datasets` cache directory.")
    args = parser.parse_args(argv)
    if args.min_count < 1:
        parser.error("--min-count must be at least 1.")
    for option in ("max_samples", "max_label_length"):
        if getattr(args, option) is not None and getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1.")
    return args


def main(argv: Sequence[str] | None = None) -> str:
    args = parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    counts = CharacterCounts()
    load_kwargs = {} if args.cache_dir is None else {"cache_dir": args.cache_dir}
    for source in args.sources:
        before = counts.num_labels
        try:
            labels = source_labels(source, split=args.split, image_column=args.image_column,
                                   text_column=args.text_column, max_samples=args.max_samples, **load_kwargs)
            count_characters(labels, unicode_normalization=args.unicode_normalization,
                             remove_whitespace=not args.keep_whitespace, max_label_length=args.max_label_length,
                             counts=counts)
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(f"{source}: {error}") from None
        logger.info(f"{source}: {counts.num_labels - before} labels")
    charset = build_charset(counts, args.min_count, args.order)
    if not charset:
        raise SystemExit("No character occurs often enough: lower --min-count or check --text-column.")
    print(format_report(counts, charset, args.min_count, args.show))
    if args.report:
        write_report(args.report, counts, charset)
    if args.output:
        write_charset_file(args.output, charset)
        print(f"\nWrote {len(charset)} characters ({args.order} order) to {args.output}.")
    else:
        print(f"\nCharset ({len(charset)} characters, {args.order} order):\n{charset}")
    sys.stdout.flush()
    return charset


if __name__ == "__main__":
    main()
