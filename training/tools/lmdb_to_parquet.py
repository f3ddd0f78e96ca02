"""Convert STR-format LMDB databases into parquet shards for the Hugging Face Hub.

    python -m training.tools.lmdb_to_parquet data/train/real parquet/real --shard-size 20000

Every database at or below LMDB_ROOT (each directory holding a data.mdb) is read; each sample becomes a row with
`image` (a `datasets.Image`: the original encoded bytes, untouched, and a path naming its origin), `text` and
`source` (the database's directory relative to LMDB_ROOT, e.g. "ArT" or "real/COCOv2.0"). The shards
(`train-00000-of-00012.parquet`, ...) load with `datasets.load_dataset("parquet", data_dir=OUT_DIR)` and upload with
`push_to_hub`.

By default labels are cleaned by the label rule of training (`modeling_clip4str.labels_clip4str.LabelCleaner`:
whitespace removed, folded to ASCII for an ASCII charset, longer than --max-label-length dropped, case adapted,
characters outside --charset removed, empty labels dropped), so the shards hold exactly the reference's training
samples; --keep-raw-labels keeps every label as stored.
Every image is decoded once to find broken ones: they are counted and reported, and kept unless --skip-corrupt.
"""

from __future__ import annotations

import argparse
import collections
import logging
import sys
from pathlib import Path

import datasets
from tqdm.auto import tqdm

from modeling_clip4str import CHARSET_94
from modeling_clip4str.labels_clip4str import LabelCleaner
from training.data import LmdbDataset, find_lmdb_dirs
from training.tools import (
    DEFAULT_SHARD_SIZE,
    ParquetShardWriter,
    extension_for,
    own_output_pattern,
    prepare_output_dir,
    probe_image,
    run_conversion,
)

logger = logging.getLogger(__name__)

FEATURES = datasets.Features(
    {"image": datasets.Image(), "text": datasets.Value("string"), "source": datasets.Value("string")}
)
# Broken images listed in the report (all are counted).
MAX_LISTED = 20


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.tools.lmdb_to_parquet",
        description="Convert STR-format LMDB databases (a directory with data.mdb, or a tree of them) into parquet "
        "shards with columns image (datasets.Image), text and source, ready for "
        "datasets.load_dataset('parquet', data_dir=OUT_DIR) and push_to_hub.",
    )
    parser.add_argument("lmdb_root", metavar="LMDB_ROOT", type=Path,
                        help="An LMDB directory (holding data.mdb) or a directory tree of them.")
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path,
                        help="Where the parquet shards are written (created; must be empty unless --overwrite).")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                        help=f"Samples per parquet shard (default {DEFAULT_SHARD_SIZE}).")
    parser.add_argument("--split", default="train",
                        help="Split name used in the shard file names (default: train).")
    parser.add_argument("--keep-raw-labels", action="store_true",
                        help="Write labels exactly as stored, keep every sample (default: clean labels as the "
                        "reference trains on them and drop the unusable ones).")
    parser.add_argument("--charset", default=CHARSET_94,
                        help="Characters kept when cleaning labels (default: the 94 printable ASCII characters).")
    parser.add_argument("--max-label-length", type=int, default=25,
                        help="Longest label kept when cleaning labels (default 25).")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="Leave out samples whose image does not decode (default: keep them, and report them).")
    parser.add_argument("--overwrite", action="store_true",
                        help="Replace shards an earlier run wrote to OUT_DIR.")
    args = parser.parse_args(argv)
    if args.shard_size < 1:
        parser.error("--shard-size must be positive.")
    if args.max_label_length < 1:
        parser.error("--max-label-length must be positive.")
    if not args.lmdb_root.exists():
        parser.error(f"LMDB_ROOT {args.lmdb_root} does not exist.")
    return args


def convert(
    lmdb_root: Path,
    out_dir: Path,
    shard_size: int = DEFAULT_SHARD_SIZE,
    split: str = "train",
    keep_raw_labels: bool = False,
    charset: str = CHARSET_94,
    max_label_length: int = 25,
    skip_corrupt: bool = False,
    overwrite: bool = False,
) -> dict:
    """Convert LMDB databases to parquet shards (see the module docstring).

    Returns:
        A report: `shards` (paths), `written` (rows), `corrupt` (broken images found), `corrupt_examples` (the
        first ones, as "source/image-000000042: error"), and per source `sources[name]` with `samples_in_database`,
        `written`, `corrupt`, `missing_image` and the label drop reasons.
    """
    lmdb_root, out_dir = Path(lmdb_root), Path(out_dir)
    directories = find_lmdb_dirs(lmdb_root)
    prepare_output_dir(out_dir, overwrite, own_output_pattern(split))
    base = lmdb_root.parent if lmdb_root.is_file() else lmdb_root
    report = {"shards": [], "written": 0, "corrupt": 0, "corrupt_examples": [], "sources": {}}
    cleaner = None if keep_raw_labels else LabelCleaner(charset, max_label_length=max_label_length)
    with ParquetShardWriter(out_dir, FEATURES, split=split, shard_size=shard_size) as writer:
        for directory in directories:
            name = directory.relative_to(base).as_posix() if directory != base else directory.name
            dataset = LmdbDataset(directory, name=name)
            counts = collections.Counter(dataset.counts)
            counts.pop("kept", None)
            for i in tqdm(range(len(dataset)), desc=f"Converting {name}", unit=" samples"):
                text = dataset.label(i)
                if cleaner is not None:
                    text, reason, _ = cleaner(text)
                    if text is None:  # the label is checked before the image is read, as training does
                        counts[reason] += 1
                        continue
                item = dataset[i]
                key = f"image-{dataset.database_index(i):09d}"
                if item["image"] is None:
                    counts["missing_image"] += 1
                    continue
                image_format, error = probe_image(item["image"])
                if error is not None:
                    counts["corrupt"] += 1
                    report["corrupt"] += 1
                    if len(report["corrupt_examples"]) < MAX_LISTED:
                        report["corrupt_examples"].append(f"{name}/{key}: {error}")
                    if skip_corrupt:
                        continue
                path = f"{name}/{key}{extension_for(image_format)}"
                writer.write({"image": {"bytes": item["image"], "path": path}, "text": text, "source": name})
                counts["written"] += 1
            report["sources"][name] = {"samples_in_database": dataset.num_samples_in_database, **counts}
        report["shards"] = [str(path) for path in writer.close()]
    report["written"] = writer.rows_written
    return report


def print_report(report: dict, skip_corrupt: bool, file=None) -> None:
    file = file if file is not None else sys.stdout
    print(f"Wrote {report['written']} samples in {len(report['shards'])} shard(s).", file=file)
    for name, counts in report["sources"].items():
        details = ", ".join(f"{key} {value}" for key, value in sorted(counts.items()) if key != "samples_in_database")
        print(f"  {name}: {counts['samples_in_database']} in the database; {details}", file=file)
    if report["corrupt"]:
        action = "left out (--skip-corrupt)" if skip_corrupt else "kept; pass --skip-corrupt to leave them out"
        print(f"{report['corrupt']} image(s) do not decode ({action}):", file=file)
        for line in report["corrupt_examples"]:
            print(f"  {line}", file=file)
        if report["corrupt"] > len(report["corrupt_examples"]):
            print(f"  ... and {report['corrupt'] - len(report['corrupt_examples'])} more", file=file)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = ("shard_size", "split", "keep_raw_labels", "charset", "max_label_length", "skip_corrupt", "overwrite")
    return run_conversion(
        lambda: convert(args.lmdb_root, args.out_dir, **{name: getattr(args, name) for name in options}),
        print_report, args.skip_corrupt)


if __name__ == "__main__":
    sys.exit(main())
