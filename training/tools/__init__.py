"""Command-line tools that turn scene-text data into Hugging Face datasets.

- `python -m training.tools.lmdb_to_parquet LMDB_ROOT OUT_DIR`: STR-format LMDB databases to parquet shards.
- `python -m training.tools.folder_to_dataset IMAGE_DIR LABELS_FILE OUT_DIR`: a folder of images and a label file to
  parquet shards or an imagefolder.

Their output loads with `datasets.load_dataset("parquet", data_dir=OUT_DIR)` (or `"imagefolder"`), with
`training.data.load_str_dataset(OUT_DIR)`, and uploads with `push_to_hub`.

This module holds what both tools share: a parquet shard writer and an image check.
"""

from __future__ import annotations

import io
import os
import re
import sys
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

# Rows are written to parquet in groups of this many (memory stays bounded whatever the shard size).
ROW_GROUP_SIZE = 1_000
DEFAULT_SHARD_SIZE = 20_000


def probe_image(data: bytes) -> tuple[str | None, str | None]:
    """Fully decode encoded image bytes.

    Returns:
        `(format, None)` for a good image (`format` as PIL names it, e.g. `"PNG"`), `(None, error message)` otherwise.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decoding everything catches truncated files that `Image.open` alone accepts
            return image.format, None
    except UnidentifiedImageError:
        return None, "not an image format PIL recognises"
    except Exception as error:  # PIL raises many types for broken data (OSError, SyntaxError, ValueError, ...)
        return None, f"{type(error).__name__}: {error}"


def extension_for(image_format: str | None) -> str:
    """A file extension for a PIL format name ("" when unknown)."""
    if not image_format:
        return ""
    return {"JPEG": ".jpg", "TIFF": ".tif"}.get(image_format.upper(), "." + image_format.lower())


def prepare_output_dir(out_dir: Path, overwrite: bool, own_files: re.Pattern) -> None:
    """Create `out_dir`; refuse to mix with earlier output unless `overwrite` (then only our own files are removed).

    Raises:
        FileExistsError: `out_dir` holds files and `overwrite` is off, or holds files that are not ours.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    existing = [path for path in out_dir.rglob("*") if path.is_file()]
    if not existing:
        return
    if not overwrite:
        raise FileExistsError(
            f"Output directory {out_dir} is not empty ({len(existing)} files); choose an empty one or pass --overwrite."
        )
    foreign = [path for path in existing if not own_files.fullmatch(path.relative_to(out_dir).as_posix())]
    if foreign:
        raise FileExistsError(
            f"--overwrite only replaces earlier output of this tool, but {out_dir} also holds other files, e.g. "
            f"{foreign[0]}; choose another directory."
        )
    for path in existing:
        path.unlink()


class ParquetShardWriter:
    r"""
    Writes rows into parquet shards named like the Hub does (`{split}-00000-of-00004.parquet`), at most
    `shard_size` rows each, with the `datasets` features stored in the schema so that `load_dataset("parquet")`
    restores them (e.g. `Image()` columns).

    Use as a context manager; `write(row)` takes a dict matching `features`. The shards get their final names when
    the writer closes (the total is known only then).

    Args:
        out_dir (`Path`): where the shards go.
        features (`datasets.Features`): the columns.
        split (`str`, defaults to `"train"`): the split name in the file names.
        shard_size (`int`): rows per shard.
    """

    def __init__(self, out_dir: Path, features: datasets.Features, split: str = "train",
                 shard_size: int = DEFAULT_SHARD_SIZE):
        if shard_size < 1:
            raise ValueError(f"The shard size must be positive, got {shard_size}.")
        if not re.fullmatch(r"[A-Za-z0-9_.]+", split):
            raise ValueError(f"Split names may hold letters, digits, '_' and '.', got {split!r}.")
        self.out_dir = Path(out_dir)
        self.features = features
        self.schema = features.arrow_schema
        self.split = split
        self.shard_size = shard_size
        self.rows_written = 0
        self._temporary_paths: list[Path] = []
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_shard = 0
        self._buffer: list[dict] = []
        self.paths: list[Path] = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            self.close()
        else:  # leave no half-written dataset behind
            self._flush_buffer()
            if self._writer is not None:
                self._writer.close()
            for path in self._temporary_paths:
                path.unlink(missing_ok=True)
        return False

    def write(self, row: dict) -> None:
        if self._writer is None or self._rows_in_shard >= self.shard_size:
            self._start_shard()
        self._buffer.append(self.features.encode_example(row))
        self._rows_in_shard += 1
        self.rows_written += 1
        if len(self._buffer) >= ROW_GROUP_SIZE:
            self._flush_buffer()

    def _start_shard(self):
        self._flush_buffer()
        if self._writer is not None:
            self._writer.close()
        path = self.out_dir / f".{self.split}-{len(self._temporary_paths):05d}.parquet.partial"
        self._temporary_paths.append(path)
        self._writer = pq.ParquetWriter(str(path), self.schema)
        self._rows_in_shard = 0

    def _flush_buffer(self):
        if self._buffer:
            self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema))
            self._buffer = []

    def close(self) -> list[Path]:
        """Finish the last shard and give every shard its final name; returns the shard paths."""
        self._flush_buffer()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        total = len(self._temporary_paths)
        for number, temporary in enumerate(self._temporary_paths):
            final = self.out_dir / f"{self.split}-{number:05d}-of-{total:05d}.parquet"
            os.replace(temporary, final)
            self.paths.append(final)
        self._temporary_paths = []
        return self.paths


def own_output_pattern(split: str) -> re.Pattern:
    """File names a tool run may replace with --overwrite: its parquet shards (and partial ones)."""
    return re.compile(rf"\.?{re.escape(split)}-\d{{5}}(-of-\d{{5}})?\.parquet(\.partial)?")


__all__ = [
    "DEFAULT_SHARD_SIZE",
    "ParquetShardWriter",
    "extension_for",
    "own_output_pattern",
    "prepare_output_dir",
    "probe_image",
]


def run_conversion(convert, report_printer, skip_corrupt: bool) -> int:
    """A converter command line's ending: run `convert()` (a callable taking no argument), print its report with
    `report_printer(report, skip_corrupt)`; a missing input, an output in the way or a bad option is one line on
    stderr and exit status 1 instead of a traceback."""
    try:
        report = convert()
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    report_printer(report, skip_corrupt)
    return 0
