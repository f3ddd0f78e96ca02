"""Turn a folder of word images and a label file into a Hugging Face dataset (parquet shards or an imagefolder).

    python -m training.tools.folder_to_dataset crops/ labels.txt my_dataset --format parquet

LABELS_FILE has one sample per line: the image path relative to IMAGE_DIR, then a tab or a space, then the label.
Only the first separator splits, so labels may contain spaces ("img_001.png New York"); if a line holds a tab, the
first tab separates (so paths may contain spaces). Empty lines are ignored; the file is read as UTF-8.

Output:
- `--format parquet` (default): shards `{split}-00000-of-00003.parquet` with columns `image` (`datasets.Image`,
  the original file bytes) and `text`, for `datasets.load_dataset("parquet", data_dir=OUT_DIR)` and `push_to_hub`;
- `--format imagefolder`: `OUT_DIR/{split}/` with copies of the images (same relative paths) and a
  `metadata.jsonl` (`file_name`, `text`), for `datasets.load_dataset("imagefolder", data_dir=OUT_DIR)`.

Missing images stop the conversion with a list of them (or are left out with --skip-missing); images that do not
decode are reported, and kept unless --skip-corrupt.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import datasets
from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder
from tqdm.auto import tqdm

from training.tools import (
    DEFAULT_SHARD_SIZE,
    ParquetShardWriter,
    own_output_pattern,
    prepare_output_dir,
    probe_image,
    run_conversion,
)

logger = logging.getLogger(__name__)

FEATURES = datasets.Features({"image": datasets.Image(), "text": datasets.Value("string")})
MAX_LISTED = 20


@dataclass
class LabelledImage:
    """One line of the label file."""

    relative_path: str
    label: str
    line_number: int


def read_label_file(labels_file: Path) -> list[LabelledImage]:
    """Parse a label file (see the module docstring).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line without a separator or without a path, naming the file and line.
    """
    labels_file = Path(labels_file)
    if not labels_file.is_file():
        raise FileNotFoundError(f"Label file {labels_file} does not exist.")
    entries = []
    with open(labels_file, encoding="utf-8-sig") as handle:  # -sig: tolerate a byte-order mark
        for line_number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            separator = "\t" if "\t" in line else " "
            path, found, label = line.partition(separator)
            path = path.strip()
            if not found or not path:
                raise ValueError(
                    f"{labels_file}:{line_number}: expected 'relative/path.png<TAB or space>label', got {line!r}."
                )
            entries.append(LabelledImage(path, label, line_number))
    if not entries:
        raise ValueError(f"Label file {labels_file} lists no image.")
    return entries


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.tools.folder_to_dataset",
        description="Turn a folder of word images and a label file (lines 'relative/path.png<TAB or space>label'; "
        "labels may contain spaces after the first separator) into parquet shards or an imagefolder with "
        "metadata.jsonl.",
    )
    parser.add_argument("image_dir", metavar="IMAGE_DIR", type=Path,
                        help="The folder the label file's paths start from.")
    parser.add_argument("labels_file", metavar="LABELS_FILE", type=Path,
                        help="UTF-8 text file: one 'relative/path<TAB or space>label' per line.")
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path,
                        help="Where the dataset is written (created; must be empty unless --overwrite).")
    parser.add_argument("--format", choices=("parquet", "imagefolder"), default="parquet",
                        help="parquet shards (default) or an imagefolder with metadata.jsonl.")
    parser.add_argument("--split", default="train", help="Split name (shard file names / subfolder; default train).")
    parser.add_argument("--shard-size", type=int, default=DEFAULT_SHARD_SIZE,
                        help=f"Samples per parquet shard (default {DEFAULT_SHARD_SIZE}).")
    parser.add_argument("--skip-missing", action="store_true",
                        help="Leave out lines whose image file is missing (default: stop and list them).")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="Leave out images that do not decode (default: keep them, and report them).")
    parser.add_argument("--overwrite", action="store_true", help="Replace what an earlier run wrote to OUT_DIR.")
    args = parser.parse_args(argv)
    if args.shard_size < 1:
        parser.error("--shard-size must be positive.")
    if not args.image_dir.is_dir():
        parser.error(f"IMAGE_DIR {args.image_dir} is not a directory.")
    if not args.labels_file.is_file():
        parser.error(f"LABELS_FILE {args.labels_file} does not exist.")
    if not re.fullmatch(r"[A-Za-z0-9_.]+", args.split):
        parser.error("--split may hold letters, digits, '_' and '.'.")
    return args


def _safe_relative(path: str, line_number: int) -> str:
    """The path as a clean relative POSIX path inside the output (imagefolder copies keep it)."""
    pure = PurePosixPath(path.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts:
        raise ValueError(
            f"Line {line_number}: {path!r} leaves IMAGE_DIR; imagefolder output needs paths relative to IMAGE_DIR."
        )
    return pure.as_posix().removeprefix("./")


def convert(
    image_dir: Path,
    labels_file: Path,
    out_dir: Path,
    output_format: str = "parquet",
    split: str = "train",
    shard_size: int = DEFAULT_SHARD_SIZE,
    skip_missing: bool = False,
    skip_corrupt: bool = False,
    overwrite: bool = False,
) -> dict:
    """Convert (see the module docstring).

    Returns:
        A report: `written`, `missing` and `corrupt` counts, `missing_examples` / `corrupt_examples` (the first
        ones), and `outputs` (shard paths, or the imagefolder's metadata file).
    """
    if output_format not in ("parquet", "imagefolder"):
        raise ValueError(f"Unknown output format {output_format!r}: use 'parquet' or 'imagefolder'.")
    image_dir, labels_file, out_dir = Path(image_dir), Path(labels_file), Path(out_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"Image folder {image_dir} does not exist.")
    entries = read_label_file(labels_file)

    missing = [entry for entry in entries if not (image_dir / entry.relative_path).is_file()]
    if missing and not skip_missing:
        listed = "\n".join(f"  line {e.line_number}: {image_dir / e.relative_path}" for e in missing[:MAX_LISTED])
        more = f"\n  ... and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else ""
        raise FileNotFoundError(
            f"{len(missing)} image(s) listed in {labels_file} do not exist:\n{listed}{more}\n"
            "Pass --skip-missing to leave them out."
        )
    missing_lines = {entry.line_number for entry in missing}
    entries = [entry for entry in entries if entry.line_number not in missing_lines]

    if output_format == "imagefolder":
        extensions = {extension.lower() for extension in ImageFolder.EXTENSIONS}
        seen = {}
        for entry in entries:
            relative = _safe_relative(entry.relative_path, entry.line_number)
            if Path(relative).suffix.lower() not in extensions:
                raise ValueError(
                    f"Line {entry.line_number}: {relative!r} does not have an image extension the imagefolder "
                    "builder reads; use --format parquet."
                )
            if relative in seen:
                raise ValueError(
                    f"{relative!r} is listed twice (lines {seen[relative]} and {entry.line_number}); an imagefolder "
                    "holds one label per file: use --format parquet."
                )
            seen[relative] = entry.line_number

    pattern = own_output_pattern(split) if output_format == "parquet" else re.compile(rf"{re.escape(split)}/.*")
    prepare_output_dir(out_dir, overwrite, pattern)
    report = {
        "written": 0,
        "missing": len(missing),
        "missing_examples": [str(image_dir / e.relative_path) for e in missing[:MAX_LISTED]],
        "corrupt": 0,
        "corrupt_examples": [],
        "outputs": [],
    }
    counts = collections.Counter()

    def check(entry: LabelledImage, data: bytes) -> bool:
        _, error = probe_image(data)
        if error is None:
            return True
        counts["corrupt"] += 1
        if len(report["corrupt_examples"]) < MAX_LISTED:
            report["corrupt_examples"].append(f"{entry.relative_path}: {error}")
        return not skip_corrupt

    progress = tqdm(entries, desc=f"Writing {output_format}", unit=" images")
    if output_format == "parquet":
        with ParquetShardWriter(out_dir, FEATURES, split=split, shard_size=shard_size) as writer:
            for entry in progress:
                data = (image_dir / entry.relative_path).read_bytes()
                if check(entry, data):
                    writer.write({"image": {"bytes": data, "path": entry.relative_path}, "text": entry.label})
            report["outputs"] = [str(path) for path in writer.close()]
        report["written"] = writer.rows_written
    else:
        split_dir = out_dir / split
        split_dir.mkdir(parents=True, exist_ok=True)
        metadata_path = split_dir / "metadata.jsonl"
        try:
            with open(metadata_path, "w", encoding="utf-8") as metadata:
                for entry in progress:
                    source = image_dir / entry.relative_path
                    if not check(entry, source.read_bytes()):
                        continue
                    relative = _safe_relative(entry.relative_path, entry.line_number)
                    target = split_dir / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
                    metadata.write(json.dumps({"file_name": relative, "text": entry.label}, ensure_ascii=False) + "\n")
                    report["written"] += 1
        except BaseException:
            shutil.rmtree(split_dir, ignore_errors=True)  # no half-written imagefolder
            raise
        report["outputs"] = [str(metadata_path)]
    report["corrupt"] = counts["corrupt"]
    return report


def print_report(report: dict, skip_corrupt: bool, file=None) -> None:
    file = file if file is not None else sys.stdout
    print(f"Wrote {report['written']} image(s): {', '.join(report['outputs'])}", file=file)
    if report["missing"]:
        print(f"{report['missing']} listed image(s) were missing and left out:", file=file)
        for line in report["missing_examples"]:
            print(f"  {line}", file=file)
    if report["corrupt"]:
        action = "left out (--skip-corrupt)" if skip_corrupt else "kept; pass --skip-corrupt to leave them out"
        print(f"{report['corrupt']} image(s) do not decode ({action}):", file=file)
        for line in report["corrupt_examples"]:
            print(f"  {line}", file=file)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    options = ("split", "shard_size", "skip_missing", "skip_corrupt", "overwrite")
    return run_conversion(
        lambda: convert(args.image_dir, args.labels_file, args.out_dir, output_format=args.format,
                        **{name: getattr(args, name) for name in options}),
        print_report, args.skip_corrupt)


if __name__ == "__main__":
    sys.exit(main())
