"""Real word crops next to synthetic ones: one fixed validation split per source, held out of training (the library
behind `python -m training.real_data`, which describes the files it writes).

Each source is anything `run_str.py` reads (a Hub dataset id, a parquet / arrow / imagefolder directory, an LMDB
directory or tree of them). Its records are numbered in the order `load_str_dataset(source, split="train",
streaming=False)` gives them (for LMDB: the databases in path order, then the records in key order), and the
validation split is chosen from those numbers alone ([`validation_indices`]): every index is ranked by a keyed BLAKE2b
hash and the lowest-ranked 10 % (at least 300, at most a fifth of the source) are held out. The choice therefore does
not depend on the path the source is given by, the machine or the seed, and the demo's training, the demo's
evaluation and `benchmarks/bench_real.py` all hold out the same crops.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
SHARED_REAL = Path(os.environ.get("CLIP4STR_SHARED", REPO.parent / "shared")) / "data" / "real"
"""Where a checkout beside the project's shared folder finds the real word crops (absent on a fresh clone);
`CLIP4STR_SHARED` names another shared folder, as for the tests."""
SHARED_SETS = ("IIIT5k_train", "IC15_train")

VALIDATION_FRACTION = 0.10
MIN_VALIDATION = 300
MAX_VALIDATION_SHARE = 0.20
SPLIT_KEY = b"clip4str-real-validation-v1"
"""The hash key of the split: changing it (or the three numbers above) moves crops between training and validation,
so earlier scores stop being comparable."""
VALIDATION_RULE = (f"{VALIDATION_FRACTION:.0%} of each source, at least {MIN_VALIDATION} crops but at most "
                   f"{MAX_VALIDATION_SHARE:.0%}, chosen by a keyed hash of the record number")
PARTS = ("train", "validation")
_ROWS_PER_FILE = 256
_MIN_TRAIN_FILES = 8  # a training stream of fewer shards than this is warned about (and shuffles coarsely)


def validation_size(num_records: int) -> int:
    """How many of `num_records` records are held out: 10 %, at least 300 but at most a fifth of the source, at
    least one when there are two or more records (2000 -> 300, 4468 -> 447, 40 -> 8)."""
    if num_records < 2:
        return 0
    size = max(round(VALIDATION_FRACTION * num_records), min(MIN_VALIDATION, int(MAX_VALIDATION_SHARE * num_records)))
    return min(max(1, size), num_records - 1)


def _rank(index: int) -> bytes:
    return hashlib.blake2b(index.to_bytes(8, "little"), key=SPLIT_KEY, digest_size=16).digest()


def validation_indices(num_records: int) -> list[int]:
    """The record numbers (0-based, sorted) held out for validation in a source of `num_records` records: the
    [`validation_size`] indices with the lowest keyed hash."""
    if num_records < 0:
        raise ValueError(f"num_records must be >= 0, got {num_records}.")
    ranked = sorted(range(num_records), key=_rank)
    return sorted(ranked[:validation_size(num_records)])


def split_indices(num_records: int) -> tuple[list[int], list[int]]:
    """`(train, validation)` record numbers of a source of `num_records` records; together they are every record
    once."""
    held_out = validation_indices(num_records)
    held = set(held_out)
    return [index for index in range(num_records) if index not in held], held_out


def source_name(source: str) -> str:
    """A short name for a source: the last part of its path or Hub id (`../shared/data/real/IC15_train` ->
    `IC15_train`, `org/words` -> `words`)."""
    text = os.fspath(source).rstrip("/\\")
    name = Path(text).name if text else ""
    for suffix in (".parquet", ".arrow"):
        name = name.removesuffix(suffix)
    if name == "data.mdb":
        name = Path(text).parent.name
    name = name.replace("=", "_") or "real"
    return name


def unique_names(sources: Sequence[str]) -> list[str]:
    """[`source_name`] of each source, with `_2`, `_3`, ... added where two would share a name."""
    names, seen = [], {}
    for source in sources:
        name = source_name(source)
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return names


@dataclass
class RealSplit:
    """One source read map-style, and which of its records train and which validate."""

    name: str
    source: str
    dataset: object  # datasets.Dataset with columns image (undecoded) and text (raw)
    train_indices: list[int] = field(repr=False)
    validation_indices: list[int] = field(repr=False)

    @property
    def num_records(self) -> int:
        return len(self.dataset)

    def part(self, which: str):
        """The `train` or `validation` records as a `datasets.Dataset` (in source order)."""
        if which not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {which!r}.")
        return self.dataset.select(self.train_indices if which == "train" else self.validation_indices)

    def record(self) -> dict:
        return {
            "name": self.name,
            "source": self.source,
            "num_records": self.num_records,
            "num_train": len(self.train_indices),
            "num_validation": len(self.validation_indices),
            "rule": (f"validation = the {len(self.validation_indices)} record numbers (0-based, in reading order) of "
                     f"lowest keyed BLAKE2b hash (key {SPLIT_KEY.decode()}); {VALIDATION_FRACTION:.0%} of the "
                     f"source, at least {MIN_VALIDATION}, at most {MAX_VALIDATION_SHARE:.0%}"),
            "validation_indices": self.validation_indices,
        }


def load_real_split(source: str, name: str | None = None, split: str = "train", image_column: str = "image",
                    text_column: str = "text", **load_kwargs) -> RealSplit:
    """Read `source` (its `split` split where splits apply) and split its records with [`split_indices`]."""
    from training.data import load_str_dataset

    load_kwargs.setdefault("keep_in_memory", True)  # small sets: no copy in the `datasets` cache
    dataset = load_str_dataset(os.fspath(source), split=split, streaming=False, image_column=image_column,
                               text_column=text_column, **load_kwargs)
    train, validation = split_indices(len(dataset))
    return RealSplit(name or source_name(source), os.fspath(source), dataset, train, validation)


def load_real_splits(sources: Sequence[str], **options) -> list[RealSplit]:
    """[`load_real_split`] of each source, named by [`unique_names`]."""
    return [load_real_split(source, name=name, **options) for source, name in zip(sources, unique_names(sources))]


def _embedded(image):
    """An undecoded image as `{"bytes", "path"}` with its bytes inside (an imagefolder gives a path only)."""
    if image is None:
        return None
    data, path = image.get("bytes"), image.get("path")
    if data is None and path and os.path.isfile(path):
        data = Path(path).read_bytes()
    return {"bytes": data, "path": None if data is not None else path}


def _write_part(dataset, directory: Path, part: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Features, Image, Value

    schema = Features({"image": Image(), "text": Value("string")}).arrow_schema
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.parquet"):
        old.unlink()
    # Several files per part: a stream of them can be shuffled by shard and shared by DataLoader workers.
    num_files = max(1, math.ceil(len(dataset) / _ROWS_PER_FILE))
    if part == "train":
        num_files = max(num_files, min(len(dataset), _MIN_TRAIN_FILES))
    bounds = [round(k * len(dataset) / num_files) for k in range(num_files + 1)]
    for number, (begin, end) in enumerate(zip(bounds, bounds[1:])):
        rows = dataset[begin:end]
        images = [_embedded(image) for image in rows["image"]]
        table = pa.table({"image": images, "text": rows["text"]}, schema=schema)
        pq.write_table(table, directory / f"{part}-{number:05d}-of-{num_files:05d}.parquet")
    return len(dataset)


def write_real_splits(sources: Sequence[str], output_dir, parts: Sequence[str] = PARTS, **options) -> list[dict]:
    """Split each source and write the asked parts as parquet under `output_dir/<name>/<part>/` with
    `output_dir/<name>/split.json`. Returns one record per source: name, source, directory, counts, held-out
    indices."""
    output_dir = Path(output_dir)
    records = []
    for real in load_real_splits(sources, **options):
        directory = output_dir / real.name
        for part in PARTS:
            if part in parts:
                _write_part(real.part(part), directory / part, part)
            elif (directory / part).exists():  # a part of an earlier run must not be read as this one's
                for old in (directory / part).glob("*.parquet"):
                    old.unlink()
        record = {**real.record(), "directory": str(directory), "parts": list(parts)}
        (directory / "split.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        logger.info(f"{real.name}: {real.num_records} records, {len(real.train_indices)} for training, "
                    f"{len(real.validation_indices)} held out ({directory})")
        records.append(record)
    return records


def shared_real_sources(root=SHARED_REAL) -> list[str]:
    """The shared real sets (IIIT5k_train, IC15_train) found at `root`, as paths; empty on a fresh clone."""
    root = Path(root)
    return [str(root / name) for name in SHARED_SETS if (root / name / "data.mdb").is_file()]


def training_weights(real_weight: float, num_train: Sequence[int]) -> list[float]:
    """Sampling weights `[synthetic, real_1, real_2, ...]` for `run_str.py --train_weights`: the real sources share
    `real_weight` of the stream in proportion to their training records, the synthetic words get the rest."""
    if not 0 < real_weight <= 1:
        raise ValueError(f"The real weight must be in (0, 1], got {real_weight}.")
    total = sum(num_train)
    if total <= 0:
        raise ValueError("The real sources hold no training records.")
    return [1.0 - real_weight] + [real_weight * count / total for count in num_train]
